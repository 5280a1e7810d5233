"""Train a DCGAN on MNIST.

    python train.py                                   # the canonical run: 25 epochs, batch 128, into out/
    python train.py --epochs 1 --data-root ../shared/data
    python train.py --resume --epochs 30              # continue out/checkpoint.pt up to epoch 30
    python train.py --device cuda --compile
    python train.py --conditional --out out_cond      # G and D get the digit: sample.py --digit 7
    python train.py --kernel-size 4 --d-width 64      # pytorch/examples' sizes, the defaults before

After every epoch, --out (default out/) holds epoch_NNN.png (an 8x8 grid from one fixed noise
batch, so epochs compare; drawn from the generator's moving average once it has 4,690 updates),
progress.gif (all those grids), log.csv and checkpoint.pt.
Ctrl-C or kill (SIGTERM) finishes the current step, saves the checkpoint and exits; --resume carries
on from it. A second one stops at once, keeping the last complete checkpoint.
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
from contextlib import contextmanager, nullcontext, suppress
from datetime import timedelta

import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision.utils import save_image

from gan import (
    CHECKPOINT_FORMAT,
    MAX_BATCH,
    MAX_NZ,
    MAX_WIDTH,
    SEED,
    ArgumentParser,
    add_device_flag,
    Discriminator,
    Generator,
    UserError,
    atomic_path,
    ema_ready,
    generate,
    load_checkpoint,
    make_writable_dir,
    pick_device,
    bounded,
    save_checkpoint,
    weights_init,
)

FRACTION = bounded(float, 0, 1, open_high=True)  # Adam's betas, the moving average's decay
LEARNING_RATE = bounded(float, 0, 1, open_low=True)
# Settings a resumed run takes from its checkpoint, whatever the command line says, and the
# flag type that checks each, on the command line and in the checkpoint alike.
RUN_SETTINGS = dict(batch_size=bounded(int, 1, MAX_BATCH), lr_g=LEARNING_RATE, lr_d=LEARNING_RATE,
                    beta1=FRACTION, beta2=FRACTION, seed=SEED, ema_decay=FRACTION)
LOG_FIELDS = ("epoch", "step", "loss_d", "loss_g", "d_x", "d_g_z", "images_per_s")


def parse_args(argv=None):
    p = ArgumentParser(prog="train.py", description="Train a DCGAN on MNIST.")
    p.add_argument("--epochs", type=bounded(int, 1, 10_000), default=25, help="total epochs to reach (default: 25)")
    p.add_argument("--batch-size", type=RUN_SETTINGS["batch_size"], default=128,
                   help=f"images per step, at most {MAX_BATCH} and the training set (default: 128)")
    p.add_argument("--lr-g", type=LEARNING_RATE, default=2e-4, help="generator Adam learning rate (default: 2e-4)")
    p.add_argument("--lr-d", type=LEARNING_RATE, default=2e-4, help="discriminator Adam learning rate (default: 2e-4)")
    p.add_argument("--beta1", type=FRACTION, default=0.5, help="Adam beta1 for both (default: 0.5)")
    p.add_argument("--beta2", type=FRACTION, default=0.999, help="Adam beta2 for both (default: 0.999)")
    p.add_argument("--nz", type=bounded(int, 1, MAX_NZ), default=100, help="latent size (default: 100)")
    p.add_argument("--g-width", type=bounded(int, 1, MAX_WIDTH), default=64, help="generator base width (default: 64)")
    p.add_argument("--d-width", type=bounded(int, 1, MAX_WIDTH), default=32,
                   help="discriminator base width (default: 32)")
    p.add_argument("--kernel-size", type=int, default=5, choices=[4, 5],
                   help="kernel size of the four stride-2 convolutions (default: 5)")
    p.add_argument("--ema-decay", type=FRACTION, default=0.99,
                   help="decay of the generator's moving average, reached by a warm-up (default: 0.99)")
    p.add_argument("--conditional", action="store_true",
                   help="class-conditional: G and D are given the digit label, so sample.py can ask for one")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw/ (default: data)")
    p.add_argument("--out", default="out", help="folder for grids, GIF, log and checkpoint (default: out)")
    add_device_flag(p)
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"],
                   help="mixed precision; auto: bf16 (else fp16) on CUDA, off on MPS and CPU (default: auto)")
    p.add_argument("--compile", action="store_true", help="torch.compile both networks (default: off)")
    p.add_argument("--seed", type=SEED, default=0, help="random seed (default: 0)")
    p.add_argument("--log-every", type=bounded(int, 1, 1_000_000), default=100,
                   help="steps between log lines (default: 100)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    return p.parse_args(argv)


def load_mnist(root, device, train=True):
    """MNIST's training (or test) set as (images, labels) on `device`: images one (N, 1, 28, 28)
    float tensor in [-1, 1], labels (N,) int64.

    Scaling once and indexing batches out of this tensor replaces a DataLoader that converts
    every image from PIL on every epoch, which is what makes the common examples slow.
    """
    raw = os.path.join(root, "MNIST", "raw")
    new_dirs = [d for d in (raw, os.path.dirname(raw), root) if not os.path.isdir(d)]
    try:
        dataset = torchvision.datasets.MNIST(root, train=train, download=True)
    except Exception as e:  # torchvision reports a failed download and a bad file in many types
        for d in new_dirs:  # the folders torchvision made for its download, innermost first
            with suppress(OSError):
                os.rmdir(d)  # only if empty: never anything the user put there
        if not os.path.isfile(os.path.join(raw, "train-images-idx3-ubyte")):
            raise UserError(f"MNIST is not in {raw}/ and could not be downloaded: put the four "
                            f"IDX files there, or pass --data-root FOLDER whose MNIST/raw/ holds them") from None
        raise UserError(f"corrupt MNIST file in {raw}/ ({type(e).__name__}: {e})".splitlines()[0]) from None
    images, labels = dataset.data, dataset.targets  # (N, 28, 28) uint8, (N,) int64
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(labels) != len(images):
        raise UserError(f"corrupt MNIST file in {raw}/: {tuple(images.shape)} images, "
                        f"{len(labels)} labels; expected (N, 28, 28) and N")
    images = images.to(device).unsqueeze(1).float().div_(127.5).sub_(1)  # uint8 travels, then floats
    return images, labels.to(device)


def amp_dtype(device, mode):
    """The autocast dtype for --amp on this device, or None for plain fp32.

    auto: bf16 on CUDA where the card has it (it needs no loss scaling), else fp16; off on the
    CPU, where bf16 autocast without bf16 hardware measured ~25x slower than fp32, and off on MPS,
    where fp32 is the path that surely works. bf16 and fp16 force that dtype on any device.
    """
    if mode == "auto":
        mode = "off" if device.type != "cuda" else "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--amp bf16: this GPU has no bf16; use --amp fp16 (with loss scaling) or --amp off")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def train_step(G, D, opt_g, opt_d, scaler, real, labels, autocast, ema, ema_decay):
    """One DCGAN step: D learns real (target 1) from fake (target 0), then G learns to make D
    say real. `labels` (B,) are the real images' digits for a conditional GAN, else None; the
    fakes are asked for the same digits, so D sees the same mix of digits in both.
    Returns a (4,) device tensor: loss_d, loss_g, D(x), D(G(z)). Nothing here reads a device
    value (no .item()): that would make the host wait for the device every step.
    `ema`, the moving average of G, then moves toward G's new weights by `ema_decay`."""
    torch.compiler.cudagraph_mark_step_begin()  # --compile on CUDA: a new step, so CUDA graphs may reuse memory
    z = torch.randn(real.size(0), G.nz, device=real.device)
    with autocast:
        fake = G(z, labels)  # (B, 1, 28, 28)
        # Two separate D calls: one batch of both would mix real and fake BatchNorm statistics.
        logit_real, logit_fake = D(real, labels), D(fake.detach(), labels)  # (B,), (B,); no G grads
        loss_d = (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
                  + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))
    # fp16 loss scaling with two optimizers, as in PyTorch's AMP examples: each loss is scaled, each
    # optimizer is stepped through the scaler (which skips it if its own gradients overflowed), and
    # update() runs once, after both steps, so one overflow lowers the scale once and both losses
    # of a step share a scale. The fused Adams take the scaler's inf check on the device: no sync.
    opt_d.zero_grad(set_to_none=True)
    scaler.scale(loss_d).backward()
    scaler.step(opt_d)

    D.requires_grad_(False)  # G's loss needs gradients through D, not for D's own weights
    with autocast:
        logit_gen = D(fake, labels)
        # Non-saturating loss: maximise log D(G(z)) rather than minimise log(1 - D(G(z))),
        # which has almost no gradient early on, when D rejects every fake with confidence.
        loss_g = F.binary_cross_entropy_with_logits(logit_gen, torch.ones_like(logit_gen))
    opt_g.zero_grad(set_to_none=True)
    scaler.scale(loss_g).backward()
    scaler.step(opt_g)
    scaler.update()
    D.requires_grad_(True)
    update_average(ema, G, ema_decay)
    probs = [logit.detach().float().sigmoid().mean() for logit in (logit_real, logit_fake)]
    return torch.stack([loss_d.detach().float(), loss_g.detach().float(), *probs])


@torch.no_grad()
def update_average(average, G, decay):
    """average = decay * average + (1 - decay) * G, over G's weights and BatchNorm statistics.
    (AveragedModel.update_parameters would read its update counter from the device on every call;
    the count this needs is the step, which the loop keeps on the host.)"""
    for mean, new in zip(average.state_dict().values(), G.state_dict().values()):
        if mean.is_floating_point():
            mean.lerp_(new, 1 - decay)
        else:  # BatchNorm's count of batches seen
            mean.copy_(new)


def warmed_up_decay(step, decay):
    """The moving average's decay at `step` (0-based): min(decay, (1 + step) / (10 + step)), so
    a large --ema-decay does not keep the random initial weights: a fixed 0.999 would still hold
    0.999^469 = 63% of them after a first epoch of 469 steps."""
    return min(decay, (1 + step) / (10 + step))


class Meter:
    """Sums step statistics on the device; reading them (a host sync) happens only in read()."""

    def __init__(self, device):
        self.sums = torch.zeros(4, device=device)
        self.reset()

    def reset(self):
        self.sums.zero_()
        self.steps, self.images, self.start = 0, 0, time.perf_counter()

    def add(self, stats, images):
        self.sums += stats
        self.steps += 1
        self.images += images

    def read(self):
        """Mean loss_d, loss_g, D(x), D(G(z)) and images/s since the last read; then reset."""
        means = (self.sums / max(self.steps, 1)).tolist()
        rate = self.images / (time.perf_counter() - self.start)
        self.reset()
        return means, rate


@contextmanager
def stop_requests():
    """Ctrl-C (SIGINT) and SIGTERM (kill, docker stop, cluster schedulers) set a flag that the loop
    checks after each step, so no step is cut in half and the checkpoint gets written. A second
    signal raises KeyboardInterrupt at once: a long step (--compile warming up) can still be
    aborted, and a checkpoint being written is dropped under its temporary name (atomic_path)."""
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


def rng_state(device):
    state = {"cpu": torch.get_rng_state()}
    if device.type != "cpu":
        state[device.type] = getattr(torch, device.type).get_rng_state()  # torch.cuda / torch.mps
    return state


def set_rng_state(state, device):
    torch.set_rng_state(state["cpu"])
    if device.type != "cpu" and device.type in state:  # absent when resuming on another device
        getattr(torch, device.type).set_rng_state(state[device.type])


def epoch_order(n, seed, epoch, device):
    """The epoch's shuffle, derived from (seed, epoch) so a resumed run can rebuild it."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


def open_checkpoint(args):
    """The checkpoint to resume from (None for a fresh run), refusing to overwrite one silently."""
    path = os.path.join(args.out, "checkpoint.pt")
    if not args.resume:
        if os.path.exists(path):
            raise UserError(f"{path} exists: pass --resume to continue that run, or choose another --out")
        return None
    if not os.path.exists(path):
        raise UserError(f"--resume: no checkpoint at {path}")
    checkpoint = load_checkpoint(path)
    checkpoint["train"] = stored_settings(checkpoint, path)
    if args.conditional and not checkpoint["config"]["num_classes"]:
        raise UserError(f"--conditional: {path} is an unconditional run; resume it without "
                        f"--conditional, or start a conditional one in another --out")
    if checkpoint["epoch"] >= args.epochs:
        raise UserError(f"{path} has already trained {checkpoint['epoch']} epochs: "
                        f"pass --epochs above {checkpoint['epoch']} to train on")
    return checkpoint


def stored_settings(checkpoint, path):
    """The run settings a checkpoint holds, each checked as its command-line flag is."""
    settings = checkpoint.get("train")
    for key, check in RUN_SETTINGS.items():
        try:
            check(repr(settings[key]))  # repr: a stored string or bool is refused, not converted
        except (TypeError, KeyError, argparse.ArgumentTypeError):
            raise UserError(f"{path}: its stored {key} is missing or out of range") from None
    return {key: settings[key] for key in RUN_SETTINGS}


def grid_inputs(config, seed, device):
    """The grids' fixed (z, labels): 64 digits in an 8x8 grid, or for a conditional GAN one row
    per digit 0-9 whose 8 columns share one noise each (so a column keeps its handwriting).
    The noise has its own RNG: the same digits every epoch, so the grids show progress."""
    noise = torch.Generator().manual_seed(seed)
    if not config["num_classes"]:
        return torch.randn(64, config["nz"], generator=noise).to(device), None
    z = torch.randn(8, config["nz"], generator=noise).repeat(config["num_classes"], 1)  # (80, nz)
    labels = torch.arange(config["num_classes"]).repeat_interleave(8)  # 0 x8, 1 x8, ... (80,)
    return z.to(device), labels.to(device)


def write_grid(G, grid, path):
    with atomic_path(path) as tmp:
        save_image(generate(G, *grid), tmp, format="png", nrow=8, normalize=True, value_range=(-1, 1))


def write_gif(out, epochs):
    """progress.gif: every epoch's grid in order, the last one held longer."""
    frames = [Image.open(os.path.join(out, f"epoch_{e:03d}.png")).convert("L") for e in range(1, epochs + 1)]
    with atomic_path(os.path.join(out, "progress.gif")) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=[400] * (epochs - 1) + [2000], loop=0)


def read_log(out, step):
    """log.csv's rows up to `step` (rows past it were written after the checkpoint), or none."""
    path = os.path.join(out, "log.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [row for row in csv.reader(f) if len(row) == len(LOG_FIELDS) and row[1].isdigit() and int(row[1]) <= step]


def write_log(out, rows):
    """log.csv, written whole under a temporary name and renamed, so no kill leaves half a row."""
    with atomic_path(os.path.join(out, "log.csv")) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LOG_FIELDS)
        writer.writerows(rows)


def memory_format(device):
    """channels_last (NHWC) on the CPU, where oneDNN's NHWC convolutions run faster (with fused Adam,
    1.10x to 1.33x the step of the default layout: benchmarks/throughput.py); the default layout on GPUs,
    where it is unmeasured."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def build(args, device, checkpoint):
    """Networks, optimizers and loss scaler, fresh or restored from `checkpoint`.
    Returns (config, parts, epoch, step); `parts` is everything whose state_dict() is saved."""
    torch.manual_seed(args.seed)
    config = checkpoint["config"] if checkpoint else dict(
        nz=args.nz, g_width=args.g_width, d_width=args.d_width, channels=1,
        num_classes=10 if args.conditional else 0, kernel_size=args.kernel_size)
    sizes = dict(channels=config["channels"], num_classes=config["num_classes"], kernel_size=config["kernel_size"])
    G = Generator(nz=config["nz"], width=config["g_width"], **sizes)
    D = Discriminator(width=config["d_width"], **sizes)
    G.apply(weights_init)
    D.apply(weights_init)
    G.to(device, memory_format=memory_format(device))
    D.to(device, memory_format=memory_format(device))
    betas = (args.beta1, args.beta2)
    parts = dict(
        generator=G,
        discriminator=D,
        # fused: one kernel for all of a network's parameters instead of a loop over them.
        opt_g=torch.optim.Adam(G.parameters(), lr=args.lr_g, betas=betas, fused=True),
        opt_d=torch.optim.Adam(D.parameters(), lr=args.lr_d, betas=betas, fused=True),
        # Loss scaling only for fp16, whose narrow range underflows small gradients; bf16 needs none.
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype(device, args.amp) == torch.float16),
        # G's exponential moving average, BatchNorm statistics included (update_average).
        ema=copy.deepcopy(G),
    )
    if not checkpoint:
        return config, parts, 0, 0
    try:
        for name, part in parts.items():
            if checkpoint[name]:  # a disabled GradScaler saves {}
                part.load_state_dict(checkpoint[name])
        set_rng_state(checkpoint["rng"], device)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
        # torch reports a state that does not fit in any of these
        raise UserError(f"{args.out}/checkpoint.pt does not fit the run it describes ({type(e).__name__})") from None
    return config, parts, checkpoint["epoch"], checkpoint["step"]


def save_run(args, config, parts, epoch, step):
    """checkpoint.pt: `epoch` epochs complete, `step` steps in all (so a run stopped mid-epoch
    resumes at batch step - epoch * steps_per_epoch of its epoch)."""
    device = next(parts["generator"].parameters()).device
    state = {name: part.state_dict() for name, part in parts.items()}
    state.update(format=CHECKPOINT_FORMAT, config=config, train={k: vars(args)[k] for k in RUN_SETTINGS},
                 epoch=epoch, step=step, rng=rng_state(device))
    save_checkpoint(state, os.path.join(args.out, "checkpoint.pt"))


def step_arguments(parts, device, args):
    """train_step's keyword arguments, but `real`, `labels` and `ema_decay`. Checkpoints keep the
    plain modules, never the torch.compile wrappers, so their keys carry no `_orig_mod.` prefix.
    On CUDA, --compile records CUDA graphs (mode "reduce-overhead"): a step of small kernels is
    bound by their launches, which a graph replays at once; elsewhere it uses the default mode."""
    G, D, dtype = parts["generator"], parts["discriminator"], amp_dtype(device, args.amp)
    mode = "reduce-overhead" if device.type == "cuda" else None
    return dict(
        G=torch.compile(G, mode=mode) if args.compile else G,
        D=torch.compile(D, mode=mode) if args.compile else D,
        opt_g=parts["opt_g"], opt_d=parts["opt_d"], scaler=parts["scaler"], ema=parts["ema"],
        autocast=torch.autocast(device.type, dtype=dtype) if dtype else nullcontext(),
    )


def run_epoch(args, data, loop, epoch, step, stop, log):
    """Train on data = (images, labels or None) from `step` to the end of `epoch`, or until
    a signal sets `stop`. Calls log(row) and prints a line every --log-every steps.
    Returns (step, epoch means, images/s)."""
    images, labels = data
    n, bs = len(images), args.batch_size
    steps_per_epoch = math.ceil(n / bs)
    order = epoch_order(n, args.seed, epoch, images.device)
    interval, whole = Meter(images.device), Meter(images.device)
    for i in range(step - epoch * steps_per_epoch, steps_per_epoch):
        batch = order[i * bs:(i + 1) * bs]
        real = images[batch]  # (B, 1, 28, 28), already on the device
        stats = train_step(real=real, labels=None if labels is None else labels[batch],
                           ema_decay=warmed_up_decay(step, args.ema_decay), **loop)
        interval.add(stats, len(real))
        whole.add(stats, len(real))
        step += 1
        if (i + 1) % args.log_every == 0 or i + 1 == steps_per_epoch:
            means, rate = interval.read()
            log([epoch + 1, step, *(f"{m:.4f}" for m in means), f"{rate:.1f}"])
            left = (args.epochs * steps_per_epoch - step) * bs / rate
            print(f"epoch {epoch + 1}/{args.epochs} step {step}/{args.epochs * steps_per_epoch}  "
                  f"{stat_line(means, rate)}  time left {timedelta(seconds=round(left))}")
        if stop.is_set():
            break
    return (step, *whole.read())


def grid_generator(parts, step):
    """The generator the grids draw from: its moving average once that is ema_ready, else G."""
    return parts["ema"] if ema_ready(step) else parts["generator"]


def finish_epoch(args, config, parts, grid, epoch, step):
    """After `epoch` epochs: that epoch's grid, the GIF of all grids so far, the checkpoint."""
    write_grid(grid_generator(parts, step), grid, os.path.join(args.out, f"epoch_{epoch:03d}.png"))
    write_gif(args.out, epoch)
    save_run(args, config, parts, epoch, step)


def train(args):
    device = pick_device(args.device)
    checkpoint = open_checkpoint(args)
    if checkpoint:
        vars(args).update(checkpoint["train"])
    images, labels = load_mnist(args.data_root, device)
    if args.batch_size > len(images):
        raise UserError(f"--batch-size {args.batch_size} is larger than the training set ({len(images)} images)")
    make_writable_dir(args.out)
    config, parts, epoch, step = build(args, device, checkpoint)
    if checkpoint:
        print(f"resuming {args.out}/checkpoint.pt at epoch {epoch + 1}, step {step} "
              f"(batch size, learning rates, seed and model from the checkpoint)")
    data = (images, labels if config["num_classes"] else None)
    dtype = amp_dtype(device, args.amp)
    precision = "fp32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
    print(f"device {device}, precision {precision}{' with GradScaler' if parts['scaler'].is_enabled() else ''}, "
          f"{len(images)} images, batch size {args.batch_size}"
          f"{', conditional on the digit' if config['num_classes'] else ''}")

    loop = step_arguments(parts, device, args)
    grid = grid_inputs(config, args.seed, device)
    resume_hint = f"continue with: python train.py --resume --out {args.out} --epochs {args.epochs}"
    steps_per_epoch = math.ceil(len(images) / args.batch_size)
    rows = read_log(args.out, step)

    def log(row):
        rows.append(row)
        write_log(args.out, rows)

    with stop_requests() as stop:
        for epoch in range(epoch, args.epochs):
            step, means, rate = run_epoch(args, data, loop, epoch, step, stop, log)
            if step < (epoch + 1) * steps_per_epoch:  # stopped mid-epoch
                save_run(args, config, parts, epoch, step)
                print(f"interrupted at epoch {epoch + 1}, step {step}: saved checkpoint.pt; {resume_hint}")
                return
            finish_epoch(args, config, parts, grid, epoch + 1, step)
            left = (args.epochs - epoch - 1) * steps_per_epoch * args.batch_size / rate
            print(f"epoch {epoch + 1}/{args.epochs} done  {stat_line(means, rate)}  "
                  f"time left {timedelta(seconds=round(left))}  (wrote epoch_{epoch + 1:03d}.png, "
                  f"progress.gif, checkpoint.pt)")
            if stop.is_set():
                print(f"interrupted after epoch {epoch + 1}: saved checkpoint.pt; {resume_hint}")
                return


def stat_line(means, rate):
    loss_d, loss_g, d_x, d_g_z = means
    return (f"loss_d {loss_d:.3f}  loss_g {loss_g:.3f}  D(x) {d_x:.3f}  D(G(z)) {d_g_z:.3f}  "
            f"{rate:.0f} img/s")


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
