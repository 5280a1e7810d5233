"""Train a DCGAN on MNIST.

    python train.py                                   # the canonical run: 25 epochs, batch 32, into out/
    python train.py --epochs 1 --data-root ../shared/data
    python train.py --resume --epochs 30              # continue out/checkpoint.pt up to epoch 30
    python train.py --device cuda --amp bf16 --compile
    python train.py --conditional --out out_cond      # G and D get the digit: sample.py --digit 7

After every epoch, --out holds epoch_NNN.png (an 8x8 grid from one fixed noise batch, so epochs
compare), progress.gif (all those grids), losses.png (the curves of log.csv), log.csv and
checkpoint.pt; the checkpoint is saved first, and a picture that cannot be made is a warning.
Ctrl-C or kill (SIGTERM) finishes the step, saves the checkpoint and exits with 130 or 143, as a
shell does; --resume carries on from it. A second one stops at once.
"""

import argparse
import copy
import csv
import math
import os
import re
import signal
import sys
import time
from contextlib import contextmanager, nullcontext, suppress
from datetime import timedelta

try:  # Ctrl-C while torch loads (seconds on a laptop) ends as quietly as one later
    import torch
    from PIL import Image, ImageDraw
    from torchvision.utils import save_image

    from gan import generate, lazy_r1, train_step, warmed_up_decay
    from plumbing import (CHECKPOINT_FORMAT, MAX_BATCH, MAX_MODES, MAX_NZ, MAX_WIDTH, SEED, ArgumentParser,
                          UserError, add_device_flag, all_finite, atomic_path, bounded, build_networks, grid_labels,
                          load_checkpoint, load_mnist, make_writable_dir, pick_device, save_checkpoint, say,
                          seeded_noise, warn)
except KeyboardInterrupt:
    sys.exit(130)
if os.name == "nt":
    import msvcrt
else:
    import fcntl

FRACTION, LEARNING_RATE = bounded(float, 0, 1, open_high=True), bounded(float, 0, 1, open_low=True)
RATE_X = bounded(float, 0, 10, open_low=True)
# Settings a resumed run takes from its checkpoint, whatever the command line says, each with the
# flag type that checks it, on the command line and in the checkpoint alike.
RUN_SETTINGS = dict(batch_size=bounded(int, 1, MAX_BATCH), lr_g=LEARNING_RATE, lr_d=LEARNING_RATE, beta1=FRACTION,
                    beta2=FRACTION, seed=SEED, ema_decay=FRACTION, ema_warmup=bounded(float, 1, 1000, open_low=True),
                    first_x=RATE_X, late_x=RATE_X, r1=bounded(float, 0, 100))
LOG_FIELDS = ("epoch", "step", "loss_d", "loss_g", "d_x", "d_g_z", "images_per_s")
NUMBER = re.compile(r"-?\d+(\.\d+)?")  # what log_row writes in every cell
MAX_STEP_BYTES = 8 * 2**30  # a step needing more would swap a laptop or fill a GPU: refused up front
MAX_GIF_FRAMES = 100  # progress.gif shows at most this many epochs, evenly spread: its work stays bounded

def parser():
    p = ArgumentParser(prog="train.py", description="Train a DCGAN on MNIST.")
    p.add_argument("--epochs", type=bounded(int, 1, 10_000), default=25, help="total epochs to reach (default: 25)")
    # 32, not the paper's 128: four times the updates per epoch make better digits after 1 epoch and after 25
    # (docs/experiments.md), for about 1.2x the time per image. Other sizes: lr, betas, average, R1 by follow_batch.
    p.add_argument("--batch-size", type=RUN_SETTINGS["batch_size"], default=32,
                   help=f"images per step, at most {MAX_BATCH} and the training set (default: 32)")
    p.add_argument("--lr-g", type=LEARNING_RATE,
                   help="G's Adam learning rate (default: 2e-4 x sqrt(k), k = batch / 32 up to 4; x k if conditional)")
    p.add_argument("--lr-d", type=LEARNING_RATE, help="discriminator Adam learning rate (default: as --lr-g)")
    p.add_argument("--beta1", type=FRACTION, help="Adam beta1 (default: 0; 0.5 if conditional)")
    p.add_argument("--beta2", type=FRACTION, help="Adam beta2 (default: 1 - 0.01 k; 0.999 if conditional)")
    p.add_argument("--first-x", type=RATE_X, help="rates x this in epoch 1 (default: 2.83; 1 if conditional)")
    p.add_argument("--late-x", type=RATE_X,
                   help="rates x this from epoch 11 (default: max(k, 1) ** -0.25; 1 if conditional)")
    p.add_argument("--r1", type=RUN_SETTINGS["r1"], help="D's R1 penalty gamma (default: 0.1 above batch 32, else 0)")
    p.add_argument("--nz", type=bounded(int, 1, MAX_NZ), default=100, help="latent size (default: 100)")
    p.add_argument("--g-width", type=bounded(int, 1, MAX_WIDTH), default=64, help="generator base width (default: 64)")
    p.add_argument("--d-width", type=bounded(int, 1, MAX_WIDTH), default=32, help="discriminator width (default: 32)")
    p.add_argument("--modes", type=bounded(int, 0, MAX_MODES), default=10,
                   help="choices G reads from its noise, at most --nz; 0: plain noise, as the paper (default: 10)")
    p.add_argument("--kernel-size", type=int, default=5, choices=[4, 5], help="of stride-2 convolutions (default: 5)")
    p.add_argument("--ema-decay", type=FRACTION, help="cap on the decay of G's moving average (default: 0.9999; "
                   "0.999 ** (batch / 32) if conditional, the batch counted up to 128)")
    p.add_argument("--ema-warmup", type=RUN_SETTINGS["ema_warmup"],
                   help="the average's decay is (1 + step) / (this + step), capped (default: 15; 30 if conditional)")
    p.add_argument("--conditional", action="store_true", help="G and D get the digit, so sample.py can ask for one")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw/ (default: data)")
    p.add_argument("--out", default="out", help="folder for grids, GIF, log and checkpoint (default: out)")
    add_device_flag(p)
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"],
                   help="mixed precision; auto: fp16 on CUDA cards of compute capability 7.x, else off (default: auto)")
    p.add_argument("--compile", action="store_true", help="torch.compile both networks (default: off)")
    p.add_argument("--seed", type=SEED, default=0, help="random seed (default: 0)")
    p.add_argument("--log-every", type=bounded(int, 1, 10**6), default=100, help="steps per log line (default: 100)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    return p

def parse_args(argv=None):
    p, given = parser(), parser()
    args = p.parse_args(argv)
    given.set_defaults(**dict.fromkeys(vars(args)))  # parsed again with no defaults: what the user typed
    args.given = {key for key, value in vars(given.parse_args(argv)).items() if value is not None}
    if args.modes > args.nz and not (args.conditional or args.resume):  # else the flag plays no part
        p.error(f"--modes {args.modes} is more than --nz {args.nz}: G reads its choice from z's first entries")
    return args

def follow_batch(args):
    """Fill in the settings that follow the batch size, where neither typed nor resumed; returns their names.
    The recipe was tuned at batch 32: Adam without momentum, betas (0, 0.99). At k times that batch an epoch makes 1/k
    the updates, so the settings follow Adam's SDE scaling rule (Malladi et al. 2022): rates x sqrt(k), 1 - beta2 x k
    (at 128 FD 28-51% lower after 1 epoch, level or lower after 25; x k^0.75 or x k ended 37-152% higher); above 128,
    untried, 128's. Epoch 1 runs at x 2.83 the rates (FD after it 13-56% lower); at 128 D then left chance late, and R1
    (gamma 0.1 above 32) holds it there. From epoch 11 the rates fall to k^0.25 x 32's: FD after 25 at 128 8.2, 7.3,
    8.3, was 8.7, 8.2, 8.6 (x 0.71 at 32: 7-13% higher). G's average trails it by a 15th of the run, not a 30th capped
    at half an epoch: FD after 25 3-6% lower at 128, level to 3% lower at 32. --conditional, untried with these, keeps
    rates x k, the paper's betas (D pulled ahead without momentum), x 1, no R1 and the 30th capped at 0.999 ** k."""
    k = min(args.batch_size, 128) / 32
    rate, beta1, beta2 = (2e-4 * k, 0.5, 0.999) if args.conditional else (2e-4 * math.sqrt(k), 0.0, 1 - 0.01 * k)
    rule = dict(lr_g=rate, lr_d=rate, ema_decay=0.999 ** k if args.conditional else 0.9999,
                ema_warmup=30.0 if args.conditional else 15.0, beta1=beta1, beta2=beta2,
                first_x=1.0 if args.conditional else 2.83, late_x=1.0 if args.conditional else max(k, 1) ** -0.25,
                r1=0.1 if k > 1 and not args.conditional else 0.0)
    followed = [key for key in rule if getattr(args, key) is None]
    for key in followed:
        setattr(args, key, rule[key])
    return followed

def train(args):
    """The story of a run: set up, resume if asked, loop over the epochs, save after each. Returns 0, or
    the exit code of the signal that stopped it (128 + its number, as a shell reports it)."""
    device = pick_device(args.device)
    fresh = not os.path.exists(args.out)
    make_writable_dir(args.out)
    try:
        with run_lock(args.out):
            return start(args, device)
    except UserError:
        if fresh:  # a run refused before its first save leaves no folder behind
            with suppress(OSError):
                os.remove(os.path.join(args.out, ".lock"))
                os.rmdir(args.out)
        raise

def start(args, device):
    """Read the checkpoint and the data, check what they ask for, build, and train."""
    checkpoint = open_checkpoint(args)
    followed = follow_batch(args)
    if args.compile and args.r1:  # aot_autograd raises at R1's first step, not here (PyTorch #183603)
        raise UserError(f"--compile cannot take R1's gradient of a gradient (this run's R1 is {args.r1:g}): drop "
                        f"--compile, or start a run with --r1 0")
    images, labels = load_mnist(args.data_root, device)
    if args.batch_size > len(images):
        raise UserError(f"--batch-size {args.batch_size} is larger than the training set ({len(images)} images)")
    args.amp, why = precision(device, args.amp)
    config, parts, loop, epoch, step = build(args, device, checkpoint, len(images))
    if (need := step_bytes(config, args.batch_size)) > MAX_STEP_BYTES:
        raise UserError(f"--batch-size {args.batch_size} with these widths needs about {need / 2**30:.0f} GiB "
                        f"per step (at most {MAX_STEP_BYTES / 2**30:.0f}): lower --batch-size, --g-width or "
                        f"--d-width")
    say(f"device {device}, precision {args.amp} ({why}), {len(images)} images, batch size {args.batch_size}, "
        f"lr {args.lr_g:g}/{args.lr_d:g} (x {args.first_x:g} in epoch 1, x {args.late_x:.3g} from 11), "
        f"betas {args.beta1:g}/{args.beta2:g}, R1 {args.r1:g}, average (1 + step) / ({args.ema_warmup:g} + step) up to "
        f"{args.ema_decay:.4g}{' (following the batch size, as train.py --help says)' if followed else ''}"
        f"{', conditional' if config['num_classes'] else ''}")
    return train_epochs(args, config, parts, loop, (images, labels if config["num_classes"] else None), epoch, step)

def train_epochs(args, config, parts, loop, data, epoch, step):
    """The epochs from `epoch` (`step` steps done): after each, the checkpoint first, then the pictures."""
    rows, grid = start_log(args.out, step), grid_inputs(config, args.seed)
    steps_per_epoch = math.ceil(len(data[0]) / args.batch_size)
    with stop_requests() as stop:
        for epoch in range(epoch, args.epochs):
            step = run_epoch(args, data, loop, epoch, step, stop, rows)
            finished = step == (epoch + 1) * steps_per_epoch
            save_run(args, config, parts, epoch + finished, step)
            if finished:  # the grids draw from G's moving average
                write_pictures(args.out, parts["ema"], grid, epoch + 1, rows)
                say(f"epoch {epoch + 1}/{args.epochs} done: saved checkpoint.pt, then the pictures")
            if stop and step < args.epochs * steps_per_epoch:
                say(f"stopped at step {step} (epoch {epoch + 1}): saved checkpoint.pt; continue with: "
                    f"python train.py --resume --out {args.out} --epochs {args.epochs}")
                return 128 + stop[0]
    return 0

@contextmanager
def run_lock(folder):
    """Hold <folder>/.lock for the run, so a second run into the same folder is refused. The system
    drops the lock when the process ends, however it ends: a crash never leaves it stuck."""
    with open(os.path.join(folder, ".lock"), "a") as f:
        try:
            if os.name == "nt":
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"another train.py is running into {folder}: wait, or choose another --out") from None
        yield

def open_checkpoint(args):
    """The checkpoint to resume from, its run settings put into `args` (and said once); None for a
    fresh run, which must not overwrite a checkpoint silently. A flag given against them is refused."""
    path = os.path.join(args.out, "checkpoint.pt")
    if not args.resume:
        if os.path.exists(path):
            raise UserError(f"{path} exists: pass --resume to continue that run, or choose another --out")
        return None
    checkpoint = load_checkpoint(path)
    stored = {key: checkpoint["config"][key] for key in ("nz", "g_width", "d_width", "modes", "kernel_size")}
    stored["conditional"] = bool(checkpoint["config"]["num_classes"])
    old = {"first_x": 1.0, "late_x": 1.0, "r1": 0.0, "ema_warmup": 30.0}  # what kits before these settings ran
    for key, check in RUN_SETTINGS.items():  # each stored setting checked as its flag is
        try:  # repr: a string or bool is refused
            stored[key] = check(repr({**old, **checkpoint["train"]}[key]))
        except (TypeError, KeyError, argparse.ArgumentTypeError):
            raise UserError(f"{path}: its stored {key} is missing or out of range") from None
    if checkpoint["train"].get("amp") not in ("off", "bf16", "fp16"):
        raise UserError(f"{path}: its stored amp is missing or unknown")
    stored["amp"] = checkpoint["train"]["amp"]
    for key, value in stored.items():
        given = getattr(args, key)
        if key in args.given and given != value and not (key == "modes" and stored["conditional"]):
            raise UserError(f"--resume: --{key.replace('_', '-')} {given} contradicts the run's {key} {value}: a "
                            f"resumed run keeps its settings (drop the flag, or start a new run in another --out)")
        setattr(args, key, value)
    if checkpoint["epoch"] >= args.epochs:
        raise UserError(f"{path} has already trained {checkpoint['epoch']} epochs: pass --epochs above "
                        f"{checkpoint['epoch']} to train on")
    say(f"resuming {path} at epoch {checkpoint['epoch'] + 1}, step {checkpoint['step']}, with its settings: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in stored.items()))
    return checkpoint

def build(args, device, checkpoint, n_images):
    """Networks, optimizers, loss scaler (for --amp fp16) and G's moving average, fresh or from `checkpoint`.
    Returns (config, parts: all whose state is saved, train_step's arguments, epoch, step)."""
    torch.manual_seed(args.seed)
    dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    config = checkpoint["config"] if checkpoint else dict(nz=args.nz, g_width=args.g_width, d_width=args.d_width,
        channels=1, num_classes=10 if args.conditional else 0, modes=0 if args.conditional else args.modes,
        kernel_size=args.kernel_size)
    # channels_last on the CPU, where oneDNN's convolutions run faster in it (benchmarks/throughput.py).
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    G, D = (net.to(device, memory_format=layout) for net in build_networks(config))
    # Fused Adam: one kernel for all of a network's parameters. Not with fp16 on MPS, where some torch
    # releases' fused Adam ignores the loss scaler's skip of overflowed steps (PyTorch PR 186360).
    fused, betas = not (device.type == "mps" and dtype == torch.float16), (args.beta1, args.beta2)
    parts = dict(generator=G, discriminator=D,
                 opt_g=torch.optim.Adam(G.parameters(), lr=args.lr_g, betas=betas, fused=fused),
                 opt_d=torch.optim.Adam(D.parameters(), lr=args.lr_d, betas=betas, fused=fused),
                 # Loss scaling only for fp16, whose narrow range underflows small gradients; bf16 needs none.
                 scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16), ema=copy.deepcopy(G))
    # Checkpoints keep the plain modules, not torch.compile's wrappers (no `_orig_mod.` in their keys). On
    # CUDA, --compile records CUDA graphs ("reduce-overhead"): a step of small kernels is bound by launching them.
    loop = dict(G=G, D=D, opt_g=parts["opt_g"], opt_d=parts["opt_d"], scaler=parts["scaler"], ema=parts["ema"],
                autocast=torch.autocast(device.type, dtype=dtype) if dtype else nullcontext())
    if args.compile:
        mode = "reduce-overhead" if device.type == "cuda" else None
        loop.update(G=torch.compile(G, mode=mode), D=torch.compile(D, mode=mode))
    if not checkpoint:
        return config, parts, loop, 0, 0
    load_parts(args, parts, checkpoint, math.ceil(n_images / args.batch_size), device)
    return config, parts, loop, checkpoint["epoch"], checkpoint["step"]

def load_parts(args, parts, checkpoint, steps_per_epoch, device):
    """Load every part's state, or a one-line UserError where the checkpoint contradicts itself or the data."""
    path, epoch, step = f"{args.out}/checkpoint.pt", checkpoint["epoch"], checkpoint["step"]
    if not epoch * steps_per_epoch <= step < (epoch + 1) * steps_per_epoch:
        raise UserError(f"{path}: step {step} is not within epoch {epoch + 1} of {steps_per_epoch} steps at batch "
                        f"{args.batch_size}: was it trained on other data?")
    try:
        if not all_finite(checkpoint["discriminator"]):
            raise UserError(f"{path}: its discriminator weights hold NaN or infinity (a diverged run): train anew")
        for name, part in parts.items():
            if checkpoint[name]:  # a disabled GradScaler saves {}
                part.load_state_dict(checkpoint[name])
        torch.set_rng_state(checkpoint["rng"]["cpu"])
        if device.type in checkpoint["rng"] and device.type != "cpu":  # absent when resuming on another device
            getattr(torch, device.type).set_rng_state(checkpoint["rng"][device.type])
        for p, state in [*parts["opt_g"].state.items(), *parts["opt_d"].state.items()]:  # Adam checks neither
            if not (state["exp_avg"].shape == state["exp_avg_sq"].shape == p.shape and 0 <= state["step"] <= step):
                raise UserError(f"{path}: its optimizer state does not fit its networks or its step count")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:  # what torch raises
        raise UserError(f"{path} does not fit the run it describes ({type(e).__name__})") from None

def step_bytes(config, batch_size):
    """About the memory a step holds for its backward pass: 12 bytes per number of the feature maps of G
    and of D's three calls, per image (measured on the CPU: about 7.6 at batch 1024)."""
    w, dw = config["g_width"], config["d_width"]
    return 12 * batch_size * (6 * w * 7 * 7 + w * 14 * 14 + 28 * 28 + 3 * (dw * 14 * 14 + 2 * dw * 7 * 7))

def precision(device, mode):
    """(off, bf16 or fp16, why) for --amp `mode` on `device`. auto keeps fp32 on CUDA cards of
    compute capability 8.0 and up (an H100 ran bf16 autocast at 0.81x fp32: a step of small kernels is bound
    by launches, which the casts add; docs/experiments.md), takes fp16 with loss scaling on 7.x (tensor cores
    in fp16 only; no bf16 there), and fp32 on MPS (the path that surely works) and on the CPU (bf16 autocast
    without bf16 hardware measured ~25x slower). bf16 only where the hardware has it, never emulated."""
    cc = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    if mode == "bf16" and cc and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise UserError(f"--amp bf16: this GPU (compute capability {cc[0]}.{cc[1]}) has no bf16; use --amp fp16 "
                        f"(with loss scaling) or --amp off")
    if mode == "bf16" and device.type == "mps" and not torch.backends.mps.is_macos_or_newer(14, 0):
        raise UserError("--amp bf16: MPS has bf16 from macOS 14 on; use --amp fp16 or --amp off")
    why = f"--amp {mode}"
    if mode == "auto":
        mode = "fp16" if cc and cc[0] == 7 else "off"
        why = ("auto: compute capability 7.x has fp16 tensor cores and no bf16" if mode == "fp16" else
               "auto: autocast ran slower than fp32 on an H100" if cc and cc[0] >= 8 else
               f"auto: fp32, the sure path on {'this GPU' if cc else device.type}")
    if mode != "off" and device.type == "cpu":
        why += "; autocast on a CPU without half-precision hardware is slower than fp32"
    return mode, why

@contextmanager
def stop_requests():
    """Ctrl-C (SIGINT) and SIGTERM (kill, docker stop, schedulers) are noted in a list the loop checks
    after each step, so no step is cut in half and the checkpoint gets written. A second signal stops
    at once (a checkpoint being written is dropped under its temporary name)."""
    stop = []

    def request(signum, frame):
        if stop:
            raise KeyboardInterrupt
        stop.append(signum)
        os.write(2, b"stopping after this step (signal again to stop at once)\n")  # print() could re-enter

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

def run_epoch(args, data, loop, epoch, step, stop, rows):
    """Train on data = (images, labels or None) from `step` to the end of `epoch`, or until `stop`. Every
    --log-every steps, a row in `rows` (and log.csv) and a console line. Statistics are summed on the
    device and read only then: a read waits for the device."""
    (images, labels), n, bs = data, len(data[0]), args.batch_size
    steps_per_epoch = math.ceil(n / bs)
    mark_step = args.compile and images.is_cuda  # CUDA graphs may reuse the memory of the step before
    # The epoch's shuffle comes from (seed, epoch), so a resumed run rebuilds it.
    order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed * 100_003 + epoch)).to(images.device)
    sums, count, start = torch.zeros(4, device=images.device), 0, time.perf_counter()
    x = args.first_x if epoch == 0 else args.late_x if epoch >= 10 else 1.0  # follow_batch says why
    loop["opt_g"].param_groups[0]["lr"], loop["opt_d"].param_groups[0]["lr"] = args.lr_g * x, args.lr_d * x
    for i in range(step - epoch * steps_per_epoch, steps_per_epoch):
        if mark_step:
            torch.compiler.cudagraph_mark_step_begin()
        batch = order[i * bs:(i + 1) * bs]
        sums += train_step(real=images[batch], labels=None if labels is None else labels[batch],
                           ema_decay=warmed_up_decay(step, args.ema_decay, args.ema_warmup),
                           r1=lazy_r1(args.r1, step), **loop)
        count, step = count + 1, step + 1
        if (i + 1) % args.log_every == 0 or i + 1 == steps_per_epoch or stop:
            log_row(args, rows, epoch, (step, args.epochs * steps_per_epoch), sums / count,
                    count * bs / (time.perf_counter() - start))
            sums, count, start = sums.zero_(), 0, time.perf_counter()
        if stop:
            break
    return step

def log_row(args, rows, epoch, steps, means, rate):
    """A row of log.csv and a console line; a run whose losses are no longer finite ends here, unsaved."""
    (step, total), (loss_d, loss_g, d_x, d_g_z) = steps, means.tolist()
    if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
        raise UserError(f"training diverged at step {step} (loss_d {loss_d}, loss_g {loss_g}): "
                        f"{args.out}/checkpoint.pt is the last finite one; try lower --lr-g/--lr-d or --amp off")
    rows.append([epoch + 1, step, *(f"{m:.4f}" for m in (loss_d, loss_g, d_x, d_g_z)), f"{rate:.1f}"])
    append_log(args.out, rows[-1])
    left = timedelta(seconds=round((total - step) * args.batch_size / rate))
    say(f"epoch {epoch + 1}/{args.epochs} step {step}/{total}  loss_d {loss_d:.3f}  loss_g {loss_g:.3f}  "
        f"D(x) {d_x:.3f}  D(G(z)) {d_g_z:.3f}  {rate:.0f} img/s  time left {left}")

def save_run(args, config, parts, epoch, step):
    """checkpoint.pt after `step` steps, `epoch` epochs of them complete (a run stopped mid-epoch resumes
    at batch step - epoch * steps_per_epoch of its epoch); never weights that are no longer finite."""
    if not all(all_finite(parts[name].state_dict()) for name in ("generator", "discriminator")):
        raise UserError(f"training diverged before step {step} (weights hold NaN or infinity): "
                        f"{args.out}/checkpoint.pt is the last finite one; try lower --lr-g/--lr-d or --amp off")
    device = next(parts["generator"].parameters()).device
    rng = {"cpu": torch.get_rng_state()} | ({device.type: getattr(torch, device.type).get_rng_state()}
                                            if device.type != "cpu" else {})  # torch.cuda / torch.mps
    save_checkpoint({name: part.state_dict() for name, part in parts.items()} | dict(
        format=CHECKPOINT_FORMAT, config=config, train={k: vars(args)[k] for k in [*RUN_SETTINGS, "amp"]},
        epoch=epoch, step=step, rng=rng), os.path.join(args.out, "checkpoint.pt"))

def grid_inputs(config, seed):
    """The grids' fixed (z, labels): 64 digits in an 8x8 grid, or for a conditional GAN one row per
    digit whose 8 columns share one noise each (so a column keeps its handwriting)."""
    if not config["num_classes"]:
        return seeded_noise(64, config["nz"], seed), None
    return seeded_noise(8, config["nz"], seed).repeat(config["num_classes"], 1), grid_labels(config["num_classes"], 8)

def write_pictures(out, G, grid, epoch, rows):
    """epoch_NNN.png from the fixed grid noise, progress.gif of the grids there are (at most MAX_GIF_FRAMES),
    and losses.png. They are optional: one that cannot be made is a warning, and training goes on."""
    try:
        with atomic_path(os.path.join(out, f"epoch_{epoch:03d}.png")) as tmp:
            save_image(generate(G, *grid), tmp, format="png", nrow=8, normalize=True, value_range=(-1, 1))
        shown = sorted({1 + (epoch - 1) * k // (MAX_GIF_FRAMES - 1) for k in range(MAX_GIF_FRAMES)})
        frames = [frame for e in shown if (frame := read_grid(os.path.join(out, f"epoch_{e:03d}.png")))]
        with atomic_path(os.path.join(out, "progress.gif")) as tmp:
            frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                           duration=[400] * (len(frames) - 1) + [2000], loop=0)  # the last grid held longer
        with atomic_path(os.path.join(out, "losses.png")) as tmp:
            draw_losses(rows).save(tmp, format="PNG")
    except (UserError, OSError, ValueError, IndexError) as e:
        warn(f"epoch {epoch}'s pictures are not all written ({e}); checkpoint.pt is saved, training goes on")

def read_grid(path):
    """An earlier epoch's grid as a GIF frame, or None (with a warning) if it is missing or damaged."""
    try:
        with Image.open(path) as image:
            return image.convert("L")
    except (OSError, SyntaxError, ValueError) as e:  # Pillow reports some broken PNGs as SyntaxError
        warn(f"{path} left out of progress.gif ({type(e).__name__})")
        return None

def draw_losses(rows, width=640, height=480):
    """log.csv's rows as a picture: D's and G's loss (top), D(x) and D(G(z)) (bottom), against the step."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    steps = [int(row[1]) for row in rows]
    x = [20 + (width - 40) * (s - steps[0]) / max(steps[-1] - steps[0], 1) for s in steps]
    panels = (((2, "loss_d", "#d62728"), (3, "loss_g", "#1f77b4")), ((4, "D(x)", "#2ca02c"), (5, "D(G(z))", "#9467bd")))
    for k, curves in enumerate(panels):
        top, bottom = k * height // 2 + 25, (k + 1) * height // 2 - 10
        values = [float(row[column]) for column, _, _ in curves for row in rows]
        high = 1.0 if k else max([v for v in values if math.isfinite(v)], default=1.0)  # D's are probabilities

        def y(v):  # a loss that diverged to inf or NaN is drawn at the top
            return bottom - (bottom - top) * (min(max(v, 0), high) if math.isfinite(v) else high) / max(high, 1e-9)

        draw.rectangle((20, top, width - 20, bottom), outline="black")
        draw.text((180, top - 15), f"from 0 (bottom) to {high:.2f} (top), steps {steps[0]}-{steps[-1]}", fill="black")
        for j, (column, name, colour) in enumerate(curves):
            draw.line([(xj, y(float(row[column]))) for xj, row in zip(x, rows)], fill=colour, width=2)
            draw.text((20 + 70 * j, top - 15), name, fill=colour)  # the legend: each name in its curve's colour
    return image

def start_log(out, step):
    """log.csv's rows up to `step` (rows past it were written after the checkpoint), written back whole;
    rows that are damaged or not numbers are left out. Later rows are appended, so no epoch rewrites it."""
    path = os.path.join(out, "log.csv")
    rows = []
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if len(r) == len(LOG_FIELDS) and r[1].isdigit()
                    and all(map(NUMBER.fullmatch, r)) and int(r[1]) <= step]
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        warn(f"{path} is unreadable ({type(e).__name__}): a new log starts")
    try:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([LOG_FIELDS, *rows])
    except UserError as e:
        warn(str(e))
    return rows

def append_log(out, row):
    """One row onto log.csv; a log that cannot be written is a warning, never the end of the run."""
    try:
        with open(os.path.join(out, "log.csv"), "a", newline="") as f:
            csv.writer(f).writerow(row)
    except OSError as e:
        warn(f"log.csv not written ({e.strerror})")

def main(argv=None):
    args = parse_args(argv)
    try:
        code = train(args)
    except UserError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # a second signal, or Ctrl-C before training began
        print(f"train.py: stopped at once; {args.out}/checkpoint.pt is the last complete checkpoint, if any",
              file=sys.stderr)
        sys.exit(130)
    if code:
        sys.exit(code)

if __name__ == "__main__":
    main()
