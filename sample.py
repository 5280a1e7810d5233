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
from itertools import chain

try:  # Ctrl-C while torch loads ends as quietly as one later
    import torch
    from PIL import Image
    from torchvision.utils import save_image

    from plumbing import (SEED, ArgumentParser, UserError, add_device_flag, atomic_path, bounded,
                          check_writable_file, generate_batches, generator_from_checkpoint, grid_labels,
                          load_checkpoint, make_writable_dir, pick_device, say, seeded_noise)
except KeyboardInterrupt:
    sys.exit(130)

NUMBER_CROP = 3  # pixels cut from each side of a digit in --number, so its digits sit close
# A grid is built whole in memory (10,000 digits: about 150 MB); a folder is written a batch at a time.
MAX_GRID, MAX_FOLDER = 10_000, 100_000

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
    p.add_argument("--no-ema", action="store_true", help="use G's raw weights, not their moving average")
    p.add_argument("--nrow", type=bounded(int, 1, MAX_GRID), help="digits per grid row (default: about sqrt(n))")
    p.add_argument("--batch-size", type=bounded(int, 1, 10_000), default=500,
                   help="digits generated at a time, which bounds memory (default: 500)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--digit", type=int, choices=range(10), help="conditional checkpoints: draw only this digit")
    which.add_argument("--number", type=number, help="conditional checkpoints: write this number as one PNG")
    p.add_argument("--count", type=bounded(int, 1, 100), help="with --number: rows, each in another hand (default: 1)")
    args = p.parse_args(argv)
    if args.count and not args.number:
        p.error("--count goes with --number")
    return args

def plan(G, args, to_folder):
    """(noise, the digit of each image or None, images per grid row). A conditional G draws --digit;
    --number, in each of --count rows, the number's digits from one noise (one hand per row); else in a
    grid one row per digit, ceil(n / 10) wide (said when that rounds --n up), or into a folder 0 1 2 ...
    9 0 1 ... in turn."""
    n, nrow = args.n, min(args.nrow or math.ceil(math.sqrt(args.n)), args.n)
    if args.number:
        z = seeded_noise(args.count or 1, G.nz, args.seed).repeat_interleave(len(args.number), dim=0)
        return z, torch.tensor([int(c) for c in args.number]).repeat(args.count or 1), len(args.number)
    if not G.num_classes or args.digit is not None:
        labels = torch.full((n,), args.digit) if G.num_classes else None
    elif to_folder:
        labels = torch.arange(n) % G.num_classes
    else:
        if args.nrow:
            raise UserError("--nrow: a conditional checkpoint's grid has one row per digit; --n sets their length")
        nrow = math.ceil(n / G.num_classes)
        labels = grid_labels(G.num_classes, nrow)
        if len(labels) != n:
            say(f"--n {n} rounded up to {len(labels)}: one row of {nrow} for each digit")
    return seeded_noise(n if labels is None else len(labels), G.nz, args.seed), labels, nrow

def write(G, args):
    to_folder = args.out.endswith(("/", os.sep)) or os.path.isdir(args.out)
    if args.number and to_folder:
        raise UserError(f"--number writes one PNG: give --out a file name, not the folder {args.out}")
    if not (to_folder or args.out.lower().endswith(".png")):  # else a PNG would sit under another name
        raise UserError(f"--out {args.out!r}: a grid is a PNG, so name it NAME.png; a folder takes a trailing /")
    (make_writable_dir if to_folder else check_writable_file)(args.out)
    z, labels, nrow = plan(G, args, to_folder)
    if to_folder:
        stale = write_folder(generate_batches(G, z, labels, args.batch_size), args.out)
        say(f"wrote {len(z)} PNGs to {args.out}" + (f"; removed {stale} more of an earlier run" if stale else ""))
        return
    if len(z) > MAX_GRID:
        raise UserError(f"--n {args.n}: a grid holds at most {MAX_GRID:,} digits; for more, "
                        f"write one PNG each into a folder: --out {os.path.splitext(args.out)[0]}/")
    images = torch.cat(list(generate_batches(G, z, labels, args.batch_size)))  # (N, C, 28, 28)
    if args.number:  # cropped, and no padding: the digits of a number sit side by side
        images = images[..., NUMBER_CROP:28 - NUMBER_CROP]
    with atomic_path(args.out) as tmp:
        save_image(images, tmp, format="png", nrow=nrow, padding=0 if args.number else 2, normalize=True,
                   value_range=(-1, 1))
    say(f"wrote {args.out}: {len(z)} digits, {nrow} per row")

def write_folder(batches, folder):
    """One 28x28 grayscale PNG per image, batch after batch: 00000.png, 00001.png, ...; then the numbered
    PNGs of an earlier, larger run are removed, so the folder holds this run alone. Returns how many."""
    k = -1
    for k, image in enumerate(chain.from_iterable(batches)):
        pixels = image.add(1).mul(127.5).add(0.5).clamp(0, 255).to(torch.uint8)  # [-1, 1] -> 0..255, (C, 28, 28)
        with atomic_path(os.path.join(folder, f"{k:05d}.png")) as tmp:  # (28, 28): Pillow's "L" mode
            Image.fromarray(pixels.permute(1, 2, 0).squeeze(-1).numpy()).save(tmp, format="PNG")
    stale = [name for name in os.listdir(folder) if name[:-4].isdigit() and name.endswith(".png")
             and len(name) == 9 and int(name[:-4]) > k]
    for name in stale:
        os.remove(os.path.join(folder, name))
    return len(stale)

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
