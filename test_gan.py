"""Tests for the DCGAN kit: pytest on the CPU, no network, no real MNIST.

    pytest -q test_gan.py

The end-to-end tests write small MNIST-format IDX files into a temporary folder, so
torchvision's own MNIST loader runs exactly as it does on the real data.
"""

import csv
import json
import os
import signal
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

import evaluate
import gan
import sample
import train

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = ["--nz", "16", "--g-width", "8", "--d-width", "8", "--batch-size", "64", "--log-every", "2"]
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
    for key in ("generator", "discriminator", "opt_g", "opt_d", "rng", "epoch", "step"):
        assert states_equal(a[key], b[key]), f"{key} differs"


# ---------------------------------------------------------------------------- networks


def test_shapes_and_ranges():
    torch.manual_seed(0)
    G, D = gan.Generator(nz=16, width=8), gan.Discriminator(width=8)
    images = G(torch.randn(64, 16))
    assert images.shape == (64, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    logits = D(images)
    assert logits.shape == (64,)
    # Logits, not probabilities: a Sigmoid at the end could never give a negative value.
    assert (logits < 0).any() and (logits > 0).any()


def test_default_sizes_are_dcgan():
    G, D = gan.Generator(), gan.Discriminator()
    assert G.nz == 100
    assert G(torch.randn(2, 100)).shape == (2, 1, 28, 28)
    assert [m.out_channels for m in D.modules() if isinstance(m, torch.nn.Conv2d)] == [64, 128, 1]
    assert any(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.2 for m in D.modules())
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in D.modules())


def test_weights_init_statistics():
    torch.manual_seed(0)
    G, D = gan.Generator(), gan.Discriminator()
    G.apply(gan.weights_init)
    D.apply(gan.weights_init)
    for m in [*G.modules(), *D.modules()]:
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            if m.weight.numel() > 1000:  # enough values for the statistics to be tight
                assert abs(m.weight.mean().item()) < 0.002
                assert abs(m.weight.std().item() - 0.02) < 0.002
            if m.bias is not None:
                assert torch.all(m.bias == 0)
        elif isinstance(m, torch.nn.BatchNorm2d):
            assert abs(m.weight.mean().item() - 1) < 0.01
            assert 0.01 < m.weight.std().item() < 0.03
            assert torch.all(m.bias == 0)


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
        stats = train.train_step(G, D, opt_g, opt_d, scaler, real, nullcontext())
    assert stats.shape == (4,) and torch.isfinite(stats).all()
    assert 0 < stats[2] < 1 and 0 < stats[3] < 1  # D(x), D(G(z)) are probabilities
    after = list((*G.parameters(), *D.parameters()))
    n_g = len(list(G.parameters()))
    assert all(not torch.equal(b, a) for b, a in zip(before[:n_g], after[:n_g])), "G did not change"
    assert all(not torch.equal(b, a) for b, a in zip(before[n_g:], after[n_g:])), "D did not change"
    assert all(p.requires_grad for p in D.parameters()), "D left frozen after the G step"


def test_amp_policy():
    assert train.amp_dtype(torch.device("cpu"), "auto") is None  # never on by default on the CPU
    assert train.amp_dtype(torch.device("cpu"), "on") == torch.bfloat16
    assert train.amp_dtype(torch.device("mps"), "auto") is None
    assert train.amp_dtype(torch.device("mps"), "on") == torch.float16
    assert train.amp_dtype(torch.device("cuda"), "off") is None


def test_checkpoint_round_trip_gives_identical_samples(tmp_path):
    torch.manual_seed(0)
    G = gan.Generator(nz=16, width=8)
    G.apply(gan.weights_init)
    G(torch.randn(32, 16))  # training-mode pass: moves the BatchNorm running statistics
    path = tmp_path / "c.pt"
    gan.save_checkpoint({"config": dict(nz=16, g_width=8, d_width=8, channels=1),
                         "generator": G.state_dict()}, path)
    G2 = gan.generator_from_checkpoint(gan.load_checkpoint(path))
    z = torch.randn(10, 16)
    assert torch.equal(gan.generate(G, z), gan.generate(G2, z))
    assert G.training, "generate() must restore training mode"


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with gan.atomic_path(path) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


# ---------------------------------------------------------------------------- train.py end to end


def test_train_writes_grids_gif_log_and_checkpoint(trained):
    for epoch in (1, 2):
        with Image.open(trained / f"epoch_{epoch:03d}.png") as grid:
            assert grid.size == (8 * 30 + 2, 8 * 30 + 2)  # 8x8 digits of 28 px, 2 px padding
    with Image.open(trained / "progress.gif") as gif:
        assert gif.n_frames == 2
    with open(trained / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(train.LOG_FIELDS)
    assert [int(r["step"]) for r in rows] == [2, 3, 5, 6]  # every 2 steps and at each epoch end
    assert all(0 < float(r["d_x"]) < 1 and float(r["images_per_s"]) > 0 for r in rows)
    checkpoint = torch.load(trained / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["step"] == 6
    assert checkpoint["config"] == dict(nz=16, g_width=8, d_width=8, channels=1)
    assert not any("_orig_mod" in k for k in checkpoint["generator"])
    assert not [f for f in os.listdir(trained) if ".tmp" in f], "temporary files left behind"


def test_same_seed_same_weights(mnist_root, tmp_path, trained):
    run_train(mnist_root, tmp_path / "again", "--epochs", "2")
    assert_same_training_state(trained / "checkpoint.pt", tmp_path / "again" / "checkpoint.pt")


def test_resume_at_epoch_boundary_matches_straight_run(mnist_root, tmp_path, trained):
    run_train(mnist_root, tmp_path, "--epochs", "1")
    run_train(mnist_root, tmp_path, "--epochs", "2", "--resume")
    assert_same_training_state(trained / "checkpoint.pt", tmp_path / "checkpoint.pt")
    with Image.open(tmp_path / "progress.gif") as gif:
        assert gif.n_frames == 2


def test_interrupt_saves_and_resume_matches_straight_run(mnist_root, tmp_path, trained, monkeypatch, capsys):
    calls = []

    def step_then_ctrl_c(**kwargs):
        calls.append(1)
        if len(calls) == 5:  # second step of epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(**kwargs)

    real_step = train.train_step
    monkeypatch.setattr(train, "train_step", step_then_ctrl_c)
    run_train(mnist_root, tmp_path, "--epochs", "2")  # returns normally: exit code 0
    assert "--resume" in capsys.readouterr().out
    stopped = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (stopped["epoch"], stopped["step"]) == (1, 5)

    monkeypatch.setattr(train, "train_step", real_step)
    run_train(mnist_root, tmp_path, "--epochs", "2", "--resume")
    assert_same_training_state(trained / "checkpoint.pt", tmp_path / "checkpoint.pt")
    with open(tmp_path / "log.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [2, 3, 5, 6]


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
    with Image.open(folder / "00000.png") as image:
        assert image.size == (28, 28) and image.mode == "L"
        first = pil_to_tensor(image)[0]  # (28, 28) uint8
    # The same seed gives the same first digit whether it came in a batch of 3 or of 7.
    G = gan.generator_from_checkpoint(gan.load_checkpoint(trained / "checkpoint.pt"))
    batch = next(sample.sample_batches(G, 7, 7, seed=0))
    expected = batch[0, 0].add(1).mul(127.5).add(0.5).clamp(0, 255).to(torch.uint8)
    assert (first.int() - expected.int()).abs().max() <= 1


# ---------------------------------------------------------------------------- bad input


def expect_exit_2(capsys, main, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
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
                unwritable=blocker / "sub" / "grid.png")


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
])
def test_sample_bad_input(case, argv, needle, bad_files, trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "samples.png"
    out.write_bytes(b"precious")
    argv = [a.format(**bad_files) for a in argv]
    defaults = ["--checkpoint", str(trained / "checkpoint.pt"), "--out", str(out)]
    err = expect_exit_2(capsys, sample.main, defaults + argv)
    assert needle in err
    assert out.read_bytes() == b"precious"


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


def test_scripts_run_as_commands(tmp_path):
    """The real entry points: --help exits 0; a bad input exits 2 without a traceback."""
    for script in ("train.py", "sample.py"):
        ok = subprocess.run([sys.executable, script, "--help"], cwd=HERE, capture_output=True, text=True)
        assert ok.returncode == 0 and "--device" in ok.stdout
    bad = subprocess.run([sys.executable, "sample.py", "--checkpoint", str(tmp_path / "x.pt")],
                         cwd=HERE, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"sample.py: error: no checkpoint at {tmp_path / 'x.pt'} (train one with: python train.py)"


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


def test_frechet_stays_real_and_non_negative_on_singular_covariances():
    x = torch.randn(5, 20, generator=torch.Generator().manual_seed(0))  # 5 samples in 20-d: rank 4
    distance = evaluate.frechet_distance(x, x.clone())
    assert isinstance(distance, float) and 0 <= distance < 1e-6


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
    assert scores["confidence"] == pytest.approx(1)


def test_classifier_trains_caches_and_reloads(mnist_root, tmp_path, capsys):
    root = copy_mnist(mnist_root, tmp_path)
    cpu = torch.device("cpu")
    train_set, test_set = (train.load_mnist(str(root), cpu, train=split) for split in (True, False))
    model, acc = evaluate.get_classifier(str(root), train_set, test_set, steps=100)
    assert acc > 0.9  # the bars are easy: a classifier that learned nothing scores about 0.1
    assert "training" in capsys.readouterr().out
    cached, cached_acc = evaluate.get_classifier(str(root), train_set, test_set)
    assert "training" not in capsys.readouterr().out and cached_acc == acc
    x = test_set[0][:8]
    assert torch.equal(model(x), cached(x))
    (root / "mnist_classifier.pt").write_bytes(b"junk")  # unreadable cache: retrained
    evaluate.get_classifier(str(root), train_set, test_set, steps=100)
    assert "training" in capsys.readouterr().out


@pytest.fixture(scope="session")
def scored_root(mnist_root):
    """The tiny MNIST folder with a cached classifier (100 steps), as evaluate.py leaves it."""
    cpu = torch.device("cpu")
    train_set, test_set = (train.load_mnist(str(mnist_root), cpu, train=split) for split in (True, False))
    evaluate.get_classifier(str(mnist_root), train_set, test_set, steps=100)
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
        assert scores[side]["frechet"] >= 0 and 1 <= scores[side]["is_analog"] <= 10
    assert scores["real"]["frechet"] < scores["generated"]["frechet"]  # 2 tiny epochs are far from real

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
    big = tmp_path / "big"
    big.mkdir()
    Image.new("L", (64, 64)).save(big / "00000.png")
    return dict(empty=empty, text=text, big=big)


@pytest.mark.parametrize("case, argv, needle", [
    ("missing checkpoint", ["--checkpoint", "{missing}"], "no checkpoint"),
    ("not a checkpoint", ["--checkpoint", "{not_checkpoint}"], "not a readable checkpoint"),
    ("empty folder", ["--samples", "{empty}"], "no images"),
    ("non-image file", ["--samples", "{text}"], "not an image"),
    ("wrong size", ["--samples", "{big}"], "28x28"),
    ("n one", ["--n", "1"], "at least 2"),
    ("n zero", ["--n", "0"], "--n"),
])
def test_evaluate_bad_input(case, argv, needle, bad_files, bad_folders, mnist_root, tmp_path, capsys):
    report = tmp_path / "scores.json"
    argv = [a.format(**bad_files, **bad_folders) for a in argv]
    err = expect_exit_2(capsys, evaluate.main, ["--data-root", str(mnist_root), "--json", str(report), *argv])
    assert needle in err
    assert not report.exists()
