"""Write new handwritten digits from a checkpoint that train.py saved.

    python sample.py --n 64                       # out/checkpoint.pt -> samples.png, an 8x8 grid
    python sample.py --n 100 --nrow 20 --seed 1 --out grid.png
    python sample.py --n 10000 --out fakes/       # a folder of 28x28 grayscale PNGs, 00000.png ...

From a checkpoint of `train.py --conditional`:

    python sample.py --n 64                       # one row per digit, 0 to 9
    python sample.py --digit 7 --n 64             # 64 sevens
    python sample.py --number 2026 --count 4      # the number 2026, in 4 different hands

A folder (a trailing / or an existing directory) gets one PNG per digit, as pytorch-fid,
torch-fidelity and clean-fid read them. The same --seed gives the same digits.
"""

import argparse
import math
import os
import sys

import torch
from PIL import Image
from torchvision.utils import save_image

from gan import (
    SEED,
    ArgumentParser,
    add_device_flag,
    bounded,
    UserError,
    atomic_path,
    generate,
    generator_from_checkpoint,
    load_checkpoint,
    make_writable_dir,
    pick_device,
)

NUMBER_CROP = 3  # pixels cut from each side of a digit in --number, so its digits sit close
# A grid is built whole in memory (10,000 digits: about 150 MB); a folder is written a batch at a time.
MAX_GRID, MAX_FOLDER = 10_000, 1_000_000


def digit(text):
    if text not in [str(d) for d in range(10)]:
        raise argparse.ArgumentTypeError(f"must be one digit 0-9, got {text!r}")
    return int(text)


def number(text):
    if not (text.isascii() and text.isdigit()) or len(text) > 64:
        raise argparse.ArgumentTypeError(f"must be 1 to 64 digits 0-9, got {text!r}")
    return text


def parse_args(argv=None):
    p = ArgumentParser(prog="sample.py", description="Write generated digits as a PNG grid or a folder of PNGs.")
    p.add_argument("--n", type=bounded(int, 1, MAX_FOLDER), default=64,
                   help=f"how many digits: at most {MAX_GRID:,} in a grid, {MAX_FOLDER:,} in a folder (default: 64)")
    p.add_argument("--checkpoint", default="out/checkpoint.pt", help="(default: out/checkpoint.pt)")
    p.add_argument("--out", default="samples.png",
                   help="a .png grid, or a folder (trailing /) for one PNG per digit (default: samples.png)")
    p.add_argument("--seed", type=SEED, default=0, help="noise seed (default: 0)")
    add_device_flag(p)
    p.add_argument("--no-ema", action="store_true",
                   help="use the generator's raw weights, even where their moving average is the default")
    p.add_argument("--nrow", type=bounded(int, 1, MAX_GRID), default=None,
                   help="digits per grid row (default: about sqrt(n))")
    p.add_argument("--batch-size", type=bounded(int, 1, 10_000), default=500,
                   help="digits generated at a time, which bounds memory (default: 500)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--digit", type=digit, help="conditional checkpoints: draw only this digit")
    which.add_argument("--number", type=number, help="conditional checkpoints: write this number as one PNG")
    p.add_argument("--count", type=bounded(int, 1, 100), help="with --number: rows, each in another hand (default: 1)")
    args = p.parse_args(argv)
    if args.count and not args.number:
        p.error("--count goes with --number")
    return args


def sample_batches(G, n, batch_size, seed, labels=None):
    """Yield generated images in batches of at most `batch_size`, on the CPU, in [-1, 1];
    `labels` (n,) says which digit each one is, for a conditional G."""
    device = next(G.parameters()).device
    noise = torch.Generator().manual_seed(seed)  # CPU noise: the same digits on every device
    for start in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - start), G.nz, generator=noise)  # (B, nz)
        batch_labels = None if labels is None else labels[start:start + len(z)].to(device)
        yield generate(G, z.to(device), batch_labels).float().cpu()  # (B, C, 28, 28)


def number_image(G, text, count, seed):
    """`count` rows, each the digits of `text` side by side from one noise vector (one hand per
    row), cropped by NUMBER_CROP px left and right: (count * len(text), C, 28, 28 - 2 * crop)."""
    device = next(G.parameters()).device
    z = torch.randn(count, G.nz, generator=torch.Generator().manual_seed(seed))  # (count, nz)
    z = z.repeat_interleave(len(text), dim=0)  # each row's noise for each of its digits
    labels = torch.tensor([int(c) for c in text]).repeat(count)  # (count * len(text),)
    images = generate(G, z.to(device), labels.to(device)).float().cpu()
    return images[..., NUMBER_CROP:28 - NUMBER_CROP]


def digit_labels(G, args):
    """The digit of each of the --n images: the --digit, or 0 1 2 ... 9 0 1 ... for a conditional G."""
    if not G.num_classes:
        return None
    if args.digit is not None:
        return torch.full((args.n,), args.digit)
    return torch.arange(args.n) % G.num_classes


def grid_plan(G, args):
    """(labels or None, images per row) for a grid: a conditional G without --digit draws one
    row per digit, each ceil(n / 10) wide."""
    if G.num_classes and args.digit is None:
        per_digit = math.ceil(args.n / G.num_classes)
        return torch.arange(G.num_classes).repeat_interleave(per_digit), per_digit
    return digit_labels(G, args), args.nrow or math.ceil(math.sqrt(args.n))


def write_folder(batches, folder):
    """One 28x28 PNG per image: 00000.png, 00001.png, ... (grayscale for one channel)."""
    k = 0
    for images in batches:
        pixels = images.add(1).mul(127.5).add(0.5).clamp(0, 255).to(torch.uint8)  # [-1, 1] -> 0..255
        for image in pixels:  # (C, 28, 28) -> (28, 28) for one channel, Pillow's "L" mode
            with atomic_path(os.path.join(folder, f"{k:05d}.png")) as tmp:
                Image.fromarray(image.permute(1, 2, 0).squeeze(-1).numpy()).save(tmp, format="PNG")
            k += 1


def write_png(images, nrow, path, padding=2):
    make_writable_dir(os.path.dirname(path) or ".")
    with atomic_path(path) as tmp:
        save_image(images, tmp, format="png", nrow=nrow, padding=padding, normalize=True, value_range=(-1, 1))


def write(G, args):
    to_folder = args.out.endswith(("/", os.sep)) or os.path.isdir(args.out)
    if args.number:
        if to_folder:
            raise UserError(f"--number writes one PNG: give --out a file name, not the folder {args.out}")
        count = args.count or 1
        write_png(number_image(G, args.number, count, args.seed), len(args.number), args.out, padding=0)
        print(f"wrote {args.out}: the number {args.number}, {count} row{'s' * (count > 1)}")
    elif to_folder:
        make_writable_dir(args.out)
        write_folder(sample_batches(G, args.n, args.batch_size, args.seed, digit_labels(G, args)), args.out)
        print(f"wrote {args.n} PNGs to {args.out}")
    else:
        labels, nrow = grid_plan(G, args)
        n = args.n if labels is None else len(labels)
        if n > MAX_GRID:
            raise UserError(f"--n {args.n}: a grid holds at most {MAX_GRID:,} digits; "
                            f"for more, write one PNG each into a folder: --out {os.path.splitext(args.out)[0]}/")
        write_png(torch.cat(list(sample_batches(G, n, args.batch_size, args.seed, labels))), nrow, args.out)
        print(f"wrote {args.out}: {n} digits, {nrow} per row")


def main(argv=None):
    args = parse_args(argv)
    try:
        G = generator_from_checkpoint(load_checkpoint(args.checkpoint), ema=not args.no_ema)
        if (args.digit is not None or args.number) and not G.num_classes:
            raise UserError(f"--digit and --number need a checkpoint of train.py --conditional; "
                            f"{args.checkpoint} is unconditional")
        write(G.to(pick_device(args.device)), args)
    except UserError as e:
        print(f"sample.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
