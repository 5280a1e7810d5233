"""DCGAN for 28x28 MNIST digits: the generator, the discriminator, the DCGAN weight init,
and the few helpers that train.py and sample.py share (device choice, checkpoints, errors).

Importing this file runs nothing. The networks follow Radford et al. 2015 ("DCGAN"), sized for
MNIST's native 28x28 pixels instead of the 64x64 that pytorch/examples resizes to: the same
recipe at under a quarter of the FLOPs per image. Their 5x5 kernels are the DCGAN authors' own
(pytorch/examples uses 4x4), and D is half as wide as G: measured better, for 4-8% more time
per step (README).
"""

import argparse
import math
import os
from contextlib import contextmanager

import torch
from torch import nn


class Generator(nn.Module):
    """Maps noise z of shape (N, nz) to images of shape (N, channels, 28, 28) in [-1, 1].

    With num_classes > 0 it is class-conditional: forward(z, labels) also takes the (N,) int64
    labels, whose learned embedding (num_classes numbers per label) is joined to z.
    """

    def __init__(self, *, nz=100, width=64, channels=1, num_classes=0, kernel_size=5):
        super().__init__()
        self.nz, self.num_classes = nz, num_classes
        k, pad, out_pad = kernel_size, (kernel_size - 1) // 2, kernel_size % 2  # 7 -> 14 -> 28 for k = 4 or 5
        # Left at PyTorch's N(0, 1) init (weights_init skips it): the same scale as z beside it.
        self.embed = nn.Embedding(num_classes, num_classes) if num_classes else None
        # (N, nz [+ classes]) -> (N, 4w * 7 * 7): the DCGAN paper's "projection", a matrix product
        # whose result net reshapes to 7x7 maps. (As a ConvTranspose2d on a 1x1 input, which is the
        # same product, oneDNN took 4x as long: 7% of a CPU step.)
        self.project = nn.Linear(nz + num_classes, width * 4 * 7 * 7, bias=False)
        self.net = nn.Sequential(
            nn.Unflatten(1, (width * 4, 7, 7)),  # (N, 4w * 7 * 7) -> (N, 4w, 7, 7)
            nn.BatchNorm2d(width * 4),
            nn.ReLU(inplace=True),
            # (N, 4w, 7, 7) -> (N, 2w, 14, 14)
            nn.ConvTranspose2d(width * 4, width * 2, k, 2, pad, out_pad, bias=False),
            nn.BatchNorm2d(width * 2),
            nn.ReLU(inplace=True),
            # (N, 2w, 14, 14) -> (N, C, 28, 28); Tanh matches data scaled to [-1, 1]
            nn.ConvTranspose2d(width * 2, channels, k, 2, pad, out_pad),
            nn.Tanh(),
        )

    def forward(self, z, labels=None):
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)  # (N, nz + num_classes)
        return self.net(self.project(z))  # (N, C, 28, 28)


class Discriminator(nn.Module):
    """Maps images (N, channels, 28, 28) to one real-vs-fake logit per image, shape (N,).

    It returns logits, not probabilities: the loss is BCEWithLogitsLoss, which fuses the
    sigmoid into the log and stays exact under autocast (Sigmoid + BCELoss does not).

    With num_classes > 0, forward(x, labels) judges "a real image of this digit": a projection
    discriminator (Miyato & Koyama 2018), where each class adds its own 7x7 kernel to the final
    one. The kernels start at zero, so training starts from the unconditional DCGAN.
    """

    def __init__(self, *, width=32, channels=1, num_classes=0, kernel_size=5):
        super().__init__()
        self.num_classes = num_classes
        k, pad = kernel_size, (kernel_size - 1) // 2  # 28 -> 14 -> 7 for k = 4 or 5
        self.class_kernels = nn.Parameter(torch.zeros(num_classes, width * 2, 7, 7)) if num_classes else None
        self.net = nn.Sequential(
            # (N, C, 28, 28) -> (N, w, 14, 14); no BatchNorm on the input layer (DCGAN paper)
            nn.Conv2d(channels, width, k, 2, pad),
            nn.LeakyReLU(0.2, inplace=True),
            # (N, w, 14, 14) -> (N, 2w, 7, 7); no bias where BatchNorm's shift follows
            nn.Conv2d(width, width * 2, k, 2, pad, bias=False),
            nn.BatchNorm2d(width * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # (N, 2w, 7, 7) -> (N, 1, 1, 1): a 7x7 kernel sees the whole map
            nn.Conv2d(width * 2, 1, 7, 1, 0),
        )

    def forward(self, x, labels=None):
        if self.class_kernels is None:
            return self.net(x).flatten()  # (N, 1, 1, 1) -> (N,)
        features = self.net[:-1](x)  # (N, 2w, 7, 7)
        projection = (features * self.class_kernels[labels]).sum((1, 2, 3))  # (N,)
        return self.net[-1](features).flatten() + projection


def weights_init(module):
    """DCGAN init, applied with `net.apply(weights_init)`: conv and projection weights
    N(0, 0.02), BatchNorm scale N(1, 0.02) and shift 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@torch.no_grad()
def generate(G, z, labels=None):
    """Images (N, C, 28, 28) in [-1, 1] for noise z (N, nz) (and labels (N,) if G is conditional),
    with BatchNorm in eval mode: the running statistics from training, so an image does not
    depend on the rest of its batch."""
    was_training = G.training
    G.eval()
    images = G(z, labels)
    G.train(was_training)
    return images


# ----------------------------------------------------------------------------
# Helpers shared by the scripts


class UserError(Exception):
    """A problem with the user's input: the scripts print it as one line and exit 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but every error is one line on stderr (no usage block) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def bounded(kind, low, high, *, open_low=False, open_high=False):
    """argparse type: a number of `kind` (int or float) from `low` to `high`, an open end excluding
    that bound. NaN and infinities fail every comparison or bound, so they are refused too."""
    interval = f"{'(' if open_low else '['}{low:,}, {high:,}{')' if open_high else ']'}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        above = low < value if open_low else low <= value
        below = value < high if open_high else value <= high
        if not (above and below):
            raise argparse.ArgumentTypeError(
                f"must be {'an integer' if kind is int else 'a number'} in {interval}, got {text!r}")
        return value
    return parse


# Limits of the flags that size memory: far above what MNIST needs, far below what a machine lacks.
MAX_NZ, MAX_WIDTH, MAX_BATCH = 1024, 512, 4096
SEED = bounded(int, 0, 2**32 - 1)  # the range every torch.Generator takes


def add_device_flag(parser):
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
                        help="auto picks CUDA, then MPS, then CPU (default: auto)")


def pick_device(name):
    """'auto' picks CUDA, then Apple's MPS, then the CPU; a named device must exist here."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        name = next(dev for dev, ok in available.items() if ok)
    elif not available[name]:
        raise UserError(f"--device {name} is not available on this machine (try --device auto)")
    return torch.device(name)


def make_writable_dir(path):
    """Create `path` (and parents) or raise a UserError that names it."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write to {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"cannot write to {path}: permission denied")


@contextmanager
def atomic_path(path):
    """Yield a temporary name beside `path`, renamed onto `path` only if the block succeeds,
    so a crash or Ctrl-C never leaves a half-written file under the real name."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(checkpoint, path):
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


# The layout of train.py's checkpoint.pt; a file of another layout is refused, not converted.
CHECKPOINT_FORMAT = 2


def load_checkpoint(path):
    """Load a checkpoint written by train.py onto the CPU, or raise a one-line UserError.

    weights_only=True: the file may come from anywhere, and unpickling arbitrary objects
    could run code. The kit's checkpoints hold only tensors, numbers, strings and dicts.
    """
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path} (train one with: python train.py)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file can fail in zip, pickle or tensor code
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__})") from None
    if (not isinstance(checkpoint, dict) or not {"config", "generator"} <= checkpoint.keys()
            or not all(isinstance(checkpoint[key], dict) for key in ("config", "generator"))):
        raise UserError(f"{path} is not a DCGAN kit checkpoint")
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} was written by another version of the kit (checkpoint format "
                        f"{checkpoint.get('format', 1)}, this one reads {CHECKPOINT_FORMAT}): train a new one")
    check_contents(checkpoint, path)
    return checkpoint


# What each configuration entry may hold: the networks are built from these numbers before any
# weight is read, so a forged file must not be able to ask for a network the size of the machine.
CONFIG_VALUES = dict(nz=range(1, MAX_NZ + 1), g_width=range(1, MAX_WIDTH + 1), d_width=range(1, MAX_WIDTH + 1),
                     channels=(1,), num_classes=(0, 10), kernel_size=(4, 5))


def check_contents(checkpoint, path):
    """Raise a UserError unless the checkpoint's configuration, counters and weights have the
    types and ranges that train.py writes (the optimizers are checked when a run resumes)."""
    config = checkpoint["config"]
    for key, allowed in CONFIG_VALUES.items():
        if type(config.get(key)) is not int or config[key] not in allowed:
            raise UserError(f"{path}: its configuration has {key} = {config.get(key)!r}, which this kit cannot build")
    for key in ("epoch", "step"):
        if type(checkpoint.get(key)) is not int or checkpoint[key] < 0:
            raise UserError(f"{path}: its {key} is {checkpoint.get(key)!r}, not a count")
    for key in ("generator", "ema"):
        weights = checkpoint.get(key)
        if not isinstance(weights, dict) or not all(isinstance(w, torch.Tensor) for w in weights.values()):
            raise UserError(f"{path}: its {key} entry is not a set of weights")


# The moving average of G's weights is the default only once it has averaged enough steps:
# by Frechet distance worse than the raw weights after 1 and 3 epochs of 469 steps, mostly better from 10 on (README).
EMA_AFTER_STEPS = 4690


def ema_ready(steps):
    """Whether a moving average of `steps` updates (one per training step) is the better generator."""
    return steps >= EMA_AFTER_STEPS


def generator_from_checkpoint(checkpoint, ema=True):
    """Rebuild the generator from the sizes stored in the checkpoint, then load its weights:
    the moving average of them (train.py's update_average) if `ema` and that is ema_ready."""
    config = checkpoint["config"]
    G = Generator(nz=config["nz"], width=config["g_width"], channels=config["channels"],
                  num_classes=config["num_classes"], kernel_size=config["kernel_size"])
    weights = checkpoint["generator"]
    if ema and checkpoint.get("ema") and ema_ready(checkpoint["step"]):
        weights = checkpoint["ema"]
    try:
        G.load_state_dict(weights)
    except (RuntimeError, TypeError) as e:
        first_line = str(e).splitlines()[0]
        raise UserError(f"checkpoint weights do not fit its configuration: {first_line}") from None
    return G
