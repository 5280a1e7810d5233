"""Write new handwritten digits from a checkpoint that train.py saved.

    python sample.py --n 64                       # out/checkpoint.pt -> samples.png, an 8x8 grid
    python sample.py --n 100 --nrow 20 --seed 1 --out grid.png
    python sample.py --n 10000 --out fakes/       # a folder of 28x28 grayscale PNGs, 00000.png ...

A folder (a trailing / or an existing directory) gets one PNG per digit, as pytorch-fid,
torch-fidelity and clean-fid read them. The same --seed gives the same digits.
"""

import math
import os
import sys

import torch
from PIL import Image
from torchvision.utils import save_image

from gan import (
    ArgumentParser,
    add_device_flag,
    UserError,
    atomic_path,
    generate,
    generator_from_checkpoint,
    load_checkpoint,
    make_writable_dir,
    pick_device,
    positive_int,
)


def parse_args(argv=None):
    p = ArgumentParser(prog="sample.py", description="Write generated digits as a PNG grid or a folder of PNGs.")
    p.add_argument("--n", type=positive_int, default=64, help="how many digits (default: 64)")
    p.add_argument("--checkpoint", default="out/checkpoint.pt", help="(default: out/checkpoint.pt)")
    p.add_argument("--out", default="samples.png",
                   help="a .png grid, or a folder (trailing /) for one PNG per digit (default: samples.png)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    add_device_flag(p)
    p.add_argument("--nrow", type=positive_int, default=None, help="digits per grid row (default: about sqrt(n))")
    p.add_argument("--batch-size", type=positive_int, default=500,
                   help="digits generated at a time, which bounds memory (default: 500)")
    return p.parse_args(argv)


def sample_batches(G, n, batch_size, seed):
    """Yield generated images in batches of at most `batch_size`, on the CPU, in [-1, 1]."""
    device = next(G.parameters()).device
    noise = torch.Generator().manual_seed(seed)  # CPU noise: the same digits on every device
    for start in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - start), G.nz, generator=noise)  # (B, nz)
        yield generate(G, z.to(device)).float().cpu()  # (B, C, 28, 28)


def write_folder(batches, folder):
    """One 28x28 PNG per image: 00000.png, 00001.png, ... (grayscale for one channel)."""
    k = 0
    for images in batches:
        pixels = images.add(1).mul(127.5).add(0.5).clamp(0, 255).to(torch.uint8)  # [-1, 1] -> 0..255
        for image in pixels:  # (C, 28, 28) -> (28, 28) for one channel, Pillow's "L" mode
            with atomic_path(os.path.join(folder, f"{k:05d}.png")) as tmp:
                Image.fromarray(image.permute(1, 2, 0).squeeze(-1).numpy()).save(tmp, format="PNG")
            k += 1


def main(argv=None):
    args = parse_args(argv)
    try:
        G = generator_from_checkpoint(load_checkpoint(args.checkpoint))
        G.to(pick_device(args.device))
        batches = sample_batches(G, args.n, args.batch_size, args.seed)
        if args.out.endswith(("/", os.sep)) or os.path.isdir(args.out):
            make_writable_dir(args.out)
            write_folder(batches, args.out)
            print(f"wrote {args.n} PNGs to {args.out}")
        else:
            make_writable_dir(os.path.dirname(args.out) or ".")
            nrow = args.nrow or math.ceil(math.sqrt(args.n))
            images = torch.cat(list(batches))
            with atomic_path(args.out) as tmp:
                save_image(images, tmp, format="png", nrow=nrow, normalize=True, value_range=(-1, 1))
            print(f"wrote {args.out}: {args.n} digits, {nrow} per row")
    except UserError as e:
        print(f"sample.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
