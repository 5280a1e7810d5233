"""Tests for the DCGAN kit: pytest on the CPU, no network, no real MNIST.

    pytest -q test_gan.py

The end-to-end tests write small MNIST-format IDX files into a temporary folder, so
torchvision's own MNIST loader runs exactly as it does on the real data.
"""

import copy
import csv
import errno
import fcntl
import json
import math
import os
import resource
import signal
import stat
import struct
import subprocess
import sys
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import make_grid

import evaluate
import gan
import plumbing
import sample
import train
from benchmarks import throughput

HERE = os.path.dirname(os.path.abspath(__file__))
# On the CPU wherever the suite runs: bit-identical training is the CPU's promise (on an H100, cuDNN's
# fp32 kernels made a resumed run differ from a straight one in the fourth decimal).
TINY = ["--nz", "16", "--g-width", "8", "--d-width", "8", "--batch-size", "64", "--log-every", "2", "--device", "cpu"]
N_TRAIN = 160  # 3 steps per epoch at batch 64, the last one partial


def write_idx(path, tensor):
    """An IDX file as MNIST ships it: magic 0x08 (uint8) + ndim, big-endian sizes, raw bytes."""
    header = struct.pack(">I", 0x0800 + tensor.ndim) + struct.pack(f">{tensor.ndim}I", *tensor.shape)
    path.write_bytes(header + bytes(tensor.flatten().tolist()))


def digit_like(n, generator):
    """Images with a bright bar whose position depends on the label: structure a GAN can learn."""
    labels = torch.randint(0, 10, (n,), generator=generator, dtype=torch.uint8)
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for k, label in enumerate(labels.tolist()):
        images[k, 4 + 2 * label:6 + 2 * label, 6:22] = 255
    return images, labels


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", N_TRAIN), ("t10k", 40)):
        images, labels = digit_like(n, g)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    """Every test on the CPU, whatever the machine has, so that --device auto means the same everywhere
    (accelerators have their own module, tests/test_device.py)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def run_train(root, out, *extra):
    train.main(["--data-root", str(root), "--out", str(out), *TINY, *extra])


@pytest.fixture(scope="session")
def trained(mnist_root, tmp_path_factory):
    """One tiny 2-epoch run shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("run")
    run_train(mnist_root, out, "--epochs", "2")
    return out


def states_equal(a, b):
    """Nested state dicts equal to the bit (tensors with torch.equal)."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_training_state(path_a, path_b):
    a = torch.load(path_a, weights_only=True)
    b = torch.load(path_b, weights_only=True)
    for key in ("generator", "discriminator", "opt_g", "opt_d", "scaler", "ema", "rng", "epoch", "step"):
        assert states_equal(a[key], b[key]), f"{key} differs"


# ---------------------------------------------------------------------------- networks


@pytest.mark.parametrize("kernel_size", [4, 5])
def test_shapes_and_ranges(kernel_size):
    torch.manual_seed(0)
    G, D = gan.Generator(nz=16, width=8, kernel_size=kernel_size), gan.Discriminator(width=8, kernel_size=kernel_size)
    images = G(torch.randn(64, 16))
    assert images.shape == (64, 1, 28, 28)
    assert isinstance(G.net[-1], torch.nn.Tanh)  # [-1, 1], the data's range
    logits = D(images)
    assert logits.shape == (64,)
    # Logits, not probabilities: a Sigmoid at the end could never give a negative value.
    assert (logits < 0).any() and (logits > 0).any()


def test_default_sizes_are_dcgan():
    G, D = gan.Generator(), gan.Discriminator()
    assert G.nz == 100
    assert G(torch.randn(2, 100)).shape == (2, 1, 28, 28)
    assert G.modes == 10 and G.embed.weight.shape == (10, 10)  # the choice read from z, embedded beside it
    assert (G.project.in_features, G.project.out_features) == (100 + 10, 256 * 7 * 7)  # then 7x7 maps
    assert [m.out_channels for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)] == [128, 64, 1]
    assert G.net[3].stride == (1, 1)  # a stride-1 stage at 7x7 before the two stride-2 ones
    assert [m.out_channels for m in D.modules() if isinstance(m, torch.nn.Conv2d)] == [32, 64, 1]
    strided = [m for m in [*G.modules(), *D.modules()] if getattr(m, "stride", None) == (2, 2)]
    assert len(strided) == 4 and all(m.kernel_size == (5, 5) for m in strided)
    assert any(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.2 for m in D.modules())
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in D.modules())


def test_weights_init_statistics():
    torch.manual_seed(0)
    G, D = gan.Generator(), gan.Discriminator()
    G.apply(gan.weights_init)
    D.apply(gan.weights_init)
    for m in [*G.modules(), *D.modules()]:
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            if m.weight.numel() > 1000:  # enough values for the statistics to be tight
                assert abs(m.weight.mean().item()) < 0.002
                assert abs(m.weight.std().item() - 0.02) < 0.002
            if m.bias is not None:
                assert torch.all(m.bias == 0)
        elif isinstance(m, torch.nn.BatchNorm2d):
            assert abs(m.weight.mean().item() - 1) < 0.01
            assert 0.01 < m.weight.std().item() < 0.03
            assert torch.all(m.bias == 0)
    # The choice's embedding keeps PyTorch's N(0, 1): with a small one G hardly uses its choice.
    assert 0.8 < G.embed.weight.std().item() < 1.2


def test_discriminator_alone_learns_real_from_fake():
    torch.manual_seed(0)
    D = gan.Discriminator(width=8)
    D.apply(gan.weights_init)
    real, _ = digit_like(32, torch.Generator().manual_seed(1))
    real = real.unsqueeze(1).float() / 127.5 - 1
    fake = torch.rand(32, 1, 28, 28) * 2 - 1
    opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def loss():
        lr, lf = D(real), D(fake)
        return (F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr))
                + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf)))

    first = loss().item()
    for _ in range(30):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < first / 2


def test_train_step_changes_both_networks():
    torch.manual_seed(0)
    G, D = gan.Generator(nz=16, width=8), gan.Discriminator(width=8)
    G.apply(gan.weights_init)
    D.apply(gan.weights_init)
    before = [p.clone() for p in (*G.parameters(), *D.parameters())]
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    real = torch.rand(16, 1, 28, 28) * 2 - 1
    for _ in range(3):
        stats = gan.train_step(G, D, opt_g, opt_d, scaler, real, None, nullcontext(), copy.deepcopy(G), 0.99)
    assert stats.shape == (4,) and torch.isfinite(stats).all()
    assert 0 < stats[2] < 1 and 0 < stats[3] < 1  # D(x), D(G(z)) are probabilities
    after = list((*G.parameters(), *D.parameters()))
    n_g = len(list(G.parameters()))
    assert all(not torch.equal(b, a) for b, a in zip(before[:n_g], after[:n_g])), "G did not change"
    assert all(not torch.equal(b, a) for b, a in zip(before[n_g:], after[n_g:])), "D did not change"
    assert all(p.requires_grad for p in D.parameters()), "D left frozen after the G step"


def test_r1_penalty_is_the_squared_gradient_at_the_real_images_through_the_loss_scaler_too():
    torch.manual_seed(0)
    real, w = torch.randn(3, 1, 28, 28, requires_grad=True), torch.randn(1, 28, 28)
    for enabled in (False, True):  # the scaler's 2^16 multiplies the gradient and divides it back exactly
        scaler = torch.amp.GradScaler("cpu", enabled=enabled)
        penalty = gan.r1_penalty((real * w).flatten(1).sum(1), real, scaler)  # each logit's gradient is w
        assert penalty.item() == pytest.approx(w.square().sum().item(), rel=1e-6)


def test_lazy_r1_weighs_every_16th_step_16_times_and_skips_the_rest():
    assert [gan.lazy_r1(0.1, step) for step in (0, 1, 15, 16, 33, 48)] == [1.6, 0, 0, 1.6, 0, 1.6]
    assert gan.lazy_r1(0.0, 0) == 0  # off: train_step adds nothing


def test_r1_keeps_ds_gradient_at_the_real_images_small():
    def penalty_after_training(r1):
        torch.manual_seed(0)
        G, D = gan.Generator(nz=16, width=8), gan.Discriminator(width=8)
        opt_g, opt_d = (torch.optim.Adam(net.parameters(), lr=2e-3, betas=(0.5, 0.999)) for net in (G, D))
        scaler, real = torch.amp.GradScaler("cpu", enabled=False), torch.rand(32, 1, 28, 28) * 2 - 1
        for _ in range(20):
            gan.train_step(G, D, opt_g, opt_d, scaler, real, None, nullcontext(), copy.deepcopy(G), 0.99, r1=r1)
        real.requires_grad_()
        return gan.r1_penalty(D(real), real, scaler).item()

    assert penalty_after_training(r1=10.0) < 0.5 * penalty_after_training(r1=0.0)


def fake_cuda_card(monkeypatch, capability):
    """torch.cuda answering as a card of this compute capability does: bf16 emulated below 8.0."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation or capability >= (8, 0))


@pytest.mark.parametrize("capability, auto", [((6, 1), "off"), ((7, 0), "fp16"), ((7, 5), "fp16"),
                                              ((8, 0), "off"), ((9, 0), "off")])
def test_amp_on_cuda_follows_the_card(monkeypatch, capability, auto):
    """auto: fp16 with loss scaling on 7.x (a T4, a V100), fp32 where autocast measured slower (an H100);
    bf16 only on cards that have it (8.0 and up), never emulated."""
    fake_cuda_card(monkeypatch, capability)
    cuda = torch.device("cuda")
    mode, why = train.precision(cuda, "auto")
    assert mode == auto and why.startswith("auto")
    if capability >= (8, 0):
        assert train.precision(cuda, "bf16")[0] == "bf16"
    else:
        with pytest.raises(plumbing.UserError, match=f"compute capability {capability[0]}.{capability[1]}.*no bf16"):
            train.precision(cuda, "bf16")
    assert train.precision(cuda, "fp16")[0] == "fp16" and train.precision(cuda, "off")[0] == "off"


def test_amp_on_mps_and_cpu(monkeypatch):
    for device in (torch.device("mps"), torch.device("cpu")):
        assert train.precision(device, "auto")[0] == "off"  # never on by default
        assert train.precision(device, "fp16")[0] == "fp16"
    assert "slower" in train.precision(torch.device("cpu"), "fp16")[1]  # said once at start
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: (13, 6) >= (major, minor))
    with pytest.raises(plumbing.UserError, match="macOS 14"):
        train.precision(torch.device("mps"), "bf16")
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: (14, 0) >= (major, minor))
    assert train.precision(torch.device("mps"), "bf16")[0] == "bf16"


def test_generator_jumps_where_its_noise_changes_its_choice():
    """The choice is which of z's first `modes` entries is largest: a tiny change of z that changes it
    changes the image far more than the same change that does not; with modes=0 nothing jumps."""
    torch.manual_seed(0)
    for modes, jumps in ((4, True), (0, False)):
        G = gan.Generator(nz=16, width=8, modes=modes).apply(gan.weights_init)
        z = torch.randn(1, 16)
        z[0, :4] = torch.tensor([1.0, 1.0 - 1e-4, -1.0, -1.0])
        swapped, nudged = z.clone(), z.clone()
        swapped[0, :2] = torch.tensor([1.0 - 1e-4, 1.0])  # the second entry now the largest
        nudged[0, 2:4] = torch.tensor([-1.0 + 1e-4, -1.0 - 1e-4])  # as far, choice unchanged
        change = [(gan.generate(G, x) - gan.generate(G, z)).abs().max().item() for x in (swapped, nudged)]
        assert (change[0] > 100 * change[1]) == jumps, change


def test_checkpoint_round_trip_gives_identical_samples(tmp_path):
    torch.manual_seed(0)
    G = gan.Generator(nz=16, width=8)
    G.apply(gan.weights_init)
    G(torch.randn(32, 16))  # training-mode pass: moves the BatchNorm running statistics
    path = tmp_path / "c.pt"
    plumbing.save_checkpoint({"format": plumbing.CHECKPOINT_FORMAT, "epoch": 0, "step": 0, "generator": G.state_dict(),
                         "ema": G.state_dict(), "config": dict(nz=16, g_width=8, d_width=8, channels=1, num_classes=0,
                                                               modes=10, kernel_size=5)}, path)
    z = torch.randn(10, 16)
    for ema in (True, False):
        assert torch.equal(gan.generate(G, z), gan.generate(plumbing.generator_from_checkpoint(plumbing.load_checkpoint(path), ema), z))
    assert G.training, "generate() must restore training mode"


def test_checkpoint_of_another_format_is_refused(trained, tmp_path, capsys):
    checkpoint = torch.load(trained / "checkpoint.pt", weights_only=True)
    for name, change in (("none", lambda c: c.pop("format")), ("old", lambda c: c.update(format=plumbing.CHECKPOINT_FORMAT - 1)),
                         ("future", lambda c: c.update(format=plumbing.CHECKPOINT_FORMAT + 1))):
        change(checkpoint)
        plumbing.save_checkpoint(checkpoint, tmp_path / f"{name}.pt")
        err = expect_exit_2(capsys, sample.main, ["--checkpoint", str(tmp_path / f"{name}.pt"), "--out", str(tmp_path / "g.png")])
        assert "another version of the kit" in err
    assert not (tmp_path / "g.png").exists()


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with plumbing.atomic_path(path) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]



def test_conditional_networks_take_labels():
    torch.manual_seed(0)
    G = gan.Generator(nz=16, width=8, num_classes=10)
    D = gan.Discriminator(width=8, num_classes=10)
    G.apply(gan.weights_init)
    D.apply(gan.weights_init)
    z = torch.randn(1, 16).repeat(10, 1)  # one noise, every digit
    images = gan.generate(G, z, torch.arange(10))
    assert images.shape == (10, 1, 28, 28)
    assert all(not torch.equal(images[0], images[k]) for k in range(1, 10)), "the label changed nothing"
    assert G.embed.weight.shape == (10, 10)
    with torch.no_grad():
        D.class_kernels.normal_(0, 0.02)
        logits = D(images[:1].repeat(10, 1, 1, 1), torch.arange(10))
    assert logits.shape == (10,) and logits.unique().numel() == 10  # one image, ten verdicts
    plain = gan.Generator(nz=16, width=8, modes=0)
    assert plain.embed is None and gan.Discriminator(width=8).class_kernels is None
    assert G.modes == 0 and gan.Generator(nz=16, width=8, num_classes=10, modes=4).modes == 0  # told the digit


@pytest.fixture(scope="session")
def bar_gan():
    """A conditional G trained briefly on bars whose row is set by the label."""
    torch.manual_seed(0)
    images, labels = digit_like(640, torch.Generator().manual_seed(2))
    images, labels = images.unsqueeze(1).float() / 127.5 - 1, labels.long()
    G = gan.Generator(nz=16, width=8, num_classes=10)
    D = gan.Discriminator(width=8, num_classes=10)
    G.apply(gan.weights_init)
    D.apply(gan.weights_init)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    ema = copy.deepcopy(G)
    for _ in range(100):
        batch = torch.randint(0, len(images), (64,))
        gan.train_step(G, D, opt_g, opt_d, scaler, images[batch], labels[batch], nullcontext(), ema, 0.99)
    return G


def test_conditional_gan_follows_the_label(bar_gan):
    """Each bar must sit where its label says; a G that ignored the label would be right one time in ten."""
    asked = torch.arange(200) % 10
    rows = gan.generate(bar_gan, torch.randn(200, 16), asked)[:, 0].mean(2)  # (200, 28) row brightness
    bar = torch.stack([rows[:, 4 + 2 * k:6 + 2 * k].mean(1) for k in range(10)], dim=1)  # (200, 10)
    assert (bar.argmax(1) == asked).float().mean() >= 0.8


def test_sample_digit_from_the_command_line_reads_back_as_that_digit(bar_gan, scored_root, tmp_path):
    config = dict(nz=16, g_width=8, d_width=8, channels=1, num_classes=10, modes=0, kernel_size=5)
    plumbing.save_checkpoint(dict(format=plumbing.CHECKPOINT_FORMAT, config=config, epoch=1, step=100,
                             generator=bar_gan.state_dict(), ema=bar_gan.state_dict()), tmp_path / "bars.pt")
    for digit in (3, 7):
        folder = tmp_path / f"digit{digit}"
        sample.main(["--checkpoint", str(tmp_path / "bars.pt"), "--digit", str(digit), "--n", "50", "--out", f"{folder}/"])
        evaluate.main(["--samples", str(folder), "--data-root", str(scored_root), "--json", str(folder / "s.json")])
        histogram = json.loads((folder / "s.json").read_text())["generated"]["histogram"]
        assert histogram[digit] >= 0.8, histogram  # evaluate.py's classifier reads the digit asked for


def flat_weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_ema_lags_the_weights_and_moves_toward_them():
    torch.manual_seed(0)
    G, D = gan.Generator(nz=16, width=8), gan.Discriminator(width=8)
    G.apply(gan.weights_init)
    D.apply(gan.weights_init)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ema = copy.deepcopy(G)
    real = torch.rand(16, 1, 28, 28) * 2 - 1
    for _ in range(5):
        gan.train_step(G, D, opt_g, opt_d, torch.amp.GradScaler("cpu", enabled=False), real, None,
                         nullcontext(), ema, 0.9)
    gap = flat_weights(ema) - flat_weights(G)
    gan.update_average(ema, G, 0.9)  # one more update with G held still: 0.9 of the gap is left
    assert torch.allclose(flat_weights(ema) - flat_weights(G), 0.9 * gap, atol=1e-6)
    averaged_mean = ema.net[1].running_mean  # BatchNorm statistics are averaged too
    assert not torch.equal(averaged_mean, G.net[1].running_mean) and averaged_mean.abs().sum() > 0


def test_update_average_is_the_exponential_moving_average():
    torch.manual_seed(0)
    average, G = gan.Generator(nz=16, width=8), gan.Generator(nz=16, width=8)
    G(torch.randn(8, 16))  # moves G's BatchNorm statistics and batch count away from the average's
    before = copy.deepcopy(average.state_dict())
    gan.update_average(average, G, 0.75)
    for name, new in G.state_dict().items():
        expected = 0.75 * before[name] + 0.25 * new if new.is_floating_point() else new
        assert torch.allclose(average.state_dict()[name], expected, atol=1e-7), name


@pytest.mark.parametrize("warmup", [15, 30])
def test_ema_warm_up_trails_a_moving_weight_by_a_share_of_the_run(warmup):
    """The rule's promise: after n steps the average sits about n / warmup steps behind weights that
    move steadily (weight = step), short run or long, until the decay reaches its cap."""
    for n in (469, 4690):  # 1 and 10 epochs at batch 128
        average = 0.0
        for step in range(n):
            decay = gan.warmed_up_decay(step, 0.9999, warmup)
            average = decay * average + (1 - decay) * step
        assert (n - 1) - average == pytest.approx(n / warmup, abs=1)
    assert gan.warmed_up_decay(10**6, 0.9999, warmup) == 0.9999 and gan.warmed_up_decay(0, 0.9999, warmup) == 1 / warmup


def test_ema_warm_up_forgets_the_init_within_one_epoch():
    """469 updates (one epoch at batch 128): with the warm-up, what is left of the initial
    weights must be under 1%, where a fixed decay of 0.999 would keep 63% of them."""
    weight = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(weight.weight)
    ema = copy.deepcopy(weight)  # the average starts at the initial weight, 0
    torch.nn.init.ones_(weight.weight)  # then the weights jump to 1 and stay there
    for step in range(469):
        gan.update_average(ema, weight, gan.warmed_up_decay(step, 0.9999, 15))
    assert 0 <= 1 - ema.weight.item() < 0.01  # left of the init; a fixed 0.999 would leave 63%


def test_checkpoint_keeps_the_ema_and_sampling_uses_it(trained, tmp_path):
    checkpoint = plumbing.load_checkpoint(trained / "checkpoint.pt")
    assert checkpoint["step"] == 6 and checkpoint["ema"].keys() == checkpoint["generator"].keys()
    raw = plumbing.generator_from_checkpoint(checkpoint, ema=False)
    z = torch.randn(1, 16, generator=torch.Generator().manual_seed(0))  # sample.py's noise for --seed 0
    averaged = plumbing.generator_from_checkpoint(checkpoint)
    assert not torch.equal(gan.generate(averaged, z), gan.generate(raw, z))
    for flag, G in (([], averaged), (["--no-ema"], raw)):  # the average is the default, from the first step
        out = tmp_path / f"one{len(flag)}"
        sample.main(["--checkpoint", str(trained / "checkpoint.pt"), "--n", "1", "--out", f"{out}/", *flag])
        with Image.open(out / "00000.png") as image:
            written = pil_to_tensor(image)[0].int()
        expected = gan.generate(G, z)[0, 0].add(1).mul(127.5).add(0.5).clamp(0, 255).int()
        assert (written - expected).abs().max() <= 1

# ---------------------------------------------------------------------------- train.py end to end


def test_train_writes_grids_gif_log_and_checkpoint(trained):
    for epoch in (1, 2):
        with Image.open(trained / f"epoch_{epoch:03d}.png") as grid:
            assert grid.size == (8 * 30 + 2, 8 * 30 + 2)  # 8x8 digits of 28 px, 2 px padding
    with Image.open(trained / "progress.gif") as gif:
        assert gif.n_frames == 2
    with Image.open(trained / "losses.png") as plot:
        assert plot.size == (640, 480)
        colours = {colour for _, colour in plot.getcolors(maxcolors=100_000)}
    for curve in ("#d62728", "#1f77b4", "#2ca02c", "#9467bd"):  # loss_d, loss_g, D(x), D(G(z)): each drawn
        assert Image.new("RGB", (1, 1), curve).getpixel((0, 0)) in colours, curve
    with open(trained / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(train.LOG_FIELDS)
    assert [int(r["step"]) for r in rows] == [2, 3, 5, 6]  # every 2 steps and at each epoch end
    assert all(0 < float(r["d_x"]) < 1 for r in rows)
    checkpoint = torch.load(trained / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["step"] == 6
    assert checkpoint["config"] == dict(nz=16, g_width=8, d_width=8, channels=1, num_classes=0, modes=10, kernel_size=5)
    assert not [f for f in os.listdir(trained) if ".tmp" in f], "temporary files left behind"


def test_modes_0_trains_the_papers_plain_generator(mnist_root, tmp_path):
    train.main(["--data-root", str(mnist_root), "--out", str(tmp_path / "plain"), "--epochs", "1", "--modes", "0", *TINY])
    checkpoint = plumbing.load_checkpoint(tmp_path / "plain" / "checkpoint.pt")
    G = plumbing.generator_from_checkpoint(checkpoint)
    assert checkpoint["config"]["modes"] == 0 and G.embed is None and G.project.in_features == 16  # z alone


def test_grids_draw_from_the_ema(mnist_root, tmp_path):
    def drawn_from(run, ema):  # whether epoch 2's grid is G's raw weights' (ema False) or their average's
        checkpoint = plumbing.load_checkpoint(run / "checkpoint.pt")
        with Image.open(run / "epoch_002.png") as image:
            written = pil_to_tensor(image)[0].int()  # (242, 242): 8x8 digits of 28 px, 2 px apart
        digits = torch.stack([written[2 + 30 * r:30 + 30 * r, 2 + 30 * c:30 + 30 * c] for r in range(8) for c in range(8)])
        G = plumbing.generator_from_checkpoint(checkpoint, ema=ema)
        expected = gan.generate(G, *train.grid_inputs(checkpoint["config"], 0))[:, 0]
        return (digits - expected.add(1).mul(127.5).add(0.5).clamp(0, 255).int()).abs().max() <= 1

    run_train(mnist_root, tmp_path, "--epochs", "2", "--lr-g", "0.05")  # a fast G, which the average lags
    assert drawn_from(tmp_path, ema=True) and not drawn_from(tmp_path, ema=False)


def test_same_seed_same_weights(mnist_root, tmp_path, trained):
    run_train(mnist_root, tmp_path / "again", "--epochs", "2")
    assert_same_training_state(trained / "checkpoint.pt", tmp_path / "again" / "checkpoint.pt")


def test_resume_at_epoch_boundary_matches_straight_run(mnist_root, tmp_path, trained):
    run_train(mnist_root, tmp_path, "--epochs", "1")
    run_train(mnist_root, tmp_path, "--epochs", "2", "--resume")
    assert_same_training_state(trained / "checkpoint.pt", tmp_path / "checkpoint.pt")
    with Image.open(tmp_path / "progress.gif") as gif:
        assert gif.n_frames == 2


@pytest.fixture(scope="session")
def trained_fp16(mnist_root, tmp_path_factory):
    """The `trained` run again under fp16 autocast with a GradScaler, which the CPU runs too."""
    out = tmp_path_factory.mktemp("run_fp16")
    run_train(mnist_root, out, "--epochs", "2", "--amp", "fp16")
    return out


def ctrl_c_at_step(monkeypatch, n):
    """Make train.py's n-th training step (from 1) send this process Ctrl-C."""
    calls, real_step = [], train.train_step

    def step_then_ctrl_c(**kwargs):
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(**kwargs)

    monkeypatch.setattr(train, "train_step", step_then_ctrl_c)
    return real_step


def stopped_run(mnist_root, out, monkeypatch, capsys, *extra):
    """A 2-epoch run stopped by Ctrl-C at step 4, the first of epoch 2 and between two log rows (every 2
    steps, 3 to an epoch); then resumed to its end."""
    real_step = ctrl_c_at_step(monkeypatch, 4)
    with pytest.raises(SystemExit) as exit_info:
        run_train(mnist_root, out, "--epochs", "2", *extra)
    assert exit_info.value.code == 130  # as a shell reports Ctrl-C: `train.py && sample.py` samples nothing
    assert "--resume" in capsys.readouterr().out
    stopped = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (stopped["epoch"], stopped["step"]) == (1, 4)
    monkeypatch.setattr(train, "train_step", real_step)
    run_train(mnist_root, out, "--epochs", "2", "--resume")


@pytest.mark.parametrize("amp, straight", [("off", "trained"), ("fp16", "trained_fp16")])
def test_interrupt_saves_and_resume_matches_straight_run(amp, straight, mnist_root, tmp_path, request, monkeypatch,
                                                         capsys):
    stopped_run(mnist_root, tmp_path, monkeypatch, capsys, "--amp", amp)
    straight = request.getfixturevalue(straight)
    assert_same_training_state(straight / "checkpoint.pt", tmp_path / "checkpoint.pt")
    # The stop logged the interval it cut (step 4), the resumed run the rest (step 5): no step's losses
    # are lost, and together they average to the straight run's row.
    with open(tmp_path / "log.csv", newline="") as f:
        rows = {int(r["step"]): r for r in csv.DictReader(f)}
    assert list(rows) == [2, 3, 4, 5, 6]
    with open(straight / "log.csv", newline="") as f:
        straight_rows = {int(r["step"]): r for r in csv.DictReader(f)}
    for key in ("loss_d", "loss_g", "d_x", "d_g_z"):
        assert (float(rows[4][key]) + float(rows[5][key])) / 2 == pytest.approx(float(straight_rows[5][key]), abs=1e-4)
        assert rows[6][key] == straight_rows[6][key]


def log_losses(out):
    with open(out / "log.csv", newline="") as f:
        return [(float(r["loss_d"]), float(r["loss_g"])) for r in csv.DictReader(f)]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_on_the_cpu(amp, mnist_root, tmp_path, trained_fp16, capsys):
    out = trained_fp16 if amp == "fp16" else tmp_path
    if amp == "bf16":
        run_train(mnist_root, out, "--epochs", "2", "--amp", "bf16")
        line = capsys.readouterr().out.splitlines()[0]
        assert "precision bf16 (--amp bf16; autocast on a CPU" in line
    losses = log_losses(out)
    assert all(math.isfinite(x) for row in losses for x in row)
    assert len(set(losses)) == len(losses), "the losses did not move"
    scaler = torch.load(out / "checkpoint.pt", weights_only=True)["scaler"]
    if amp == "fp16":  # the scale is saved, so a resumed run scales as the straight one would
        assert math.log2(scaler["scale"]) in range(17)  # 2^16 to start, halved at each overflow
    else:
        assert scaler == {}  # bf16 keeps fp32's range: no loss scaling


def test_gradient_overflow_skips_the_step_and_lowers_the_scale():
    torch.manual_seed(0)
    G, D = gan.Generator(nz=16, width=8), gan.Discriminator(width=8)
    G.apply(gan.weights_init)
    D.apply(gan.weights_init)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    autocast = torch.autocast("cpu", dtype=torch.float16)
    real = torch.rand(16, 1, 28, 28) * 2 - 1
    args = (G, D, opt_g, opt_d, scaler, real, None, autocast, copy.deepcopy(G), 0.99)
    gan.train_step(*args)  # a healthy step
    assert scaler.get_scale() == 1024.0
    d_before, g_before = flat_weights(D), flat_weights(G)
    poison = D.net[0].weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    gan.train_step(*args)
    poison.remove()
    assert torch.equal(flat_weights(D), d_before), "D stepped on an infinite gradient"
    assert torch.isfinite(flat_weights(G)).all() and not torch.equal(flat_weights(G), g_before)  # G's own step ran
    assert scaler.get_scale() == 512.0  # halved once for the step
    gan.train_step(*args)
    assert not torch.equal(flat_weights(D), d_before) and torch.isfinite(flat_weights(D)).all()


def test_train_step_never_reads_the_device(monkeypatch):
    """A read of a device value (.item(), bool(), float(), .tolist(), .cpu()) makes the host wait
    for a GPU; on the CPU the same calls are caught here, for the fp16 path with its scaler too."""
    torch.manual_seed(0)
    G, D = gan.Generator(nz=16, width=8), gan.Discriminator(width=8)
    opt_g = torch.optim.Adam(G.parameters(), fused=True)
    opt_d = torch.optim.Adam(D.parameters(), fused=True)
    real = torch.rand(16, 1, 28, 28) * 2 - 1
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, lambda *a, name=name: pytest.fail(f"train_step called Tensor.{name}"))
    for dtype in (None, torch.float16):
        autocast = torch.autocast("cpu", dtype=dtype) if dtype else nullcontext()
        scaler = torch.amp.GradScaler("cpu", enabled=dtype is not None)
        for step in range(2):
            decay = gan.warmed_up_decay(step, 0.99, 15)
            gan.train_step(G, D, opt_g, opt_d, scaler, real, None, autocast, copy.deepcopy(G), decay, r1=1.6 * step)


# ---------------------------------------------------------------------------- sample.py


def test_sample_grid(trained, tmp_path):
    out = tmp_path / "grid.png"
    sample.main(["--checkpoint", str(trained / "checkpoint.pt"), "--n", "10", "--out", str(out)])
    with Image.open(out) as grid:
        assert grid.size == (4 * 30 + 2, 3 * 30 + 2)  # ceil(sqrt(10)) = 4 columns, 3 rows
    again = tmp_path / "again.png"
    sample.main(["--checkpoint", str(trained / "checkpoint.pt"), "--n", "10", "--out", str(again)])
    other = tmp_path / "other.png"
    sample.main(["--checkpoint", str(trained / "checkpoint.pt"), "--n", "10", "--out", str(other), "--seed", "1"])
    assert out.read_bytes() == again.read_bytes()
    assert out.read_bytes() != other.read_bytes()


def test_sample_folder_in_batches_matches_grid(trained, tmp_path):
    folder = tmp_path / "fakes"
    args = ["--checkpoint", str(trained / "checkpoint.pt"), "--n", "7"]
    sample.main([*args, "--out", f"{folder}/", "--batch-size", "3"])
    names = sorted(os.listdir(folder))
    assert names == [f"{k:05d}.png" for k in range(7)]
    written = []
    for name in names:
        with Image.open(folder / name) as image:
            assert image.size == (28, 28) and image.mode == "L"
            written.append(pil_to_tensor(image)[0].int())  # (28, 28)
    # The same seed gives the same digits whether they came in batches of 3 or all 7 at once.
    G = plumbing.generator_from_checkpoint(plumbing.load_checkpoint(trained / "checkpoint.pt"))
    at_once = gan.generate(G, plumbing.seeded_noise(7, 16, 0))[:, 0].add(1).mul(127.5).add(0.5).clamp(0, 255).int()
    assert (torch.stack(written) - at_once).abs().max() <= 1



@pytest.fixture(scope="session")
def trained_conditional(mnist_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("conditional")
    run_train(mnist_root, out, "--epochs", "1", "--conditional")
    return out


def test_conditional_run_grid_and_checkpoint(trained_conditional):
    with Image.open(trained_conditional / "epoch_001.png") as grid:
        assert grid.size == (8 * 30 + 2, 10 * 30 + 2)  # one row per digit, 8 columns
    checkpoint = torch.load(trained_conditional / "checkpoint.pt", weights_only=True)
    assert checkpoint["config"]["num_classes"] == 10
    assert plumbing.generator_from_checkpoint(checkpoint).num_classes == 10


def test_sample_digit_and_rows_per_digit(trained_conditional, tmp_path):
    ckpt = ["--checkpoint", str(trained_conditional / "checkpoint.pt")]
    sample.main([*ckpt, "--n", "64", "--out", str(tmp_path / "rows.png")])
    with Image.open(tmp_path / "rows.png") as grid:
        assert grid.size == (7 * 30 + 2, 10 * 30 + 2)  # ceil(64 / 10) = 7 of each digit, a row each
    sample.main([*ckpt, "--digit", "7", "--n", "9", "--out", str(tmp_path / "sevens.png")])
    with Image.open(tmp_path / "sevens.png") as grid:
        assert grid.size == (3 * 30 + 2, 3 * 30 + 2)
        written = pil_to_tensor(grid)[0].int()
    G = plumbing.generator_from_checkpoint(plumbing.load_checkpoint(trained_conditional / "checkpoint.pt"))
    sevens = gan.generate(G, plumbing.seeded_noise(9, 16, 0), torch.full((9,), 7))
    expected = make_grid(sevens, nrow=3, normalize=True, value_range=(-1, 1))[0].mul(255).add(0.5).int()
    assert (written - expected).abs().max() <= 1  # the file holds sevens, from --seed 0's noise
    assert not torch.equal(sevens, gan.generate(G, plumbing.seeded_noise(9, 16, 0), torch.full((9,), 1)))


def test_sample_number_layout(trained_conditional, tmp_path):
    out = tmp_path / "number.png"
    sample.main(["--checkpoint", str(trained_conditional / "checkpoint.pt"), "--number", "2026",
                 "--count", "3", "--out", str(out)])
    width = 28 - 2 * sample.NUMBER_CROP
    with Image.open(out) as image:
        assert image.size == (4 * width, 3 * 28)  # digits touching, rows touching: no padding
        pixels = pil_to_tensor(image.convert("L"))[0].int()  # (84, 88)
    # Row r, position i holds the digit text[i] drawn from row r's noise, cropped to the middle.
    G = plumbing.generator_from_checkpoint(plumbing.load_checkpoint(trained_conditional / "checkpoint.pt"))
    z = torch.randn(3, G.nz, generator=torch.Generator().manual_seed(0))
    for r in range(3):
        for i, digit in enumerate("2026"):
            expected = gan.generate(G, z[r:r + 1], torch.tensor([int(digit)]))[0, 0, :, 3:25]
            expected = expected.add(1).mul(127.5).add(0.5).clamp(0, 255).int()
            piece = pixels[28 * r:28 * (r + 1), width * i:width * (i + 1)]
            assert (piece - expected).abs().max() <= 1


def test_evaluate_reports_label_accuracy(scored_root, trained_conditional, tmp_path):
    report = tmp_path / "scores.json"
    evaluate.main(["--checkpoint", str(trained_conditional / "checkpoint.pt"), "--n", "40",
                   "--data-root", str(scored_root), "--json", str(report)])
    scores = json.loads(report.read_text())
    model, _ = evaluate.load_classifier(scored_root / "mnist_classifier.pt", torch.device("cpu"))
    G = plumbing.generator_from_checkpoint(plumbing.load_checkpoint(trained_conditional / "checkpoint.pt"))
    labels = torch.arange(40) % 10  # the digits asked for, in turn
    read = torch.cat([model(images).argmax(1) for images in
                      plumbing.generate_batches(G, plumbing.seeded_noise(40, G.nz, 0), labels, 500)])
    assert scores["generated"]["label_accuracy"] == pytest.approx((read == labels).double().mean().item())
    assert scores["generated"]["label_accuracy_per_digit"] == [
        pytest.approx((read[labels == d] == d).double().mean().item(), abs=1e-4) for d in range(10)]


def test_label_scores_per_digit():
    labels = torch.arange(100) % 10
    read = labels.clone()
    read[labels == 3] = 4  # every 3 read as a 4
    read[:2] = 9  # and one 0 and one 1 as 9s
    scores = evaluate.label_scores(F.one_hot(read, 10).double(), labels)
    assert scores["label_accuracy"] == pytest.approx(0.88)
    assert scores["label_accuracy_per_digit"] == [0.9, 0.9, 1, 0, 1, 1, 1, 1, 1, 1]

# ---------------------------------------------------------------------------- bad input


def expect_exit_2(capsys, main, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture
def bad_files(tmp_path, trained):
    not_checkpoint = tmp_path / "notes.pt"
    not_checkpoint.write_text("hello")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((trained / "checkpoint.pt").read_bytes()[:5000])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    return dict(missing=tmp_path / "nope.pt", not_checkpoint=not_checkpoint, truncated=truncated,
                unwritable=blocker / "sub" / "grid.png", tmp=tmp_path)


@pytest.mark.parametrize("case, argv, needle", [
    ("missing", ["--checkpoint", "{missing}"], "no checkpoint"),
    ("not a checkpoint", ["--checkpoint", "{not_checkpoint}"], "not a readable checkpoint"),
    ("truncated", ["--checkpoint", "{truncated}"], "not a readable checkpoint"),
    ("n zero", ["--n", "0"], "--n"),
    ("n negative", ["--n", "-3"], "--n"),
    ("n text", ["--n", "many"], "--n"),
    ("unknown device", ["--device", "tpu"], "--device"),
    ("absent device", ["--device", "cuda"], "not available"),
    ("unwritable out", ["--out", "{unwritable}"], "cannot write"),
    ("jpeg name", ["--out", "{tmp}/grid.jpg"], "name it NAME.png"),
    ("no extension", ["--out", "{tmp}/fakes"], "a folder takes a trailing /"),
    ("empty out", ["--out", ""], "--out ''"),
])
def test_sample_bad_input(case, argv, needle, bad_files, trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "samples.png"
    out.write_bytes(b"precious")
    argv = [a.format(**bad_files) for a in argv]
    defaults = ["--checkpoint", str(trained / "checkpoint.pt"), "--out", str(out)]
    before = sorted(tmp_path.rglob("*"))
    err = expect_exit_2(capsys, sample.main, defaults + argv)
    assert needle in err
    assert out.read_bytes() == b"precious" and sorted(tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("argv, needle", [
    (["--digit", "10"], "--digit"),
    (["--digit", "-1"], "--digit"),
    (["--digit", "seven"], "--digit"),
    (["--number", "20a6"], "--number"),
    (["--number", "3.14"], "--number"),
    (["--number", "1" * 65], "--number"),
    (["--number", ""], "--number"),
    (["--digit", "3", "--number", "12"], "not allowed with"),
    (["--count", "2"], "--count goes with --number"),
    (["--number", "12", "--out", "{folder}/"], "one PNG"),
])
def test_sample_conditional_bad_input(argv, needle, trained_conditional, tmp_path, capsys):
    out = tmp_path / "samples.png"
    out.write_bytes(b"precious")
    argv = [a.format(folder=tmp_path / "fakes") for a in argv]
    checkpoint = str(trained_conditional / "checkpoint.pt")
    err = expect_exit_2(capsys, sample.main, ["--checkpoint", checkpoint, "--out", str(out), *argv])
    assert needle in err
    assert out.read_bytes() == b"precious" and os.listdir(tmp_path) == ["samples.png"]


@pytest.mark.parametrize("argv", [["--digit", "7"], ["--number", "2026"]])
def test_sample_digit_needs_a_conditional_checkpoint(argv, trained, tmp_path, capsys):
    out = tmp_path / "samples.png"
    err = expect_exit_2(capsys, sample.main, ["--checkpoint", str(trained / "checkpoint.pt"), "--out", str(out), *argv])
    assert "unconditional" in err
    assert not out.exists()


def copy_mnist(mnist_root, tmp_path, truncate=False):
    """A copy of the tiny MNIST folder, its training images cut off mid-image if `truncate`."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (mnist_root / "MNIST" / "raw").iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    if truncate:
        images = raw / "train-images-idx3-ubyte"
        images.write_bytes(images.read_bytes()[:3000])
    return tmp_path


@pytest.mark.parametrize("case, argv, needle", [
    ("epochs zero", ["--epochs", "0"], "--epochs"),
    ("batch size zero", ["--batch-size", "0"], "--batch-size"),
    ("unknown device", ["--device", "tpu"], "--device"),
    ("absent device", ["--device", "cuda"], "not available"),
    ("resume without checkpoint", ["--resume"], "no checkpoint"),
    ("ema decay one", ["--ema-decay", "1"], "--ema-decay"),
    ("ema decay text", ["--ema-decay", "high"], "--ema-decay"),
    ("kernel size 3", ["--kernel-size", "3"], "--kernel-size"),
    ("unwritable out", ["--out", "{blocker}/sub"], "cannot write"),
])
def test_train_bad_input(case, argv, needle, mnist_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "blocker").write_text("x")
    argv = [a.format(blocker=tmp_path / "blocker") for a in argv]
    err = expect_exit_2(capsys, train.main, ["--data-root", str(mnist_root), "--out", str(tmp_path / "o"), *argv])
    assert needle in err
    assert not (tmp_path / "o").exists()


def test_train_without_mnist_offline(tmp_path, capsys, monkeypatch):
    # Mirrors that cannot answer stand in for a machine without internet.
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [(tmp_path / "no-mirror").as_uri() + "/"])
    err = expect_exit_2(capsys, train.main, ["--data-root", str(tmp_path / "d"), "--out", str(tmp_path / "o")])
    assert str(tmp_path / "d" / "MNIST" / "raw") in err and "--data-root" in err
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "d").exists(), "the failed download left folders behind"


def test_train_corrupt_mnist(mnist_root, tmp_path, capsys):
    root = copy_mnist(mnist_root, tmp_path / "d", truncate=True)
    err = expect_exit_2(capsys, train.main, ["--data-root", str(root), "--out", str(tmp_path / "o")])
    assert "corrupt MNIST file" in err
    assert not (tmp_path / "o").exists()


def test_train_refuses_to_overwrite_a_checkpoint(mnist_root, tmp_path, capsys, trained):
    out = tmp_path / "o"
    out.mkdir()
    before = (trained / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(before)
    err = expect_exit_2(capsys, train.main, ["--data-root", str(mnist_root), "--out", str(out), *TINY])
    assert "--resume" in err
    assert (out / "checkpoint.pt").read_bytes() == before
    err = expect_exit_2(capsys, train.main,
                        ["--data-root", str(mnist_root), "--out", str(out), "--resume", "--epochs", "2"])
    assert "--epochs above 2" in err
    err = expect_exit_2(capsys, train.main, ["--data-root", str(mnist_root), "--out", str(out), "--resume",
                                             "--epochs", "3", "--conditional"])
    assert "--conditional True contradicts the run's conditional False" in err
    assert (out / "checkpoint.pt").read_bytes() == before


# Every numeric flag of every script, with values that parse as numbers (or not) but make no sense.
BAD_NUMBERS = {
    "train": [("--lr-g", "fast"), ("--lr-g", "-2e-4"), ("--lr-g", "nan"), ("--lr-d", "inf"), ("--lr-d", "0"),
              ("--beta1", "1"), ("--beta1", "-0.1"), ("--beta2", "1.5"), ("--ema-decay", "nan"),
              ("--epochs", "0"), ("--epochs", "10001"), ("--batch-size", "4097"), ("--batch-size", "1e3"),
              ("--nz", "0"), ("--nz", "1025"), ("--g-width", "513"), ("--d-width", "0"), ("--modes", "-1"),
              ("--modes", "101"), ("--first-x", "0"), ("--first-x", "11"), ("--first-x", "nan"), ("--r1", "-0.1"),
              ("--late-x", "0"), ("--late-x", "11"), ("--late-x", "-inf"), ("--r1", "101"), ("--r1", "inf"),
              ("--ema-warmup", "1"), ("--ema-warmup", "1001"),
              ("--seed", "-1"), ("--seed", str(2**32)), ("--log-every", "0")],
    "sample": [("--n", "100001"), ("--nrow", "0"), ("--batch-size", "0"), ("--batch-size", "10001"),
               ("--seed", "x"), ("--count", "0"), ("--count", "101")],
    "evaluate": [("--n", "100001"), ("--batch-size", "0"), ("--seed", "-5")],
    "throughput": [("--batch-size", "0"), ("--batch-size", "5000"), ("--steps", "0"), ("--warmup", "-1"),
                   ("--repeats", "0"), ("--repeats", "101")],
}


@pytest.mark.parametrize("script, flag, value", [(script, *bad) for script, bads in BAD_NUMBERS.items() for bad in bads])
def test_numbers_that_make_no_sense_are_refused_at_parse_time(script, flag, value, capsys):
    module = throughput if script == "throughput" else globals()[script]
    err = expect_exit_2(capsys, module.parse_args, [f"{flag}={value}"])  # "=": argparse takes -2e-4 for a flag
    assert f"argument {flag}: must be" in err and repr(value) in err


def test_sizes_that_do_not_fit_the_data_are_refused(mnist_root, tmp_path, capsys):
    err = expect_exit_2(capsys, train.main, ["--data-root", str(mnist_root), "--out", str(tmp_path / "o"),
                                             "--batch-size", str(N_TRAIN + 1)])
    assert "larger than the training set (160 images)" in err
    assert not (tmp_path / "o").exists()
    err = expect_exit_2(capsys, train.main, ["--data-root", str(mnist_root), "--out", str(tmp_path / "o"),
                                             "--nz", "8", "--modes", "10"])
    assert "--modes 10 is more than --nz 8" in err
    assert not (tmp_path / "o").exists()
    err = expect_exit_2(capsys, throughput.main, ["--data-root", str(mnist_root), "--batch-size", str(N_TRAIN + 1)])
    assert "(161 and 128) must fit in the 160 training images" in err


def test_a_step_too_large_for_memory_is_refused_before_training(mnist_root, tmp_path, capsys, monkeypatch):
    assert train.step_bytes(dict(g_width=512, d_width=512), 4096) > train.MAX_STEP_BYTES  # the flags' largest
    assert train.step_bytes(dict(g_width=64, d_width=32), 4096) < train.MAX_STEP_BYTES  # the default widths fit
    needed = train.step_bytes(dict(g_width=8, d_width=8), 64)
    monkeypatch.setattr(train, "MAX_STEP_BYTES", needed - 1)  # as if these tiny sizes were too large
    monkeypatch.setattr(train, "train_step", lambda **kwargs: pytest.fail("trained a step"))
    err = expect_exit_2(capsys, train.main, ["--data-root", str(mnist_root), "--out", str(tmp_path / "o"), *TINY])
    assert "per step" in err and "lower --batch-size" in err
    assert not (tmp_path / "o").exists()


def test_a_grid_too_large_for_memory_is_refused_before_sampling(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gan, "generate", lambda *a: pytest.fail("generated before refusing"))
    err = expect_exit_2(capsys, sample.main, ["--checkpoint", str(trained / "checkpoint.pt"), "--n", "10001",
                                              "--out", str(tmp_path / "many.png")])
    assert "at most 10,000 digits" in err and f"--out {tmp_path / 'many'}/" in err
    assert not list(tmp_path.iterdir())


def test_a_folder_is_written_one_batch_at_a_time(trained, tmp_path, monkeypatch):
    sizes = []
    real_generate = plumbing.generate
    monkeypatch.setattr(plumbing, "generate", lambda G, z, labels: sizes.append(len(z)) or real_generate(G, z, labels))
    sample.main(["--checkpoint", str(trained / "checkpoint.pt"), "--n", "25", "--batch-size", "10",
                 "--out", f"{tmp_path}/"])
    assert sizes == [10, 10, 5] and len(list(tmp_path.iterdir())) == 25


# Checkpoints forged or damaged where the format check cannot see it: (entry, value, words of the error).
FORGED = [
    (("config", "g_width"), 10**9, "g_width = 1000000000"),
    (("config", "nz"), "100", "nz = '100'"),
    (("config", "kernel_size"), 3, "kernel_size = 3"),
    (("config", "modes"), 10**6, "modes = 1000000"),
    (("step",), -1, "its step is -1"),
    (("generator",), torch.zeros(3), "generator entry is not a set of weights"),
    (("ema",), {"x": 1}, "ema entry is not a set of weights"),
    (("ema", "project.weight"), torch.tensor([1.0, math.nan]), "ema weights hold NaN or infinity"),
    (("generator", "project.weight"), torch.tensor([math.inf]), "generator weights hold NaN or infinity"),
    (("format",), "5", "(checkpoint format '5', this one reads 5)"),
]
FORGED_FOR_RESUME = [
    (("train", "batch_size"), 10**9, "stored batch_size"),
    (("train", "lr_g"), "0.1", "stored lr_g"),
    (("train", "first_x"), 0.0, "stored first_x"),
    (("train", "late_x"), 20.0, "stored late_x"),
    (("train", "r1"), -1.0, "stored r1"),
    (("train", "ema_warmup"), 1.0, "stored ema_warmup"),
    (("train",), None, "stored batch_size"),
    (("opt_d",), torch.zeros(3), "does not fit the run"),
    (("discriminator",), {"net.0.weight": torch.zeros(1)}, "does not fit the run"),
    (("rng",), {"cpu": torch.zeros(3)}, "does not fit the run"),
    (("opt_g", "state", 0, "exp_avg"), torch.zeros(3), "optimizer state does not fit"),
    (("opt_d", "state", 0, "step"), torch.tensor(99.0), "optimizer state does not fit"),
    (("step",), 40, "step 40 is not within epoch 3"),
    (("discriminator", "net.0.weight"), torch.tensor([math.nan]), "discriminator weights hold NaN"),
    (("discriminator",), torch.zeros(3), "does not fit the run"),
    (("opt_g", "state", 0), {"step": torch.tensor(1.0)}, "does not fit the run"),
    (("train", "amp"), "tf32", "stored amp"),
]


def forge(trained, tmp_path, keys, value):
    checkpoint = torch.load(trained / "checkpoint.pt", weights_only=True)
    entry = checkpoint
    for key in keys[:-1]:
        entry = entry[key]
    entry[keys[-1]] = value
    (tmp_path / "o").mkdir()
    plumbing.save_checkpoint(checkpoint, tmp_path / "o" / "checkpoint.pt")
    return tmp_path / "o" / "checkpoint.pt"


@pytest.mark.parametrize("keys, value, needle", FORGED)
def test_forged_checkpoint_is_refused_by_every_script(keys, value, needle, trained, mnist_root, tmp_path, capsys,
                                                      monkeypatch):
    path = forge(trained, tmp_path, keys, value)
    monkeypatch.setattr(gan.Generator, "__init__", lambda *a, **k: pytest.fail("built a network from a forged file"))
    for main, argv in ((sample.main, ["--checkpoint", str(path), "--out", str(tmp_path / "g.png")]),
                       (evaluate.main, ["--checkpoint", str(path), "--data-root", str(mnist_root)]),
                       (train.main, ["--data-root", str(mnist_root), "--out", str(path.parent), "--resume"])):
        assert needle in expect_exit_2(capsys, main, argv)
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("keys, value, needle", FORGED_FOR_RESUME)
def test_forged_training_state_is_refused_on_resume(keys, value, needle, trained, mnist_root, tmp_path, capsys):
    path = forge(trained, tmp_path, keys, value)
    before = path.read_bytes()
    argv = ["--data-root", str(mnist_root), "--out", str(path.parent), "--resume", "--epochs", "3"]
    assert needle in expect_exit_2(capsys, train.main, argv)
    assert path.read_bytes() == before


def run_train_process(root, out, *extra):
    """train.py as its own process, with a log line every step (so a test can see it is training)."""
    argv = [sys.executable, "-u", os.path.join(HERE, "train.py"), "--data-root", str(root), "--out", str(out),
            *TINY, "--log-every", "1", *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


HOLD_AT_STEP_2 = ("import sys, train\n"
                  "real_step, calls = train.train_step, []\n"
                  "def held_step(**kwargs):\n"
                  "    calls.append(1)\n"
                  "    if len(calls) == 2:\n"
                  "        print('holding', flush=True); sys.stdin.readline()\n"
                  "    return real_step(**kwargs)\n"
                  "train.train_step = held_step\n"
                  "train.main(sys.argv[1:])\n")


def test_sigterm_saves_and_resume_matches_straight_run(mnist_root, tmp_path):
    """kill (SIGTERM) lands while step 2 is held open (waiting on stdin), so the run is stopped mid-epoch
    however fast or slow this machine is; it finishes step 2, saves and exits as a shell reports a kill."""
    run_train(mnist_root, tmp_path / "straight", "--epochs", "8")  # in this process: bit-identical all the same
    argv = ["--data-root", str(mnist_root), "--out", str(tmp_path / "stopped"), *TINY, "--epochs", "8"]
    stopped = subprocess.Popen([sys.executable, "-c", HOLD_AT_STEP_2, *argv], cwd=HERE, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "holding\n" in iter(stopped.stdout.readline, "")
    stopped.send_signal(signal.SIGTERM)  # pending before the line below lets step 2 go on
    out, err = stopped.communicate("\n", timeout=60)
    assert stopped.returncode == 143, err  # 128 + SIGTERM, as a shell reports it
    assert "stopped at step 2 (epoch 1)" in out and "continue with: python train.py --resume" in out
    assert "stopping after this step" in err and "Traceback" not in err
    assert torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)["step"] == 2
    resumed = run_train_process(mnist_root, tmp_path / "stopped", "--epochs", "8", "--resume")
    assert resumed.wait(timeout=120) == 0
    assert_same_training_state(tmp_path / "straight" / "checkpoint.pt", tmp_path / "stopped" / "checkpoint.pt")


def test_second_signal_stops_at_once_and_keeps_the_last_checkpoint(mnist_root, tmp_path, trained, monkeypatch,
                                                                   capsys):
    run_train(mnist_root, tmp_path, "--epochs", "1")
    after_epoch_1 = (tmp_path / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def ctrl_c_twice_while_saving(obj, path):  # the mid-epoch save that the first Ctrl-C asked for
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGINT)  # the second: raises KeyboardInterrupt here
        real_save(obj, path)

    def step_then_ctrl_c(**kwargs):
        monkeypatch.setattr(torch, "save", ctrl_c_twice_while_saving)
        os.kill(os.getpid(), signal.SIGINT)
        return real_step(**kwargs)

    real_step = train.train_step
    monkeypatch.setattr(train, "train_step", step_then_ctrl_c)
    with pytest.raises(SystemExit) as exit_info:
        run_train(mnist_root, tmp_path, "--epochs", "2", "--resume")
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert "stopped at once" in err
    assert (tmp_path / "checkpoint.pt").read_bytes() == after_epoch_1
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_sigkill_while_train_saves_keeps_the_previous_checkpoint(mnist_root, tmp_path):
    """train.py killed (kill -9) halfway through writing epoch 2's checkpoint (made slow here) leaves
    epoch 1's whole under the real name."""
    run_train(mnist_root, tmp_path, "--epochs", "1")
    after_epoch_1 = (tmp_path / "checkpoint.pt").read_bytes()
    script = ("import sys, time, torch, train\n"
              "def slow_save(obj, f):\n"
              "    open(f, 'wb').write(b'half a checkpoint'); print('writing', flush=True); time.sleep(60)\n"
              "torch.save = slow_save\n"
              "train.main(sys.argv[1:])\n")
    argv = ["--data-root", str(mnist_root), "--out", str(tmp_path), *TINY, "--epochs", "2", "--resume"]
    writer = subprocess.Popen([sys.executable, "-c", script, *argv], cwd=HERE, stdout=subprocess.PIPE, text=True)
    assert "writing\n" in iter(writer.stdout.readline, "")  # reads up to the line the save prints
    writer.kill()
    writer.wait(timeout=30)
    assert (tmp_path / "checkpoint.pt").read_bytes() == after_epoch_1
    assert plumbing.load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3


def test_compile_end_to_end(mnist_root, tmp_path):
    # Its own process: torch.compile leaves state behind that would make later runs in this one differ.
    subprocess.run([sys.executable, "train.py", "--data-root", str(mnist_root), "--out", str(tmp_path), *TINY,
                    "--epochs", "1", "--batch-size", "32", "--compile"], cwd=HERE, check=True, capture_output=True)
    checkpoint = plumbing.load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["step"] == 5
    for part in ("generator", "discriminator", "ema"):
        assert not any("_orig_mod" in k for k in checkpoint[part]), part  # the plain modules' keys
    plumbing.generator_from_checkpoint(checkpoint)  # loads into an uncompiled G


def test_compile_with_r1_is_refused_before_anything_is_written(mnist_root, tmp_path, capsys):
    # torch.compile has no double backward: without this check the run would fail at its first step.
    err = expect_exit_2(capsys, train.main, ["--data-root", str(mnist_root), "--out", str(tmp_path / "run"), *TINY,
                                             "--compile"])  # TINY's batch 64 takes R1 0.1
    assert "--compile cannot take R1's gradient of a gradient (this run's R1 is 0.1): drop --compile, or start" in err
    assert not (tmp_path / "run").exists()


def test_conditional_stopped_mid_epoch_resumes_bit_identical(mnist_root, tmp_path, monkeypatch, capsys):
    stopped_run(mnist_root, tmp_path / "stopped", monkeypatch, capsys, "--conditional")
    run_train(mnist_root, tmp_path / "straight", "--epochs", "2", "--conditional")
    assert_same_training_state(tmp_path / "straight" / "checkpoint.pt", tmp_path / "stopped" / "checkpoint.pt")


class Exploit:
    """Unpickling this runs `touch`: what a hostile checkpoint could do without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_by_every_script(mnist_root, tmp_path, capsys):
    marker = tmp_path / "ran"
    (tmp_path / "o").mkdir()
    path = tmp_path / "o" / "checkpoint.pt"
    torch.save({"format": plumbing.CHECKPOINT_FORMAT, "config": Exploit(marker)}, path)
    for main, argv in ((sample.main, ["--checkpoint", str(path), "--out", str(tmp_path / "g.png")]),
                       (evaluate.main, ["--checkpoint", str(path), "--data-root", str(mnist_root)]),
                       (train.main, ["--data-root", str(mnist_root), "--out", str(path.parent), "--resume"])):
        assert "not a readable checkpoint" in expect_exit_2(capsys, main, argv)
    assert not marker.exists(), "the checkpoint ran code"


def test_evaluate_no_ema_scores_the_raw_weights(scored_root, trained, tmp_path):
    for flag in ([], ["--no-ema"]):
        evaluate.main(["--checkpoint", str(trained / "checkpoint.pt"), "--n", "20", "--data-root", str(scored_root),
                       "--json", str(tmp_path / f"{len(flag)}.json"), *flag])
    average, raw = (json.loads((tmp_path / f"{k}.json").read_text())["generated"] for k in (0, 1))
    assert average["frechet"] != raw["frechet"]
    checkpoint = plumbing.load_checkpoint(trained / "checkpoint.pt")
    G = plumbing.generator_from_checkpoint(checkpoint, ema=False)
    model, _ = evaluate.load_classifier(str(scored_root / "mnist_classifier.pt"), torch.device("cpu"))
    test_features, _ = evaluate.features_and_probs(model, [plumbing.load_mnist(str(scored_root), torch.device("cpu"), False)[0]])
    expected = evaluate.score(model, plumbing.generate_batches(G, plumbing.seeded_noise(20, 16, 0), None, 500), test_features)
    assert raw["frechet"] == pytest.approx(expected["frechet"])


def test_benchmark_runs_and_leaves_out_a_row_whose_compile_fails(mnist_root, capsys, monkeypatch):
    """Every row of one short run is there, with a rate; a compiler bug (as torch 2.11's on CUDA in fp32)
    costs its row, not the whole report."""
    def broken_compile(model, **kwargs):  # the row's own networks, which now fail when called
        def forward(*args):
            raise RuntimeError("a compiler bug")
        model.forward = forward
        return model

    monkeypatch.setattr(torch, "compile", broken_compile)
    throughput.main(["--data-root", str(mnist_root), "--batch-size", "16", "--steps", "1", "--warmup", "1",
                     "--repeats", "1", "--compile", "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    for row in ("baseline (DataLoader, .item() per step)", "kit default", "kit --batch-size 128 --modes 0 (the old default)",
                "kit --kernel-size 4 --d-width 64 --modes 0", "kit + R1 every 16 steps (above batch 32)"):
        rate, ratio = next(line for line in lines if line.startswith(row))[len(row):].split()[:2]
        assert math.isfinite(float(rate)) and ratio.endswith("x")  # images/s, and the ratio to the baseline
    assert next(line for line in lines if line.startswith("baseline")).split()[-4] == "1.00x"
    assert [line for line in lines if line.startswith("kit fp32 --compile")] == [
        "kit fp32 --compile: torch.compile failed, row left out (RuntimeError: 'a compiler bug')"]
    assert any(line.startswith("generator EMA update") for line in lines)
    assert any("Self CPU time total" in line for line in lines)


def test_benchmark_times_what_train_py_trains_by_default():
    args = train.parse_args([])
    assert throughput.DEFAULT == dict(nz=args.nz, g_width=args.g_width, d_width=args.d_width, channels=1,
                                      num_classes=0, modes=args.modes, kernel_size=args.kernel_size)
    assert throughput.parse_args([]).batch_size == args.batch_size


@pytest.mark.parametrize("batch, k", [(32, 1), (128, 4), (4096, 4), (8, 0.25)])
def test_learning_rates_betas_and_average_follow_the_batch_size(batch, k):
    args = train.parse_args(["--batch-size", str(batch)])
    assert train.follow_batch(args) == ["lr_g", "lr_d", "ema_decay", "ema_warmup", "beta1", "beta2", "first_x",
                                        "late_x", "r1"]
    rate = 2e-4 * k ** 0.5  # Adam's SDE rule from batch 32: rates x sqrt(k), 1 - beta2 x k
    assert (args.lr_g, args.lr_d, args.ema_decay, args.ema_warmup, args.beta1, args.first_x, args.r1) == (
        pytest.approx(rate), pytest.approx(rate), 0.9999, 15, 0, 2.83, 0.1 if batch > 32 else 0)
    assert args.late_x == pytest.approx(max(k, 1) ** -0.25)  # from epoch 11, rates x k^0.25 from batch 32's
    assert args.beta2 == pytest.approx(1 - 0.01 * k)
    typed = train.parse_args(["--batch-size", str(batch), "--lr-g", "3e-4", "--ema-decay", "0.99", "--beta1", "0.3",
                              "--r1", "2"])
    assert train.follow_batch(typed) == ["lr_d", "ema_warmup", "beta2", "first_x", "late_x"] and typed.r1 == 2
    assert (typed.lr_g, typed.lr_d, typed.ema_decay, typed.beta1) == (3e-4, pytest.approx(rate), 0.99, 0.3)
    conditional = train.parse_args(["--batch-size", str(batch), "--conditional"])  # (0, 0.99) ended worse there
    train.follow_batch(conditional)
    assert (conditional.lr_g, conditional.lr_d, conditional.beta1, conditional.beta2, conditional.first_x,
            conditional.late_x, conditional.r1, conditional.ema_decay, conditional.ema_warmup) == (
        2e-4 * k, 2e-4 * k, 0.5, 0.999, 1, 1, 0, 0.999 ** k, 30)


def test_ema_warmup_changes_the_average_and_not_the_training(mnist_root, tmp_path):
    """--ema-warmup 2: decay (1 + step) / (2 + step), the plain mean of every step's weights. Same weights
    trained, another average."""
    run_train(mnist_root, tmp_path / "a", "--epochs", "1")
    run_train(mnist_root, tmp_path / "b", "--epochs", "1", "--ema-warmup", "2")
    a, b = (torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in "ab")
    assert all(torch.equal(a["generator"][key], b["generator"][key]) for key in a["generator"])
    assert not torch.equal(a["ema"]["project.weight"], b["ema"]["project.weight"])


def rates_trained_at(path):
    checkpoint = torch.load(path, weights_only=True)
    return [checkpoint[opt]["param_groups"][0]["lr"] for opt in ("opt_g", "opt_d")]


def test_start_line_says_the_settings_that_follow_the_batch(mnist_root, tmp_path, capsys):
    run_train(mnist_root, tmp_path, "--epochs", "1")  # TINY trains at batch 64: sqrt(2) times batch 32's rate
    said = ("batch size 64, lr 0.000282843/0.000282843 (x 2.83 in epoch 1, x 0.841 from 11), betas 0/0.98, R1 0.1, "
            "average (1 + step) / (15 + step) up to 0.9999")
    assert said + " (following" in capsys.readouterr().out
    assert rates_trained_at(tmp_path / "checkpoint.pt") == [pytest.approx(2.83 * 2e-4 * 2 ** 0.5)] * 2
    run_train(mnist_root, tmp_path, "--epochs", "2", "--resume")  # the run's own settings, said as its own
    out = capsys.readouterr().out
    assert said + "\n" in out
    assert "following" not in out
    assert rates_trained_at(tmp_path / "checkpoint.pt") == [pytest.approx(2e-4 * 2 ** 0.5)] * 2  # from epoch 2 on
    run_train(mnist_root, tmp_path / "b32", "--epochs", "1", "--batch-size", "32")
    assert ("batch size 32, lr 0.0002/0.0002 (x 2.83 in epoch 1, x 1 from 11), betas 0/0.99, R1 0, average (1 + step) "
            "/ (15 + step) up to 0.9999 (following" in capsys.readouterr().out)
    checkpoint = torch.load(tmp_path / "b32" / "checkpoint.pt", weights_only=True)
    assert [checkpoint[opt]["param_groups"][0]["betas"] for opt in ("opt_g", "opt_d")] == [(0, 0.99)] * 2


def test_rates_fall_by_late_x_from_the_eleventh_epoch(mnist_root, tmp_path):
    run_train(mnist_root, tmp_path, "--epochs", "10")  # batch 64: k = 2
    assert rates_trained_at(tmp_path / "checkpoint.pt") == [pytest.approx(2e-4 * 2 ** 0.5)] * 2
    run_train(mnist_root, tmp_path, "--epochs", "11", "--resume")
    assert rates_trained_at(tmp_path / "checkpoint.pt") == [pytest.approx(2e-4 * 2 ** 0.25)] * 2


def test_a_run_of_an_older_kit_resumes_as_it_trained(trained, mnist_root, tmp_path, capsys):
    checkpoint = torch.load(trained / "checkpoint.pt", weights_only=True)
    del checkpoint["train"]["first_x"], checkpoint["train"]["late_x"], checkpoint["train"]["r1"]
    del checkpoint["train"]["ema_warmup"]
    (tmp_path / "old").mkdir()
    plumbing.save_checkpoint(checkpoint, tmp_path / "old" / "checkpoint.pt")
    run_train(mnist_root, tmp_path / "old", "--epochs", "3", "--resume")
    assert "--ema-warmup 30.0, --first-x 1.0, --late-x 1.0, --r1 0.0" in capsys.readouterr().out
    stored = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)["train"]
    assert (stored["first_x"], stored["late_x"], stored["r1"], stored["ema_warmup"]) == (1.0, 1.0, 0.0, 30.0)


COMMANDS = {  # each script with a bad input, and the one line it answers
    "train.py": (["--resume", "--out", "{tmp}"], "train.py: error: no checkpoint at {tmp}/checkpoint.pt (train one "
                                                   "with: python train.py)"),
    "sample.py": (["--checkpoint", "{tmp}/x.pt"], "sample.py: error: no checkpoint at {tmp}/x.pt (train one with: "
                                                  "python train.py)"),
    "evaluate.py": (["--checkpoint", "{tmp}/x.pt"], "evaluate.py: error: no checkpoint at {tmp}/x.pt (train one with: "
                                                    "python train.py)"),
    "benchmarks/throughput.py": (["--data-root", "{tmp}"], "throughput.py: error: MNIST's train-images-idx3-ubyte, "
                                                           "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                                                           "t10k-labels-idx1-ubyte not in {tmp}/MNIST/raw/"),
}


def test_scripts_run_as_commands(tmp_path, capsys):
    """The real entry points, all at once (each start of torch costs seconds): a bad input exits 2 with
    one line, no traceback; --help exits 0."""
    runs = {script: subprocess.Popen([sys.executable, script, *(f.format(tmp=tmp_path) for f in flags), "--device",
                                      "cpu"], cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for script, (flags, _) in COMMANDS.items()}
    for script, run in runs.items():
        err = run.communicate(timeout=120)[1]
        assert run.returncode == 2 and len(err.splitlines()) == 1, err
        assert err.startswith(COMMANDS[script][1].format(tmp=tmp_path))
    for module in (train, sample, evaluate, throughput):
        with pytest.raises(SystemExit) as exit_info:
            module.parse_args(["--help"])
        assert exit_info.value.code == 0 and "--device" in capsys.readouterr().out


# ---------------------------------------------------------------------------- evaluate.py


def test_frechet_of_a_set_with_itself_is_zero():
    x = torch.randn(400, 8, generator=torch.Generator().manual_seed(0))
    assert evaluate.frechet_distance(x, x) == pytest.approx(0, abs=1e-9)
    assert evaluate.frechet_distance(x, x + 1) == pytest.approx(8, rel=1e-6)  # a pure shift: |mu|^2


def test_frechet_matches_closed_form_for_diagonal_covariances():
    g = torch.Generator().manual_seed(0)
    mu_x, mu_y = torch.randn(6, generator=g), torch.randn(6, generator=g)
    a = torch.rand(6, generator=g).double()
    b = torch.rand(6, generator=g).double()
    b[:2] = 0  # near-singular: two directions with no variance at all
    expected = ((mu_x - mu_y).double().square().sum() + (a.sqrt() - b.sqrt()).square().sum()).item()
    assert evaluate.frechet_from_stats(mu_x, torch.diag(a), mu_y, torch.diag(b)) == pytest.approx(expected, abs=1e-6)
    # The distance does not depend on the basis: rotate both Gaussians by one orthogonal Q.
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g).double())
    rotated = evaluate.frechet_from_stats(q @ mu_x.double(), q @ torch.diag(a) @ q.T,
                                          q @ mu_y.double(), q @ torch.diag(b) @ q.T)
    assert rotated == pytest.approx(expected, abs=1e-6)


def test_frechet_on_singular_covariances():
    x = torch.randn(5, 20, generator=torch.Generator().manual_seed(0))  # 5 samples in 20-d: rank 4
    assert evaluate.frechet_distance(x, x.clone()) == pytest.approx(0, abs=1e-6)
    assert evaluate.frechet_distance(x, x + 0.5) == pytest.approx(20 * 0.25, rel=1e-6)  # a shift: |mu|^2


def test_class_scores_of_collapsed_and_perfect_sets():
    collapsed = F.one_hot(torch.full((100,), 3), 10).double()
    scores = evaluate.class_scores(collapsed)
    assert scores["digits_covered"] == 1
    assert scores["kl_to_uniform"] == pytest.approx(torch.log(torch.tensor(10.0)).item(), rel=1e-6)
    assert scores["is_analog"] == pytest.approx(1)
    perfect = F.one_hot(torch.arange(100) % 10, 10).double()
    scores = evaluate.class_scores(perfect)
    assert scores["digits_covered"] == 10
    assert scores["kl_to_uniform"] == pytest.approx(0, abs=1e-12)
    assert scores["is_analog"] == pytest.approx(10)
    assert scores["confidence"] == pytest.approx(1) and scores["unsure"] == 0
    blends = perfect.clone()
    blends[:30] = 0.5 * perfect[:30] + 0.5 * perfect[:30].roll(1, dims=1)  # 30 of 100 half one digit, half the next
    assert evaluate.class_scores(blends)["unsure"] == pytest.approx(0.3)


def test_classifier_trains_caches_and_reloads(mnist_root, tmp_path, capsys):
    root = copy_mnist(mnist_root, tmp_path)
    cpu = torch.device("cpu")
    train_set, test_set = (plumbing.load_mnist(str(root), cpu, train=split) for split in (True, False))
    model, acc = evaluate.get_classifier(str(root), train_set, test_set, steps=40, batch_size=32)
    assert acc > 0.9  # the bars are easy: a classifier that learned nothing scores about 0.1
    assert "training" in capsys.readouterr().out
    cached, cached_acc = evaluate.get_classifier(str(root), train_set, test_set)
    assert "training" not in capsys.readouterr().out and cached_acc == acc
    x = test_set[0][:8]
    assert torch.equal(model(x), cached(x))
    (root / "mnist_classifier.pt").write_bytes(b"junk")  # unreadable cache: retrained
    evaluate.get_classifier(str(root), train_set, test_set, steps=40, batch_size=32)
    assert "training" in capsys.readouterr().out


@pytest.fixture(scope="session")
def scored_root(mnist_root):
    """The tiny MNIST folder with a cached classifier (40 small steps), as evaluate.py leaves it."""
    cpu = torch.device("cpu")
    train_set, test_set = (plumbing.load_mnist(str(mnist_root), cpu, train=split) for split in (True, False))
    evaluate.get_classifier(str(mnist_root), train_set, test_set, steps=40, batch_size=32)
    return mnist_root


def test_evaluate_checkpoint_and_folder(scored_root, trained, tmp_path):
    mnist_root = scored_root
    report = tmp_path / "scores.json"
    evaluate.main(["--checkpoint", str(trained / "checkpoint.pt"), "--n", "50",
                   "--data-root", str(mnist_root), "--json", str(report)])
    scores = json.loads(report.read_text())
    assert scores["n"] == 50
    for side in ("generated", "real"):
        assert set(evaluate.SCORES) <= scores[side].keys()
    assert scores["real"]["frechet"] < scores["generated"]["frechet"]  # 2 tiny epochs are far from real
    assert scores["real"]["is_analog"] > scores["generated"]["is_analog"]

    folder = tmp_path / "fakes"
    sample.main(["--checkpoint", str(trained / "checkpoint.pt"), "--n", "50", "--out", f"{folder}/"])
    from_folder = tmp_path / "folder.json"
    evaluate.main(["--samples", str(folder), "--data-root", str(mnist_root), "--json", str(from_folder)])
    folder_scores = json.loads(from_folder.read_text())
    assert folder_scores["n"] == 50
    # The same 50 digits through PNG (8-bit rounding) score almost exactly the same.
    assert folder_scores["generated"]["frechet"] == pytest.approx(scores["generated"]["frechet"], rel=0.05)


@pytest.fixture
def bad_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "text"
    text.mkdir()
    Image.new("L", (28, 28)).save(text / "00000.png")
    (text / "notes.txt").write_text("not an image")
    folders = dict(empty=empty, text=text)
    for name, images in dict(one=[Image.new("L", (28, 28))], big=[Image.new("L", (28, 28)), Image.new("L", (64, 64))],
                             sixteen=[Image.new("L", (28, 28)), Image.new("I;16", (28, 28), 40000)],
                             cmyk=[Image.new("L", (28, 28)), Image.new("CMYK", (28, 28))]).items():
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for k, image in enumerate(images):  # PNG keeps 16-bit grayscale; CMYK needs a TIFF
            image.save(folders[name] / f"{k:05d}.{'tif' if image.mode == 'CMYK' else 'png'}")
    return folders


@pytest.mark.parametrize("case, argv, needle", [
    ("missing checkpoint", ["--checkpoint", "{missing}"], "no checkpoint"),
    ("not a checkpoint", ["--checkpoint", "{not_checkpoint}"], "not a readable checkpoint"),
    ("empty folder", ["--samples", "{empty}"], "no images"),
    ("non-image file", ["--samples", "{text}"], "not an image"),
    ("wrong size", ["--samples", "{big}"], "28x28"),
    ("one image", ["--samples", "{one}"], "one image; the scores need at least 2"),
    ("16-bit image", ["--samples", "{sixteen}"], "image mode I;16"),
    ("CMYK image", ["--samples", "{cmyk}"], "image mode CMYK"),
    ("n one", ["--n", "1"], "[2, 100,000]"),
    ("n zero", ["--n", "0"], "--n"),
])
def test_evaluate_bad_input(case, argv, needle, bad_files, bad_folders, mnist_root, tmp_path, capsys):
    report = tmp_path / "scores.json"
    argv = [a.format(**bad_files, **bad_folders) for a in argv]
    err = expect_exit_2(capsys, evaluate.main, ["--data-root", str(mnist_root), "--json", str(report), *argv])
    assert needle in err
    assert not report.exists()


# ---------------------------------------------------------------------------- nothing lost


def test_pictures_that_cannot_be_made_never_cost_the_checkpoint(mnist_root, tmp_path, capsys, monkeypatch):
    """A damaged earlier grid, a log row that is not numbers, and a disk that fills while the pictures
    are written: each a warning, and every epoch's checkpoint saved."""
    run_train(mnist_root, tmp_path, "--epochs", "1")
    (tmp_path / "epoch_001.png").write_bytes(b"\x89PNG\r\n\x1a\n damaged")
    with open(tmp_path / "log.csv", "a") as f:
        f.write("1,2,oops,1,1,1,1\n")
    capsys.readouterr()
    run_train(mnist_root, tmp_path, "--epochs", "2", "--resume")
    assert "epoch_001.png left out of progress.gif" in capsys.readouterr().err
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 6
    with Image.open(tmp_path / "progress.gif") as gif:
        assert gif.n_frames == 1  # epoch 2's grid: the damaged one left out
    with open(tmp_path / "log.csv", newline="") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["2", "3", "5", "6"]  # the bad row dropped

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train, "save_image", full_disk)
    run_train(mnist_root, tmp_path, "--epochs", "3", "--resume")
    assert "No space left on device" in capsys.readouterr().err
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 9


def test_progress_gif_stays_bounded(mnist_root, tmp_path, monkeypatch):
    """--epochs may be 10,000: the GIF holds at most MAX_GIF_FRAMES grids, the first and last among them."""
    monkeypatch.setattr(train, "MAX_GIF_FRAMES", 3)
    run_train(mnist_root, tmp_path, "--epochs", "4")
    with Image.open(tmp_path / "progress.gif") as gif:
        assert gif.n_frames == 3
        gif.seek(2)
        last = gif.convert("L")
    with Image.open(tmp_path / "epoch_004.png") as grid:
        assert torch.equal(pil_to_tensor(last), pil_to_tensor(grid.convert("L")))


def test_a_full_disk_ends_the_run_in_one_line_and_keeps_the_checkpoint(trained, mnist_root, tmp_path):
    """A file-size limit (`ulimit -f`, as a disk that fills) while train.py writes its checkpoint."""
    for name in ("checkpoint.pt", "log.csv"):
        (tmp_path / name).write_bytes((trained / name).read_bytes())
    before = (tmp_path / "checkpoint.pt").read_bytes()
    limit = len(before) // 2  # the log and the lock fit; a checkpoint does not

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = subprocess.run([sys.executable, "train.py", "--data-root", str(mnist_root), "--out", str(tmp_path), *TINY,
                          "--epochs", "3", "--resume"], cwd=HERE, capture_output=True, text=True,
                         preexec_fn=small_files)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(f"train.py: error: cannot write {tmp_path / 'checkpoint.pt'} (")
    assert "any earlier one is kept" in run.stderr
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_a_closed_stdout_does_not_end_the_run(mnist_root, tmp_path):
    """`train.py | head -1`: the pipe closes after the first line; training goes on to its checkpoint."""
    run = run_train_process(mnist_root, tmp_path, "--epochs", "2")
    run.stdout.readline()
    run.stdout.close()
    assert run.wait(timeout=120) == 0, run.stderr.read()
    assert "Traceback" not in run.stderr.read()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 6


def test_what_is_not_a_regular_file_is_never_replaced(trained, mnist_root, tmp_path, capsys):
    """A pipe stands in for /dev/null: renaming a finished file onto it would replace the device."""
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    checkpoint = str(trained / "checkpoint.pt")
    assert "is not a regular file" in expect_exit_2(capsys, sample.main, ["--checkpoint", checkpoint, "--out", str(pipe)])
    argv = ["--checkpoint", checkpoint, "--data-root", str(mnist_root), "--json", str(pipe)]
    assert "is not a regular file" in expect_exit_2(capsys, evaluate.main, argv)
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)


def write_mnist(root, n, labels=None):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images, digits = digit_like(n, torch.Generator().manual_seed(1))
    for split in ("train", "t10k"):
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", digits if labels is None else labels)
    return root


def test_resumes_that_do_not_fit_are_refused(trained, mnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("checkpoint.pt", "log.csv"):
        (out / name).write_bytes((trained / name).read_bytes())
    before = (out / "checkpoint.pt").read_bytes()
    other = write_mnist(tmp_path / "other", 400)  # 7 steps an epoch at batch 64, not 3
    argv = ["--data-root", str(other), "--out", str(out), *TINY, "--epochs", "3", "--resume"]
    assert "step 6 is not within epoch 3 of 7 steps at batch 64: was it trained on other data?" in expect_exit_2(
        capsys, train.main, argv)
    for flag, value, words in (("--batch-size", "32", "--batch-size 32 contradicts the run's batch_size 64"),
                               ("--amp", "fp16", "--amp fp16 contradicts the run's amp off"),
                               ("--g-width", "16", "--g-width 16 contradicts the run's g_width 8"),
                               ("--first-x", "1", "--first-x 1.0 contradicts the run's first_x 2.83"),
                               ("--late-x", "1", "--late-x 1.0 contradicts the run's late_x 0.8408964152537145"),
                               ("--r1", "0", "--r1 0.0 contradicts the run's r1 0.1")):
        argv = ["--data-root", str(mnist_root), "--out", str(out), *TINY, flag, value, "--epochs", "3", "--resume"]
        assert words in expect_exit_2(capsys, train.main, argv)
    assert (out / "checkpoint.pt").read_bytes() == before


def test_resume_says_the_settings_it_takes_from_the_checkpoint(trained, mnist_root, tmp_path, capsys):
    for name in ("checkpoint.pt", "log.csv"):
        (tmp_path / name).write_bytes((trained / name).read_bytes())
    train.main(["--data-root", str(mnist_root), "--out", str(tmp_path), "--device", "cpu", "--epochs", "3", "--resume"])
    first = capsys.readouterr().out.splitlines()[0]
    assert "step 6, with its settings: " in first and "--batch-size 64" in first and "--g-width 8" in first
    assert "--amp off" in first


def test_labels_that_are_not_digits_are_refused(tmp_path, capsys):
    labels = torch.full((80,), 12, dtype=torch.uint8)
    root = write_mnist(tmp_path / "d", 80, labels)
    err = expect_exit_2(capsys, train.main, ["--data-root", str(root), "--out", str(tmp_path / "o"), *TINY])
    assert "12 to 12, not digits 0-9" in err and not (tmp_path / "o").exists()


def test_a_second_run_into_one_folder_is_refused_while_the_first_runs(trained, mnist_root, tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes((trained / "checkpoint.pt").read_bytes())
    argv = ["--data-root", str(mnist_root), "--out", str(tmp_path), *TINY, "--epochs", "3", "--resume"]
    with open(tmp_path / ".lock", "a") as held:  # as a running train.py holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert "another train.py is running into" in expect_exit_2(capsys, train.main, argv)
    train.main(argv)  # released, as a crash releases it: the run goes on
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 9


def test_a_run_that_diverges_stops_and_keeps_the_last_finite_checkpoint(mnist_root, tmp_path, capsys, monkeypatch):
    run_train(mnist_root, tmp_path, "--epochs", "1")
    after_epoch_1 = (tmp_path / "checkpoint.pt").read_bytes()
    real_step = train.train_step

    def diverging_step(**kwargs):
        stats = real_step(**kwargs)
        with torch.no_grad():
            next(kwargs["G"].parameters()).fill_(math.nan)
        return stats * math.nan

    monkeypatch.setattr(train, "train_step", diverging_step)
    err = expect_exit_2(capsys, train.main, ["--data-root", str(mnist_root), "--out", str(tmp_path), *TINY,
                                             "--epochs", "2", "--resume"])
    assert "training diverged at step 5" in err and "checkpoint.pt is the last finite one" in err
    assert (tmp_path / "checkpoint.pt").read_bytes() == after_epoch_1


def test_undefined_scores_are_json_null(scored_root, trained_conditional, tmp_path):
    """5 samples of a conditional run ask for digits 0-4 only: 5-9's rates are undefined, written as null."""
    report = tmp_path / "scores.json"
    evaluate.main(["--checkpoint", str(trained_conditional / "checkpoint.pt"), "--n", "5", "--device", "cpu",
                   "--data-root", str(scored_root), "--json", str(report)])
    scores = json.loads(report.read_text(), parse_constant=lambda name: pytest.fail(f"bare {name} in the JSON"))
    assert scores["generated"]["label_accuracy_per_digit"][5:] == [None] * 5


def test_missing_test_files_are_named(trained, mnist_root, tmp_path, capsys):
    root = tmp_path / "d"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (root / "MNIST" / "raw" / name).write_bytes((mnist_root / "MNIST" / "raw" / name).read_bytes())
    argv = ["--checkpoint", str(trained / "checkpoint.pt"), "--data-root", str(root)]
    err = expect_exit_2(capsys, evaluate.main, argv)
    assert "MNIST's t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte not in" in err


def test_sample_says_what_it_wrote(trained, trained_conditional, tmp_path, capsys):
    sample.main(["--checkpoint", str(trained / "checkpoint.pt"), "--n", "5", "--nrow", "8",
                 "--out", str(tmp_path / "g.png")])
    assert capsys.readouterr().out.strip().endswith("5 digits, 5 per row")  # not the 8 asked: there are 5
    conditional = ["--checkpoint", str(trained_conditional / "checkpoint.pt")]
    sample.main([*conditional, "--n", "12", "--out", str(tmp_path / "c.png")])
    assert "--n 12 rounded up to 20: one row of 2 for each digit" in capsys.readouterr().out
    err = expect_exit_2(capsys, sample.main, [*conditional, "--nrow", "4", "--out", str(tmp_path / "c.png")])
    assert "one row per digit" in err
    sample.main([*conditional, "--n", "30", "--out", f"{tmp_path}/f/"])
    sample.main([*conditional, "--n", "10", "--out", f"{tmp_path}/f/"])  # the same folder, fewer digits
    assert "removed 20 more of an earlier run" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "f")) == [f"{k:05d}.png" for k in range(10)]


@pytest.mark.parametrize("script", ["train.py", "sample.py", "evaluate.py"])
def test_ctrl_c_while_torch_loads_ends_quietly(script, tmp_path):
    """A `torch` that is interrupted as it loads stands in for Ctrl-C in the seconds a real import takes."""
    (tmp_path / "torch.py").write_text("raise KeyboardInterrupt\n")
    run = subprocess.run([sys.executable, os.path.join(HERE, script)], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert (run.returncode, run.stderr) == (130, "")


def test_the_record_stage_driver_runs_and_skips_what_is_done(scored_root, tmp_path):
    """experiments/stages.py, the record's driver: a stage trained and scored, and a rerun skips it."""
    argv = [sys.executable, "experiments/stages.py", "--out", str(tmp_path / "r"), "--stages", "1",
            "--data-root", str(scored_root), "--n", "20", "--", *TINY]
    first = subprocess.run(argv, cwd=HERE, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    rows = [line for line in first.stdout.splitlines() if line.startswith(str(tmp_path / "r"))]
    scores = json.loads((tmp_path / "r" / "eval_1.json").read_text())["generated"]
    assert rows == [f"{tmp_path / 'r'} epoch 1: {scores['frechet']:.1f} / {scores['kl_to_uniform']:.3f} / "
                    f"{scores['is_analog']:.2f}"]
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    again = subprocess.run(argv, cwd=HERE, capture_output=True, text=True)
    assert [line for line in again.stdout.splitlines() if line.startswith(str(tmp_path / "r"))] == rows
    assert "device" not in again.stdout  # nothing trained again


def test_the_search_driver_runs_candidates_side_by_side_into_one_table(scored_root, tmp_path):
    """experiments/search.py, for a GPU: each candidate and seed through stages.py at once, one table;
    a candidate that fails is named with its log, and the others are still scored."""
    run = subprocess.run([sys.executable, "experiments/search.py", "--out", str(tmp_path), "--stages", "1",
                          "--seeds", "0,1", "--jobs", "4", "--data-root", str(scored_root), "--n", "20",
                          f"a={' '.join(TINY)} --lr-d 3e-4", "bad=--lr-g 2"], cwd=HERE, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:2] == ["| run | 1 epochs |", "|---|---|"] and len(lines) == 6
    for line, seed in zip(lines[2:4], (0, 1)):
        scores = json.loads((tmp_path / f"a_s{seed}" / "eval_1.json").read_text())["generated"]
        assert line == (f"| a, seed {seed} | {scores['frechet']:.1f} / {scores['kl_to_uniform']:.3f} / "
                        f"{scores['is_analog']:.2f} |")
        stored = torch.load(tmp_path / f"a_s{seed}" / "checkpoint.pt", weights_only=True)["train"]
        # lr_d as typed, the rest following the batch
        assert stored == dict(batch_size=64, lr_g=2e-4 * math.sqrt(2), lr_d=3e-4, beta1=0.0, beta2=0.98, seed=seed,
                              ema_decay=0.9999, ema_warmup=15.0, first_x=2.83, late_x=2 ** -0.25,
                              r1=0.1, amp="off")
    assert lines[4] == f"| bad, seed 0 (exit 1: {tmp_path / 'bad_s0'}/stages.log) |  |"
    assert "--lr-g: must be a number in (0, 1]" in (tmp_path / "bad_s0" / "stages.log").read_text()


def test_the_choices_probe_draws_the_choice_asked_for_and_reads_its_digits(scored_root, trained, tmp_path):
    """experiments/choices.py: noise whose largest entry is moved to the choice (its values kept), that
    choice's samples written as G draws them, and the digit shares evaluate.py reads from them."""
    from experiments import choices
    z = choices.noise_for(3, 10, 50, 16)
    assert (z[:, :10].argmax(1) == 3).all()
    assert torch.equal(z.sort(1).values, plumbing.seeded_noise(50, 16, 3).sort(1).values)
    G = plumbing.generator_from_checkpoint(plumbing.load_checkpoint(str(trained / "checkpoint.pt")))
    args = choices.parse_args(["--checkpoint", "-", "--out", str(tmp_path), "--data-root", str(scored_root), "--n", "20"])
    histogram = choices.shares(G, 3, args)
    names = sorted(os.listdir(tmp_path / "choice_3"))
    assert names == [f"{k:05d}.png" for k in range(20)]
    with Image.open(tmp_path / "choice_3" / names[7]) as image:
        written = pil_to_tensor(image.convert("L")).float()
    drawn = gan.generate(G, z[:20])[7].add(1).mul(127.5)
    assert (written - drawn).abs().max() <= 1
    scores = json.loads((tmp_path / "choice_3.json").read_text())["generated"]
    assert histogram == scores["histogram"] and len(histogram) == 10 and sum(histogram) == pytest.approx(1)


@pytest.mark.parametrize("run", ["trained_conditional", "missing"])
def test_the_choices_probe_refuses_a_checkpoint_without_choices(run, request, tmp_path, capsys):
    """A conditional checkpoint has no choices, and a missing one nothing: one line on stderr, exit 2."""
    from experiments import choices
    folder = request.getfixturevalue(run) if run != "missing" else tmp_path
    with pytest.raises(SystemExit) as stopped:
        choices.main(["--checkpoint", str(folder / "checkpoint.pt"), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith("choices.py: error: ") and err.count("\n") == 1
    assert not (tmp_path / "c").exists()


def test_eager_steps_never_touch_the_compiler(mnist_root, tmp_path, monkeypatch):
    """cudagraph_mark_step_begin belongs to --compile on CUDA: anywhere else its first call imports
    inductor (seconds) for nothing, and a student reading train_step meets it first."""
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: pytest.fail("called in an eager step"))
    run_train(mnist_root, tmp_path, "--epochs", "1")
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3
