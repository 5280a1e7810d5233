"""Train one run in stages and score it after each: the driver behind docs/experiments.md.

    python experiments/stages.py --out runs/b128 --stages 1,5,10,25 --data-root ../shared/data -- --batch-size 128
    python experiments/stages.py --out runs/s1 --stages 1 --data-root ../shared/data -- --seed 1 --lr-g 4e-4

Everything after `--` goes to train.py. Stage by stage it runs `train.py --epochs E` (with --resume
after the first: bit-identical to a straight run on the CPU), then `evaluate.py` on the checkpoint,
keeping the scores as OUT/eval_E.json, and prints one row per stage: FD / KL to uniform / IS analog
(and, for a conditional run, the share read back as asked). A stage already scored is skipped, so an
interrupted driver continues where it stopped.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train in stages, scoring after each.")
    p.add_argument("--out", required=True, help="the run's folder (train.py's --out)")
    p.add_argument("--stages", default="1,5,10,25", help="epochs after which to score (default: 1,5,10,25)")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw/ (default: data)")
    p.add_argument("--n", default="10000", help="samples evaluate.py draws (default: 10000)")
    p.add_argument("train_args", nargs="*", help="after --: flags for train.py")
    args = p.parse_args(argv)
    args.stages = [int(s) for s in args.stages.split(",")]
    return args


def row(scores):
    """FD / KL / IS of evaluate.py's JSON, with the label accuracy first for a conditional run."""
    g = scores["generated"]
    text = f"{g['frechet']:.1f} / {g['kl_to_uniform']:.3f} / {g['is_analog']:.2f}"
    return f"{g['label_accuracy']:.1%}, {text}" if "label_accuracy" in g else text


def main(argv=None):
    args = parse_args(argv)
    python = [sys.executable]
    for epochs in args.stages:
        scores = os.path.join(args.out, f"eval_{epochs}.json")
        if not os.path.exists(scores):
            resume = ["--resume"] if os.path.exists(os.path.join(args.out, "checkpoint.pt")) else []
            subprocess.run(python + [os.path.join(ROOT, "train.py"), "--epochs", str(epochs), "--out", args.out,
                                     "--data-root", args.data_root, *resume, *args.train_args], check=True)
            subprocess.run(python + [os.path.join(ROOT, "evaluate.py"), "--checkpoint",
                                     os.path.join(args.out, "checkpoint.pt"), "--data-root", args.data_root,
                                     "--n", args.n, "--device", "cpu", "--json", scores], check=True)
        with open(scores) as f:
            print(f"{args.out} epoch {epochs}: {row(json.load(f))}", flush=True)


if __name__ == "__main__":
    main()
