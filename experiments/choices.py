"""Which digits each of G's choices (train.py --modes) draws: the record's probe of how G splits its work.

    python experiments/choices.py --checkpoint runs/b128/checkpoint.pt --out runs/b128/choices --data-root DATA

For each choice, --n noises whose largest of the first `modes` entries is swapped into that choice's place
(so the values stay the noise's own), drawn by G's moving average into OUT/choice_M/ and scored there by
`evaluate.py --samples`. Prints a row per choice (the digit it draws most, that digit's share, then the
shares of 0-9, from the classifier's histogram) and the mean top share: 1.0 where each choice draws one digit.
"""

import argparse
import json
import os
import subprocess
import sys

import torch
from torchvision.utils import save_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from gan import generate  # noqa: E402
from plumbing import UserError, bounded, generator_from_checkpoint, load_checkpoint, seeded_noise  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The digits each of G's choices draws.")
    p.add_argument("--checkpoint", required=True, help="an unconditional train.py checkpoint with --modes > 0")
    p.add_argument("--out", required=True, help="folder for the choices' PNGs and scores")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw/ (default: data)")
    p.add_argument("--n", type=bounded(int, 2, 100_000), default=500, help="samples per choice (default: 500)")
    return p.parse_args(argv)


def noise_for(choice, modes, n, nz):
    """(n, nz) noise of seed `choice` whose largest entry among the first `modes` is moved to `choice`."""
    z, rows = seeded_noise(n, nz, choice), torch.arange(n)
    top = z[:, :modes].argmax(1)
    z[rows, top], z[rows, choice] = z[rows, choice], z[rows, top]
    return z


def shares(G, choice, args):
    """The classifier's digit histogram of one choice's samples."""
    folder = os.path.join(args.out, f"choice_{choice}")
    os.makedirs(folder, exist_ok=True)
    for k, image in enumerate(generate(G, noise_for(choice, G.modes, args.n, G.nz))):
        save_image(image, os.path.join(folder, f"{k:05d}.png"), normalize=True, value_range=(-1, 1))
    scores = os.path.join(args.out, f"choice_{choice}.json")
    subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), "--samples", folder, "--data-root",
                    args.data_root, "--device", "cpu", "--json", scores], check=True, stdout=subprocess.DEVNULL)
    with open(scores) as f:
        return json.load(f)["generated"]["histogram"]


def main(argv=None):
    args = parse_args(argv)
    try:
        G = generator_from_checkpoint(load_checkpoint(args.checkpoint))
        if not G.modes:
            raise UserError(f"{args.checkpoint} has no choices (a --conditional or --modes 0 run)")
    except UserError as e:
        print(f"choices.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    tops = []
    for choice in range(G.modes):
        histogram = shares(G, choice, args)
        tops.append(max(histogram))
        print(f"choice {choice}: digit {histogram.index(tops[-1])} {tops[-1]:.0%} | "
              + " ".join(f"{h:.2f}" for h in histogram), flush=True)
    print(f"mean top share {sum(tops) / len(tops):.2f}")


if __name__ == "__main__":
    main()
