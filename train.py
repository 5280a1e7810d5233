"""Train a DCGAN on MNIST.

    python train.py                                   # the canonical run: 25 epochs, batch 32, into out/
    python train.py --epochs 1 --data-root ../shared/data
    python train.py --resume --epochs 30              # continue out/checkpoint.pt up to epoch 30
    python train.py --device cuda --amp bf16 --compile
    python train.py --conditional --out out_cond      # G and D get the digit: sample.py --digit 7

After every epoch, --out holds epoch_NNN.png (an 8x8 grid from one fixed noise batch, so epochs
compare), progress.gif (all those grids), losses.png (the curves of log.csv), log.csv and
checkpoint.pt. Ctrl-C or kill (SIGTERM) finishes the step, saves the checkpoint and exits;
--resume carries on from it. A second one stops at once.
"""

import argparse
import copy
import csv
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from datetime import timedelta

import torch
from PIL import Image, ImageDraw
from torchvision.utils import save_image

from gan import (CHECKPOINT_FORMAT, MAX_BATCH, MAX_MODES, MAX_NZ, MAX_WIDTH, SEED, ArgumentParser, UserError,
                 add_device_flag, atomic_path, bounded, build_networks, generate, grid_labels, load_checkpoint,
                 load_mnist, make_writable_dir, pick_device, save_checkpoint, seeded_noise, train_step,
                 warmed_up_decay)

FRACTION, LEARNING_RATE = bounded(float, 0, 1, open_high=True), bounded(float, 0, 1, open_low=True)
# Settings a resumed run takes from its checkpoint, whatever the command line says, each with the
# flag type that checks it, on the command line and in the checkpoint alike.
RUN_SETTINGS = dict(batch_size=bounded(int, 1, MAX_BATCH), lr_g=LEARNING_RATE, lr_d=LEARNING_RATE,
                    beta1=FRACTION, beta2=FRACTION, seed=SEED, ema_decay=FRACTION)
LOG_FIELDS = ("epoch", "step", "loss_d", "loss_g", "d_x", "d_g_z", "images_per_s")
MAX_STEP_BYTES = 8 * 2**30  # a step needing more would swap a laptop or fill a GPU: refused up front

def parse_args(argv=None):
    p = ArgumentParser(prog="train.py", description="Train a DCGAN on MNIST.")
    p.add_argument("--epochs", type=bounded(int, 1, 10_000), default=25, help="total epochs to reach (default: 25)")
    # 32, not the paper's 128: four times the updates per epoch make better digits at every run length
    # (docs/experiments.md), for about 1.2x the time per image.
    p.add_argument("--batch-size", type=RUN_SETTINGS["batch_size"], default=32,
                   help=f"images per step, at most {MAX_BATCH} and the training set (default: 32)")
    p.add_argument("--lr-g", type=LEARNING_RATE, default=2e-4, help="generator Adam learning rate (default: 2e-4)")
    p.add_argument("--lr-d", type=LEARNING_RATE, default=2e-4, help="discriminator Adam learning rate (default: 2e-4)")
    p.add_argument("--beta1", type=FRACTION, default=0.5, help="Adam beta1 for both (default: 0.5)")
    p.add_argument("--beta2", type=FRACTION, default=0.999, help="Adam beta2 for both (default: 0.999)")
    p.add_argument("--nz", type=bounded(int, 1, MAX_NZ), default=100, help="latent size (default: 100)")
    p.add_argument("--g-width", type=bounded(int, 1, MAX_WIDTH), default=64, help="generator base width (default: 64)")
    p.add_argument("--d-width", type=bounded(int, 1, MAX_WIDTH), default=32, help="discriminator width (default: 32)")
    p.add_argument("--modes", type=bounded(int, 0, MAX_MODES), default=10,
                   help="choices G reads from its noise, at most --nz; 0: plain noise, as the paper (default: 10)")
    p.add_argument("--kernel-size", type=int, default=5, choices=[4, 5], help="of stride-2 convolutions (default: 5)")
    p.add_argument("--ema-decay", type=FRACTION, default=0.999, help="G's moving average, once warm (default: 0.999)")
    p.add_argument("--conditional", action="store_true", help="G and D get the digit, so sample.py can ask for one")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw/ (default: data)")
    p.add_argument("--out", default="out", help="folder for grids, GIF, log and checkpoint (default: out)")
    add_device_flag(p)
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"],
                   help="mixed precision; auto: bf16 (else fp16) on CUDA, off on MPS and CPU (default: auto)")
    p.add_argument("--compile", action="store_true", help="torch.compile both networks (default: off)")
    p.add_argument("--seed", type=SEED, default=0, help="random seed (default: 0)")
    p.add_argument("--log-every", type=bounded(int, 1, 10**6), default=100, help="steps per log line (default: 100)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    args = p.parse_args(argv)
    if args.modes > args.nz and not (args.conditional or args.resume):  # else the flag plays no part
        p.error(f"--modes {args.modes} is more than --nz {args.nz}: G reads its choice from z's first entries")
    return args

def train(args):
    """The story of a run: set up, resume if asked, loop over the epochs, save after each."""
    device, checkpoint = pick_device(args.device), open_checkpoint(args)
    images, labels = load_mnist(args.data_root, device)
    if args.batch_size > len(images):
        raise UserError(f"--batch-size {args.batch_size} is larger than the training set ({len(images)} images)")
    dtype = amp_dtype(device, args.amp)
    config, parts, loop, epoch, step = build(args, device, dtype, checkpoint)
    if (need := step_bytes(config, args.batch_size)) > MAX_STEP_BYTES:
        raise UserError(f"--batch-size {args.batch_size} with these widths needs about {need / 2**30:.0f} GiB per "
                        f"step (at most {MAX_STEP_BYTES / 2**30:.0f}): lower --batch-size, --g-width or --d-width")
    make_writable_dir(args.out)
    print(f"device {device}, precision {f'{dtype} autocast'.removeprefix('torch.') if dtype else 'fp32'}"
          f"{' with GradScaler' if parts['scaler'].is_enabled() else ''}, {len(images)} images, batch size "
          f"{args.batch_size}{', conditional' if config['num_classes'] else ''}"
          f"{f'; resuming at epoch {epoch + 1}, step {step}' if checkpoint else ''}")
    if dtype and device.type == "cpu":
        print("note: autocast on a CPU without half-precision hardware is slower than fp32")
    data, rows = (images, labels if config["num_classes"] else None), read_log(args.out, step)
    grid = grid_inputs(config, args.seed)
    steps_per_epoch = math.ceil(len(images) / args.batch_size)
    with stop_requests() as stop:
        for epoch in range(epoch, args.epochs):
            step = run_epoch(args, data, loop, epoch, step, stop, rows)
            if finished := step == (epoch + 1) * steps_per_epoch:  # the grids draw from G's moving average
                write_pictures(args.out, parts["ema"], grid, epoch + 1, rows)
            save_run(args, config, parts, epoch + finished, step)
            if finished:
                print(f"epoch {epoch + 1}/{args.epochs} done: wrote epoch_{epoch + 1:03d}.png, progress.gif, "
                      f"losses.png, checkpoint.pt")
            if stop.is_set() and step < args.epochs * steps_per_epoch:
                print(f"stopped at step {step} (epoch {epoch + 1}): saved checkpoint.pt; continue with: "
                      f"python train.py --resume --out {args.out} --epochs {args.epochs}")
                return

def open_checkpoint(args):
    """The checkpoint to resume from, its run settings put into `args`; None for a fresh run,
    which must not overwrite a checkpoint silently."""
    path = os.path.join(args.out, "checkpoint.pt")
    if not args.resume:
        if os.path.exists(path):
            raise UserError(f"{path} exists: pass --resume to continue that run, or choose another --out")
        return None
    if not os.path.exists(path):
        raise UserError(f"--resume: no checkpoint at {path}")
    checkpoint = load_checkpoint(path)
    for key, check in RUN_SETTINGS.items():  # each stored setting checked as its flag is
        try:
            setattr(args, key, check(repr(checkpoint["train"][key])))  # repr: a string or bool is refused
        except (TypeError, KeyError, argparse.ArgumentTypeError):
            raise UserError(f"{path}: its stored {key} is missing or out of range") from None
    if args.conditional and not checkpoint["config"]["num_classes"]:
        raise UserError(f"--conditional: {path} is an unconditional run; resume it without "
                        f"--conditional, or start a conditional one in another --out")
    if checkpoint["epoch"] >= args.epochs:
        raise UserError(f"{path} has already trained {checkpoint['epoch']} epochs: pass --epochs above "
                        f"{checkpoint['epoch']} to train on")
    return checkpoint

def build(args, device, dtype, checkpoint):
    """Networks, optimizers, loss scaler (for autocast `dtype` fp16) and G's moving average, fresh or from
    `checkpoint`. Returns (config, parts: all whose state is saved, train_step's arguments, epoch, step)."""
    torch.manual_seed(args.seed)
    config = checkpoint["config"] if checkpoint else dict(nz=args.nz, g_width=args.g_width, d_width=args.d_width,
        channels=1, num_classes=10 if args.conditional else 0, modes=0 if args.conditional else args.modes,
        kernel_size=args.kernel_size)
    # channels_last on the CPU, where oneDNN's convolutions run faster in it (benchmarks/throughput.py).
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    G, D = (net.to(device, memory_format=layout) for net in build_networks(config))
    parts = dict(generator=G, discriminator=D,  # fused Adam: one kernel for all of a network's parameters
                 opt_g=torch.optim.Adam(G.parameters(), lr=args.lr_g, betas=(args.beta1, args.beta2), fused=True),
                 opt_d=torch.optim.Adam(D.parameters(), lr=args.lr_d, betas=(args.beta1, args.beta2), fused=True),
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
    try:
        for name, part in parts.items():
            if checkpoint[name]:  # a disabled GradScaler saves {}
                part.load_state_dict(checkpoint[name])
        torch.set_rng_state(checkpoint["rng"]["cpu"])
        if device.type in checkpoint["rng"] and device.type != "cpu":  # absent when resuming on another device
            getattr(torch, device.type).set_rng_state(checkpoint["rng"][device.type])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:  # what torch raises
        raise UserError(f"{args.out}/checkpoint.pt does not fit the run it describes ({type(e).__name__})") from None
    return config, parts, loop, checkpoint["epoch"], checkpoint["step"]

def step_bytes(config, batch_size):
    """About the memory a step holds for its backward pass: 12 bytes per number of the feature maps of G
    and of D's three calls, per image (measured on the CPU: about 7.6 at batch 1024)."""
    w, dw = config["g_width"], config["d_width"]
    return 12 * batch_size * (6 * w * 7 * 7 + w * 14 * 14 + 28 * 28 + 3 * (dw * 14 * 14 + 2 * dw * 7 * 7))

def amp_dtype(device, mode):
    """The autocast dtype for --amp on this device, or None for fp32. auto: bf16 on CUDA where the card has
    it (no loss scaling needed), else fp16; off on the CPU, where bf16 autocast without bf16 hardware
    measured ~25x slower than fp32, and on MPS, where fp32 is the path that surely works."""
    if mode == "auto":
        mode = "off" if device.type != "cuda" else "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--amp bf16: this GPU has no bf16; use --amp fp16 (with loss scaling) or --amp off")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]

@contextmanager
def stop_requests():
    """Ctrl-C (SIGINT) and SIGTERM (kill, docker stop, schedulers) set a flag the loop checks after each
    step, so no step is cut in half and the checkpoint gets written. A second signal stops at once (a
    checkpoint being written is dropped under its temporary name)."""
    stop = threading.Event()

    def request(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
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
    # The epoch's shuffle comes from (seed, epoch), so a resumed run rebuilds it.
    order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed * 100_003 + epoch)).to(images.device)
    sums, count, start = torch.zeros(4, device=images.device), 0, time.perf_counter()
    for i in range(step - epoch * steps_per_epoch, steps_per_epoch):
        batch = order[i * bs:(i + 1) * bs]
        sums += train_step(real=images[batch], labels=None if labels is None else labels[batch],
                           ema_decay=warmed_up_decay(step, args.ema_decay), **loop)
        count, step = count + 1, step + 1
        if (i + 1) % args.log_every == 0 or i + 1 == steps_per_epoch:
            loss_d, loss_g, d_x, d_g_z = (sums / count).tolist()
            rate = count * bs / (time.perf_counter() - start)
            rows.append([epoch + 1, step, *(f"{m:.4f}" for m in (loss_d, loss_g, d_x, d_g_z)), f"{rate:.1f}"])
            write_log(args.out, rows)
            left = timedelta(seconds=round((args.epochs * steps_per_epoch - step) * bs / rate))
            print(f"epoch {epoch + 1}/{args.epochs} step {step}/{args.epochs * steps_per_epoch}  loss_d {loss_d:.3f}  "
                  f"loss_g {loss_g:.3f}  D(x) {d_x:.3f}  D(G(z)) {d_g_z:.3f}  {rate:.0f} img/s  time left {left}")
            sums, count, start = sums.zero_(), 0, time.perf_counter()
        if stop.is_set():
            break
    return step

def save_run(args, config, parts, epoch, step):
    """checkpoint.pt after `step` steps, `epoch` epochs of them complete (a run stopped mid-epoch resumes
    at batch step - epoch * steps_per_epoch of its epoch)."""
    device = next(parts["generator"].parameters()).device
    rng = {"cpu": torch.get_rng_state()} | ({device.type: getattr(torch, device.type).get_rng_state()}
                                            if device.type != "cpu" else {})  # torch.cuda / torch.mps
    save_checkpoint({name: part.state_dict() for name, part in parts.items()} | dict(
        format=CHECKPOINT_FORMAT, config=config, train={k: vars(args)[k] for k in RUN_SETTINGS},
        epoch=epoch, step=step, rng=rng), os.path.join(args.out, "checkpoint.pt"))

def grid_inputs(config, seed):
    """The grids' fixed (z, labels): 64 digits in an 8x8 grid, or for a conditional GAN one row per
    digit whose 8 columns share one noise each (so a column keeps its handwriting)."""
    if not config["num_classes"]:
        return seeded_noise(64, config["nz"], seed), None
    return seeded_noise(8, config["nz"], seed).repeat(config["num_classes"], 1), grid_labels(config["num_classes"], 8)

def write_pictures(out, G, grid, epoch, rows):
    """epoch_NNN.png from the fixed grid noise, progress.gif of all of them, and losses.png."""
    with atomic_path(os.path.join(out, f"epoch_{epoch:03d}.png")) as tmp:
        save_image(generate(G, *grid), tmp, format="png", nrow=8, normalize=True, value_range=(-1, 1))
    frames = [Image.open(os.path.join(out, f"epoch_{e:03d}.png")).convert("L") for e in range(1, epoch + 1)]
    with atomic_path(os.path.join(out, "progress.gif")) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=[400] * (epoch - 1) + [2000], loop=0)  # the last grid held longer
    with atomic_path(os.path.join(out, "losses.png")) as tmp:
        draw_losses(rows).save(tmp, format="PNG")

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

def read_log(out, step):
    """log.csv's rows up to `step` (rows past it were written after the checkpoint), or none."""
    if not os.path.exists(path := os.path.join(out, "log.csv")):
        return []
    with open(path, newline="") as f:
        return [r for r in csv.reader(f) if len(r) == len(LOG_FIELDS) and r[1].isdigit() and int(r[1]) <= step]

def write_log(out, rows):
    """log.csv, written whole under a temporary name and renamed, so no kill leaves half a row."""
    with atomic_path(os.path.join(out, "log.csv")) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([LOG_FIELDS, *rows])

def main(argv=None):
    args = parse_args(argv)
    try:
        train(args)
    except UserError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # a second signal, or Ctrl-C before training began
        print(f"train.py: stopped at once; {args.out}/checkpoint.pt is the last complete checkpoint, if any",
              file=sys.stderr)
        sys.exit(130)

if __name__ == "__main__":
    main()
