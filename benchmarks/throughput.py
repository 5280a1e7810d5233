"""Training throughput of the kit against the way the common DCGAN examples train.

    python benchmarks/throughput.py --data-root ../shared/data
    python benchmarks/throughput.py --data-root ../shared/data --batch-size 128
    python benchmarks/throughput.py --device cuda --steps 200 --repeats 5

Every row runs full training steps (D step + G step, optimizers included) on real MNIST batches,
all in this one run, and reports the median images/s over --repeats, each as a ratio to the
first row:
  1. baseline: a DataLoader with per-image ToTensor/Normalize, .item() on every loss every
     step, the default memory layout and Adam's loop over parameters, as pytorch/examples'
     dcgan/main.py trains; the kit's default networks;
  2. the kit's default path on this device: gan.train_step on batches indexed out of the data
     on the device, channels_last on the CPU, fused Adam, statistics read once per repeat; then
     with R1 every 16 steps, as train.py adds above batch 32 (--batch-size 128: the card's step);
  3. the default before this one: batch 128, and G without the choice read from its noise
     (--modes 0): what smaller batches and the choice cost;
  4. the kit with pytorch/examples' sizes, 4x4 kernels, D as wide as G, plain noise: what the
     default recipe's 5x5 kernels, narrower D and choice cost against them;
  5. on CUDA, the kit under bf16 and fp16 autocast (fp16 with its loss scaler), and in fp32 with TF32
     off everywhere and on everywhere (PyTorch's default, which train.py keeps: TF32 in cuDNN's
     convolutions, not in matmuls); on MPS, fp16 (not on the CPU: bf16 autocast there without bf16
     hardware is ~25x slower than fp32);
  6. with --compile, each precision again under torch.compile (compile time printed apart).
Beside images/s it gives the seconds that 25 epochs of 60,000 images take at that rate.
It also counts the FLOPs of each row's step (FlopCounterMode) and sets the achieved GFLOP/s
against a large matmul timed on the same device in the same repeats, times the EMA update as a
share of a step, and profiles which ops take the kit step's time.
"""

import copy
import math
import os
import statistics
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the kit lives one folder up
from gan import Discriminator, Generator, lazy_r1, train_step, update_average, weights_init  # noqa: E402
from plumbing import (MAX_BATCH, ArgumentParser, UserError, add_device_flag, bounded, build_networks,  # noqa: E402
                      load_mnist, pick_device)

# train.py's default sizes and batch (a test checks they match), pytorch/examples' sizes (4x4
# kernels, D as wide as G, plain noise), and the default before: batch 128, plain noise.
DEFAULT = dict(nz=100, g_width=64, d_width=32, channels=1, num_classes=0, modes=10, kernel_size=5)
EXAMPLES_SIZES = dict(DEFAULT, d_width=64, kernel_size=4, modes=0)
DEFAULT_BATCH, BATCH_BEFORE = 32, 128


def parse_args(argv=None):
    p = ArgumentParser(prog="throughput.py", description="Images/s of DCGAN training steps.")
    add_device_flag(p)
    p.add_argument("--batch-size", type=bounded(int, 1, MAX_BATCH), default=DEFAULT_BATCH,
                   help=f"images per step (default: {DEFAULT_BATCH}, train.py's)")
    p.add_argument("--steps", type=bounded(int, 1, 10_000), default=30, help="timed steps per repeat (default: 30)")
    p.add_argument("--warmup", type=bounded(int, 1, 10_000), default=5, help="untimed steps first (default: 5)")
    p.add_argument("--repeats", type=bounded(int, 1, 100), default=3, help="repeats; the median counts (default: 3)")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw/ (default: data)")
    p.add_argument("--compile", action="store_true",
                   help="also time each precision under torch.compile (compiling takes minutes on a CPU)")
    return p.parse_args(argv)


def sync(device):
    if device.type != "cpu":
        getattr(torch, device.type).synchronize()


def baseline_runner(args, device, root):
    """pytorch/examples' loop: PIL -> ToTensor -> Normalize per image, .item() every step."""
    torch.manual_seed(0)
    G, D = Generator().to(device), Discriminator().to(device)  # the default layout, as the examples
    G.apply(weights_init)
    D.apply(weights_init)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))  # the per-tensor loop
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    dataset = torchvision.datasets.MNIST(root, train=True, download=True, transform=transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=2)
    batches = iter(loader)

    def step():
        nonlocal batches
        try:
            real = next(batches)[0].to(device)
        except StopIteration:
            batches = iter(loader)
            real = next(batches)[0].to(device)
        D.zero_grad()
        out = D(real)
        loss_real = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        loss_real.backward()
        fake = G(torch.randn(len(real), G.nz, device=device))
        out = D(fake.detach())
        loss_fake = F.binary_cross_entropy_with_logits(out, torch.zeros_like(out))
        loss_fake.backward()
        opt_d.step()
        G.zero_grad()
        out = D(fake)
        loss_g = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        loss_g.backward()
        opt_g.step()
        [x.item() for x in (loss_real + loss_fake, loss_g, out.sigmoid().mean())]  # the per-step sync
        return len(real)

    return lambda steps: sum(step() for _ in range(steps))


def kit_runner(args, device, data, config=DEFAULT, dtype=None, compile=False, batch_size=None, tf32=(True, False),
               r1=0.0):
    """The kit's training step as train.py runs it, on batches indexed out of the on-device data
    (--batch-size, unless `batch_size` is given), with TF32 (in cuDNN, in matmuls) on CUDA as `tf32` says,
    and R1 of gamma `r1` (gan.lazy_r1).
    Returns (run, G, D, loop): run(steps) trains that many steps and returns the images seen."""
    bs = batch_size or args.batch_size
    torch.manual_seed(0)
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    G, D = (net.to(device, memory_format=layout) for net in build_networks(config))
    mode = "reduce-overhead" if device.type == "cuda" else None
    loop = dict(G=torch.compile(G, mode=mode) if compile else G, D=torch.compile(D, mode=mode) if compile else D,
                opt_g=torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True),
                opt_d=torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True),
                scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16), ema=copy.deepcopy(G),
                autocast=torch.autocast(device.type, dtype=dtype) if dtype else nullcontext())

    def run(steps):
        # A new permutation of the data for each epoch the steps pass through, as train.py draws one.
        order = torch.cat([torch.randperm(len(data), device=device) for _ in range(math.ceil(steps * bs / len(data)))])
        sums = torch.zeros(4, device=device)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32  # rows interleave
        for i in range(steps):
            if compile and device.type == "cuda":  # CUDA graphs may reuse the step before's memory
                torch.compiler.cudagraph_mark_step_begin()
            sums += train_step(real=data[order[i * bs:(i + 1) * bs]], labels=None, ema_decay=0.99,
                               r1=lazy_r1(r1, i), **loop)
        sums.tolist()  # the kit reads its statistics once per log interval
        return steps * bs

    return run, G, D, loop


def images_per_s(run, steps, device):
    sync(device)
    start = time.perf_counter()
    images = run(steps)
    sync(device)
    return images / (time.perf_counter() - start)


def matmul_gflops(device, dtype, n):
    """The device's matmul rate: the best of 10, since the ceiling is what the hardware can do
    (it makes the "of fp32 mm" column conservative)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for _ in range(10):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times) / 1e9


def image_flops(loop, data, batch_size):
    """FLOPs of one training step, per image."""
    with FlopCounterMode(display=False) as counter:
        train_step(real=data[:batch_size], labels=None, ema_decay=0.99, **loop)
    return counter.get_total_flops() / batch_size


def host_time_by_op(loop, data, batch_size, steps=10, rows=12):
    """torch.profiler's table of the ops with the most self host time over `steps` kit steps,
    told apart by their input shapes (which name the layer). On the CPU that is where a step's
    time goes; on a GPU it is the cost of launching the work."""
    def run():
        for _ in range(steps):
            train_step(real=data[:batch_size], labels=None, ema_decay=0.99, **loop)

    run()  # unprofiled: oneDNN (and cuDNN) choose and build their kernels on a layer's first calls
    with torch.profiler.profile(record_shapes=True) as prof:
        run()
    return prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=28, max_shapes_column_width=40)


def forward_flops_per_image(G, D, z):
    with FlopCounterMode(display=False) as counter:
        D(G(z))
    return counter.get_total_flops() / len(z)


def examples_64px_networks(nz=100, ngf=64, ndf=64):
    """pytorch/examples' dcgan/main.py networks for one-channel 64x64 images (Sigmoid left out)."""
    def up(cin, cout, stride=2, pad=1):
        return [nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

    def down(cin, cout, norm=True):
        return [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), *([nn.BatchNorm2d(cout)] if norm else []),
                nn.LeakyReLU(0.2, True)]

    G = nn.Sequential(*up(nz, ngf * 8, 1, 0), *up(ngf * 8, ngf * 4), *up(ngf * 4, ngf * 2), *up(ngf * 2, ngf),
                      nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False), nn.Tanh())
    D = nn.Sequential(*down(1, ndf, norm=False), *down(ndf, ndf * 2), *down(ndf * 2, ndf * 4),
                      *down(ndf * 4, ndf * 8), nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False))
    return G, D


def ema_update_seconds(G, ema, device, updates=30):
    """Seconds of one update of G's moving average, which the kit's step includes."""
    sync(device)
    start = time.perf_counter()
    for _ in range(updates):
        update_average(ema, G, 0.99)
    sync(device)
    return (time.perf_counter() - start) / updates


def measure(args, device):
    """The data; kit_runner's (run, G, D, loop) for the default, which report() goes on using;
    each variant's median images/s and the FLOPs of one of its steps per image; the matmul rates."""
    data, _ = load_mnist(args.data_root, device)
    if max(args.batch_size, BATCH_BEFORE) > len(data):
        raise UserError(f"the rows' batch sizes ({args.batch_size} and {BATCH_BEFORE}) must fit in the "
                        f"{len(data)} training images")
    default = kit_runner(args, device, data)
    before = kit_runner(args, device, data, dict(DEFAULT, modes=0), batch_size=BATCH_BEFORE)
    examples_sizes = kit_runner(args, device, data, EXAMPLES_SIZES)
    flops = image_flops(default[3], data, args.batch_size)
    rows = {"baseline (DataLoader, .item() per step)": (baseline_runner(args, device, args.data_root), flops),
            "kit default": (default[0], flops),
            "kit + R1 every 16 steps (above batch 32)": (kit_runner(args, device, data, r1=0.1)[0], flops),
            f"kit --batch-size {BATCH_BEFORE} --modes 0 (the old default)": (
                before[0], image_flops(before[3], data, BATCH_BEFORE)),
            "kit --kernel-size 4 --d-width 64 --modes 0": (examples_sizes[0],
                                                           image_flops(examples_sizes[3], data, args.batch_size))}
    precisions = {"cuda": [torch.bfloat16, torch.float16], "mps": [torch.float16]}.get(device.type, [])
    for dtype in precisions:
        rows[f"kit {dtype} autocast"] = (kit_runner(args, device, data, dtype=dtype)[0], flops)
    for tf32 in [(False, False), (True, True)] if device.type == "cuda" else []:
        rows[f"kit fp32, TF32 {'on' if tf32[0] else 'off'} everywhere"] = (kit_runner(args, device, data, tf32=tf32)[0],
                                                                         flops)
    for dtype in [None, *precisions] if args.compile else []:
        compile_start = time.perf_counter()
        compiled = kit_runner(args, device, data, dtype=dtype, compile=True)[0]
        name = f"kit {'fp32' if dtype is None else f'{dtype} autocast'} --compile"
        try:
            compiled(args.warmup)  # the first calls compile
        except Exception as e:  # a compiler bug fails its row, not the run (PyTorch #171622 on CUDA fp32)
            print(f"{name}: torch.compile failed, row left out ({type(e).__name__}: {str(e)[:200]!r})")
            continue
        print(f"{name}: compile + warmup {time.perf_counter() - compile_start:.1f} s")
        rows[name] = (compiled, flops)
    for run, _ in rows.values():
        run(args.warmup)
    rates = {name: [] for name in rows}
    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if device.type == "cuda" else {})}
    matmul = {name: [] for name in dtypes}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits every row alike
        for name, (run, _) in rows.items():
            rates[name].append(images_per_s(run, args.steps, device))
        for name, gflops in matmul.items():  # the ceiling too: this machine's load wanders
            gflops.append(matmul_gflops(device, dtypes[name], 2048 if device.type == "cpu" else 8192))
    return (data, default, {name: (statistics.median(rates[name]), flops) for name, (_, flops) in rows.items()},
            {name: statistics.median(g) for name, g in matmul.items()})


def report(args, device, data, default, rows, mm):
    _, G, D, loop = default
    threads = f"{device.type}, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name() if device.type == "cuda" else threads
    print(f"\ndevice: {name}; torch {torch.__version__}; batch {args.batch_size}; "
          f"median of {args.repeats} x {args.steps} steps")
    flops, examples_sizes_flops = rows["kit default"][1], rows["kit --kernel-size 4 --d-width 64 --modes 0"][1]
    print(f"one training step: {flops / 1e6:.0f} MFLOP per image; with pytorch/examples' sizes: "
          f"{examples_sizes_flops / 1e6:.0f} MFLOP")
    kit_fwd = forward_flops_per_image(G, D, torch.randn(2, G.nz, device=device))
    G64, D64 = examples_64px_networks()
    examples_fwd = forward_flops_per_image(G64, D64, torch.randn(2, 100, 1, 1))
    print(f"forward G + D per image: kit (28 px) {kit_fwd / 1e6:.0f} MFLOP, pytorch/examples (64 px) "
          f"{examples_fwd / 1e6:.0f} MFLOP: {examples_fwd / kit_fwd:.1f}x the work")
    print("matmul (best of 10, median over the repeats): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in mm.items()))
    print(f"\n{'variant':48} {'images/s':>9} {'ratio':>7} {'25 epochs':>10} {'GFLOP/s':>8} {'of fp32 mm':>10}")
    first = next(iter(rows.values()))[0]
    for variant, (rate, flops) in rows.items():
        achieved = rate * flops / 1e9
        print(f"{variant:48} {rate:9.0f} {rate / first:6.2f}x {25 * 60000 / rate:9.0f}s "
              f"{achieved:8.0f} {achieved / mm['fp32']:9.0%}")
    ema, step_seconds = ema_update_seconds(G, loop["ema"], device), args.batch_size / rows["kit default"][0]
    print(f"\ngenerator EMA update (in every kit step): {ema * 1e3:.2f} ms = {ema / step_seconds:.2%} of a step")
    print("\nwhere the kit's step spends its host time (top ops, by input shapes):")
    print(host_time_by_op(loop, data, args.batch_size, steps=min(10, args.steps)))


def main(argv=None):
    args = parse_args(argv)
    try:
        device = pick_device(args.device)
        report(args, device, *measure(args, device))
    except UserError as e:
        print(f"throughput.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
