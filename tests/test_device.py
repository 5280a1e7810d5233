"""The kit on this machine's accelerator (CUDA, else Apple's MPS), each result set against the CPU's.

    pytest -q -rs tests/test_device.py              # or: python benchmarks/device_check.py
    KIT_TEST_DEVICE=cpu pytest -q tests/test_device.py  # the module's own logic, on a machine without one

Skipped, saying why, where there is none (as in CI). test_gan.py pins itself to the CPU; this module
is where the GPU paths run: two tiny epochs in every precision the device has, a stop and resume,
sample.py, evaluate.py and --conditional. Compared within tolerances, not bits: cuDNN's and Metal's
kernels add in other orders than the CPU's.
"""

import csv
import json
import os

import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

import evaluate
import gan
import plumbing
import sample
import test_gan
import train

DEVICE = os.environ.get("KIT_TEST_DEVICE") or (
    "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else None)
pytestmark = pytest.mark.skipif(DEVICE is None, reason="no CUDA or MPS device here: these tests need one")


def precisions():
    """The --amp modes this device runs: fp32, fp16, and bf16 where its hardware has it."""
    if DEVICE == "cuda":
        return ["off", "fp16", *(["bf16"] if torch.cuda.is_bf16_supported(including_emulation=False) else [])]
    return ["off", "fp16", *(["bf16"] if DEVICE == "mps" and torch.backends.mps.is_macos_or_newer(14, 0) else [])]


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    """Tiny MNIST files, and evaluate.py's classifier cached beside them (40 small steps: enough for the bars)."""
    root = test_gan.write_mnist(tmp_path_factory.mktemp("data"), test_gan.N_TRAIN)
    splits = (plumbing.load_mnist(str(root), torch.device("cpu"), train=split) for split in (True, False))
    evaluate.get_classifier(str(root), *splits, steps=40, batch_size=32)
    return root


def run(root, out, device, *extra):
    tiny = test_gan.TINY[:-2]  # without its --device cpu
    train.main(["--data-root", str(root), "--out", str(out), *tiny, "--device", device, *extra])


def losses(out):
    with open(out / "log.csv", newline="") as f:
        return torch.tensor([[float(r["loss_d"]), float(r["loss_g"])] for r in csv.DictReader(f)])


@pytest.fixture(scope="module")
def on_cpu(mnist_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("cpu")
    run(mnist_root, out, "cpu", "--epochs", "2")
    return out


@pytest.mark.parametrize("amp", precisions())
def test_two_epochs_in_every_precision_follow_the_cpu(amp, mnist_root, on_cpu, tmp_path):
    run(mnist_root, tmp_path, DEVICE, "--epochs", "2", "--amp", amp)
    checkpoint = plumbing.load_checkpoint(tmp_path / "checkpoint.pt")  # refuses NaN weights
    assert checkpoint["step"] == 6 and checkpoint["train"]["amp"] == amp
    # Half precision drifts from fp32 within a few steps (fp16 on the CPU by 0.1 in 6): close, not equal.
    assert torch.allclose(losses(tmp_path), losses(on_cpu), atol=0.02 if amp == "off" else 0.25)


def test_stop_and_resume_on_the_device(mnist_root, tmp_path, monkeypatch):
    real_step = test_gan.ctrl_c_at_step(monkeypatch, 4)  # between two log rows, in epoch 2
    with pytest.raises(SystemExit) as exit_info:
        run(mnist_root, tmp_path / "stopped", DEVICE, "--epochs", "2")
    assert exit_info.value.code == 130
    monkeypatch.setattr(train, "train_step", real_step)
    run(mnist_root, tmp_path / "stopped", DEVICE, "--epochs", "2", "--resume")
    run(mnist_root, tmp_path / "straight", DEVICE, "--epochs", "2")
    a, b = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=True) for name in ("stopped", "straight"))
    assert a["step"] == b["step"] == 6
    for key in a["generator"]:
        assert torch.allclose(a["generator"][key].float(), b["generator"][key].float(), atol=1e-3), key


def test_sample_and_evaluate_on_the_device(on_cpu, mnist_root, tmp_path):
    checkpoint = str(on_cpu / "checkpoint.pt")
    for device in ("cpu", DEVICE):
        sample.main(["--checkpoint", checkpoint, "--n", "16", "--out", f"{tmp_path}/{device}/", "--device", device])
        evaluate.main(["--checkpoint", checkpoint, "--n", "64", "--data-root", str(mnist_root), "--device", device,
                       "--json", str(tmp_path / f"{device}.json")])  # no float64 on MPS: this crashed there
    for k in range(16):
        cpu, dev = (pil_to_tensor(Image.open(tmp_path / d / f"{k:05d}.png")).int() for d in ("cpu", DEVICE))
        assert (cpu - dev).abs().max() <= 2, k
    scores = [json.loads((tmp_path / f"{d}.json").read_text())["generated"] for d in ("cpu", DEVICE)]
    assert scores[1]["frechet"] == pytest.approx(scores[0]["frechet"], rel=0.01)


def test_conditional_on_the_device(mnist_root, tmp_path):
    run(mnist_root, tmp_path, DEVICE, "--epochs", "1", "--conditional")
    G = plumbing.generator_from_checkpoint(plumbing.load_checkpoint(tmp_path / "checkpoint.pt"))
    z, labels = plumbing.seeded_noise(10, G.nz, 0), torch.arange(10)
    on_device = gan.generate(G.to(DEVICE), z, labels).float().cpu()
    assert torch.allclose(on_device, gan.generate(G.cpu(), z, labels), atol=1e-3)
