"""Run candidates x seeds through stages.py side by side and print one table: the search driver for a GPU.

    python experiments/search.py --out runs/b128 --data-root ../shared/data --seeds 0,1 --jobs 8 \\
        "card=--batch-size 128" "lr8=--batch-size 128 --lr-g 8e-4 --lr-d 8e-4"
    python experiments/search.py --out runs/b128 --data-root ../shared/data --seeds 0,1 "card=--batch-size 128"

Each NAME=FLAGS candidate runs once per seed, as `stages.py --out OUT/NAME_sSEED ... -- FLAGS --seed SEED`,
at most --jobs at a time: on one GPU a run of small kernels is bound by launching them, so several share it
well. Each job gets its share of the CPU threads and writes its console to OUT/NAME_sSEED/stages.log. Run
again, it skips the stages already scored (stages.py does). Prints a markdown table for the record, a row
per run, FD / KL / IS (a conditional run: read back, then FD) per stage. Set --data-root to a folder whose
evaluate.py classifier is cached (`mnist_classifier.pt`), or each job trains its own first.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from stages import row

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train and score candidates x seeds, several at a time.")
    p.add_argument("--out", required=True, help="folder holding one run folder per candidate and seed")
    p.add_argument("--stages", default="1,5,10,25", help="epochs after which to score (default: 1,5,10,25)")
    p.add_argument("--seeds", default="0,1", help="seeds of each candidate (default: 0,1)")
    p.add_argument("--jobs", type=int, default=4, help="runs at a time (default: 4)")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw/ (default: data)")
    p.add_argument("--n", default="10000", help="samples evaluate.py draws (default: 10000)")
    p.add_argument("candidates", nargs="+", help="NAME=FLAGS, the train.py flags quoted as one argument")
    args = p.parse_args(argv)
    if not all("=" in c for c in args.candidates):
        p.error("each candidate is NAME=FLAGS, for example \"lr8=--batch-size 128 --lr-g 8e-4\"")
    return args


def run(args, name, flags, seed):
    """One candidate on one seed through stages.py; returns its folder and exit code."""
    folder = os.path.join(args.out, f"{name}_s{seed}")
    os.makedirs(folder, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // args.jobs))  # torch would take every core in each job
    with open(os.path.join(folder, "stages.log"), "a") as log:
        code = subprocess.run([sys.executable, os.path.join(HERE, "stages.py"), "--out", folder, "--stages",
                               args.stages, "--data-root", args.data_root, "--n", args.n, "--",
                               *shlex.split(flags), "--seed", str(seed)],
                              stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS=threads))
    return folder, code.returncode


def scores(folder, epochs):
    """A stage's row of scores, or "" where it was not scored."""
    path = os.path.join(folder, f"eval_{epochs}.json")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return row(json.load(f))


def table(args, runs):
    """The record's table: a row per run, a column per stage; a failed run names its log."""
    stages = args.stages.split(",")
    lines = ["| run | " + " | ".join(f"{e} epochs" for e in stages) + " |", "|---" * (len(stages) + 1) + "|"]
    for (name, _, seed), (folder, code) in runs:
        failed = f" (exit {code}: {folder}/stages.log)" if code else ""
        lines.append(f"| {name}, seed {seed}{failed} | " + " | ".join(scores(folder, e) for e in stages) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    jobs = [(*c.split("=", 1), int(seed)) for c in args.candidates for seed in args.seeds.split(",")]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run(args, *job), jobs))
    print(table(args, zip(jobs, results)))


if __name__ == "__main__":
    main()
