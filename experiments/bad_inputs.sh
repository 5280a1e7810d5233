#!/usr/bin/env bash
# Inputs a new user might give, each run as a command; prints "exit code | command | first line of stderr"
# (or of stdout, for a run that worked). Every line should read 0 or 2, never a traceback.
#   PYTHON=.venv/bin/python bash experiments/bad_inputs.sh DATA      # DATA: a folder holding MNIST/raw/ (tiny files are enough)
set -u
K=$(cd "$(dirname "$0")/.." && pwd); D=$(realpath "$1")
P=$(command -v "${PYTHON:-python}"); P=$(cd "$(dirname "$P")" && pwd)/$(basename "$P")  # absolute, venv kept
cd "$(mktemp -d)"
T="--nz 16 --g-width 8 --d-width 8 --batch-size 64 --device cpu"
$P $K/train.py --data-root $D --out base $T --epochs 1 > /dev/null 2>&1
try() {
  out=$("$@" 2>err); rc=$?; cmd="$*"
  echo "$rc | ${cmd#"$P $K/"} | $(head -1 err | cut -c1-150)$([ $rc = 0 ] && echo "$out" | tail -1)"
}
try $P $K/train.py --data-root $D --out base $T --epochs 2 --resume --batch-size 32
try $P $K/train.py --data-root $D --out base $T --epochs 2 --resume --amp fp16
try $P $K/train.py --data-root $D --out base $T --epochs 2 --resume --conditional
try $P $K/train.py --data-root $D --out base $T --epochs 1 --resume
try $P $K/train.py --data-root $D --out base $T --epochs 2
try $P $K/train.py --data-root $D --out /dev/null $T --epochs 1
try $P $K/train.py --data-root $D --out /proc/x $T --epochs 1
try $P $K/train.py --data-root /nonexistent $T --out o2 --epochs 1
try $P $K/train.py --data-root $D --out o3 $T --epochs 1 --amp bf16 --device cuda
try $P $K/train.py --data-root $D --out o3 $T --lr-g nan
try $P $K/train.py --data-root $D --out o3 $T --batch-size 100000
try $P $K/train.py --data-root $D --out o3 $T --modes 50 --nz 10
try $P $K/sample.py --checkpoint base/checkpoint.pt --out /dev/null
try $P $K/sample.py --checkpoint base/checkpoint.pt --out grid.jpg
try $P $K/sample.py --checkpoint base/checkpoint.pt --out base/samples/
try $P $K/sample.py --checkpoint base/checkpoint.pt --n 5 --nrow 100 --out g.png
try $P $K/sample.py --checkpoint base/checkpoint.pt --digit 3
try $P $K/sample.py --checkpoint base/checkpoint.pt --number 12a
try $P $K/sample.py --checkpoint base/checkpoint.pt --count 3
try $P $K/sample.py --checkpoint base/log.csv
try $P $K/sample.py --checkpoint base
try $P $K/sample.py --checkpoint base/checkpoint.pt --out /nonexistent_dir_ro/sub/x.png --n 4
try $P $K/sample.py --checkpoint base/checkpoint.pt --n 20000 --out big.png
mkdir -p one; cp base/epoch_001.png one/
try $P $K/evaluate.py --samples one --data-root $D
try $P $K/evaluate.py --samples nope --data-root $D
try $P $K/evaluate.py --checkpoint base/checkpoint.pt --data-root $D --json /dev/null
try $P $K/evaluate.py --checkpoint base/checkpoint.pt --data-root $D --json base
try $P $K/evaluate.py --checkpoint base/checkpoint.pt --data-root $D --n 1
try $P $K/benchmarks/throughput.py --data-root $D --batch-size 0
try $P $K/benchmarks/throughput.py --data-root $D --device mps
printf 'x' > base/epoch_001.png; echo "1,2,zz" >> base/log.csv
try $P $K/train.py --data-root $D --out base $T --epochs 2 --resume
(ulimit -f 50; try $P $K/train.py --data-root $D --out base $T --epochs 3 --resume)
$P $K/train.py --data-root $D --out piped $T --epochs 2 --log-every 1 | head -1 > /dev/null
echo "${PIPESTATUS[0]} | train.py ... | head -1 | $(ls piped | tr '\n' ' ')"
