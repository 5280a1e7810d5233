"""Verify the kit on this machine's accelerator in one call, and print a summary to paste into the record.

    python benchmarks/device_check.py --data-root ../shared/data
    python benchmarks/device_check.py --data-root ../shared/data --device mps --epochs 5

Four steps, each a command of the kit run as a user runs it: the accelerator tests (tests/test_device.py,
each set against the CPU), the throughput benchmark's rows, the card's command timed
(`train.py --epochs 25 --batch-size 128`), and evaluate.py on what it trained. On an H100-class GPU
the whole check takes about 5 minutes; a step that fails is reported and the check goes on.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the kit


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="device_check.py", description="The kit's device check, in one call.")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
                   help="auto picks CUDA, then MPS, then CPU (default: auto)")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw/ (default: data)")
    p.add_argument("--epochs", type=int, default=25, help="of the timed run at batch 128 (default: 25)")
    return p.parse_args(argv)


def run(name, argv, summary):
    """Run one command of the kit; keep its last lines (and how long it took) for the summary."""
    print(f"\n== {name}: {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    print(done.stdout + done.stderr, flush=True)
    summary.append(f"{name}: exit {done.returncode}, {seconds:.0f} s")
    return done.stdout, seconds


def main(argv=None):
    args = parse_args(argv)
    summary, data = [], ["--data-root", args.data_root]
    out = os.path.join(tempfile.mkdtemp(prefix="device_check_"), "run")
    tests, _ = run("accelerator tests", ["-m", "pytest", "-q", "-rs", "tests/test_device.py"], summary)
    summary.append("  " + (tests.strip().splitlines() or ["(no output)"])[-1])
    bench, _ = run("benchmark", ["benchmarks/throughput.py", "--device", args.device, "--steps", "100", *data], summary)
    summary += ["  " + line for line in bench.splitlines() if re.match(r"(device:|variant|baseline|kit )", line)]
    trained, seconds = run("the card's command", ["train.py", "--epochs", str(args.epochs), "--batch-size", "128",
                                                   "--device", args.device, "--out", out, *data], summary)
    summary.append("  " + (trained.splitlines() or ["(no output)"])[0])
    summary.append(f"  {args.epochs} epochs at batch 128 in {seconds:.0f} s, start-up included")
    scores, _ = run("evaluate.py", ["evaluate.py", "--checkpoint", os.path.join(out, "checkpoint.pt"),
                                     "--device", args.device, *data], summary)
    summary += ["  " + line for line in scores.splitlines() if re.match(r"(Frechet|KL|IS analog|digits)", line)]
    print("\n== summary\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
