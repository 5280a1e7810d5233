"""The plumbing train.py, sample.py and evaluate.py share: one-line errors and checked flags, the
device, files written whole, checkpoints and MNIST. The networks and the training step are in gan.py.
"""

import argparse
import math
import os
import sys
from contextlib import contextmanager, suppress

import torch
import torchvision

from gan import Discriminator, Generator, generate, weights_init

def build_networks(config):
    """(G, D) with the sizes of a configuration dict (as train.py stores it), DCGAN-initialised."""
    sizes = dict(channels=config["channels"], num_classes=config["num_classes"], kernel_size=config["kernel_size"])
    G = Generator(nz=config["nz"], width=config["g_width"], modes=config["modes"], **sizes)
    return G.apply(weights_init), Discriminator(width=config["d_width"], **sizes).apply(weights_init)

def seeded_noise(n, nz, seed):
    """(n, nz) noise from a CPU generator of its own: for a seed, the same on every device."""
    return torch.randn(n, nz, generator=torch.Generator().manual_seed(seed))

def grid_labels(num_classes, per_digit):
    """The digits of a grid with one row per digit: 0 (per_digit times), 1, ..."""
    return torch.arange(num_classes).repeat_interleave(per_digit)

def generate_batches(G, z, labels, batch_size):
    """generate() `batch_size` at a time, on the CPU: one batch's memory, the same images at any size."""
    for i in range(0, len(z), batch_size):
        yield generate(G, z[i:i + batch_size], None if labels is None else labels[i:i + batch_size]).float().cpu()

MNIST_FILES = [f"{split}-{kind}-ubyte" for split in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")]

def load_mnist(root, device, train=True):
    """MNIST's training (or test) set on `device`: images (N, 1, 28, 28) in [-1, 1], labels (N,), scaled
    once and indexed into batches (a DataLoader converts every image from PIL every epoch)."""
    raw = os.path.join(root, "MNIST", "raw")
    made = [d for d in (raw, os.path.dirname(raw), root) if not os.path.isdir(d)]  # what a download makes
    try:
        dataset = torchvision.datasets.MNIST(root, train=train, download=True)
    except Exception as e:  # torchvision reports a failed download and a bad file in many types
        for d in made:  # innermost first, and only if empty: never anything the user put there
            with suppress(OSError):
                os.rmdir(d)
        missing = [name for name in MNIST_FILES if not os.path.isfile(os.path.join(raw, name))]  # torchvision wants all
        if missing:
            raise UserError(f"MNIST's {', '.join(missing)} not in {raw}/ and could not be downloaded: put the "
                            f"four IDX files there, or pass --data-root FOLDER whose MNIST/raw/ holds them") from None
        reason = " ".join(str(e).split())[:200]  # one line, however torchvision words it
        raise UserError(f"corrupt MNIST file in {raw}/ ({type(e).__name__}: {reason})") from None
    images, labels = dataset.data, dataset.targets  # (N, 28, 28) uint8, (N,) int64
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(labels) != len(images):
        raise UserError(f"corrupt MNIST file in {raw}/: {tuple(images.shape)} images, {len(labels)} labels")
    if len(labels) and not 0 <= labels.min() <= labels.max() <= 9:
        raise UserError(f"corrupt MNIST labels in {raw}/: {labels.min()} to {labels.max()}, not digits 0-9")
    return images.to(device).unsqueeze(1).float().div_(127.5).sub_(1), labels.to(device)  # uint8 travels

class UserError(Exception):
    """A problem with the user's input: the scripts print it as one line and exit 2."""

def say(text):
    """print(), except that a closed stdout (`train.py | head`) silences the rest instead of ending the run."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

def warn(text):
    print(f"warning: {text}", file=sys.stderr, flush=True)

class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr (no usage block), exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")

def bounded(kind, low, high, *, open_low=False, open_high=False):
    """argparse type: a number of `kind` (int or float) from `low` to `high`, an open end excluding
    that bound. NaN and infinities fail a comparison or a bound, so they are refused too."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not ((low < value if open_low else low <= value) and (value < high if open_high else value <= high)):
            interval = f"{'(' if open_low else '['}{low:,}, {high:,}{')' if open_high else ']'}"
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'} in {interval}, "
                                             f"got {text!r}")
        return value
    return parse

# Limits of the flags that size memory: far above what MNIST needs, far below what a machine lacks.
MAX_NZ, MAX_WIDTH, MAX_BATCH, MAX_MODES = 1024, 512, 4096, 100
SEED = bounded(int, 0, 2**32 - 1)  # what every torch.Generator takes

def add_device_flag(parser):
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
                        help="auto picks CUDA, then MPS, then CPU (default: auto)")

def pick_device(name):
    """'auto' picks CUDA, then Apple's MPS, then the CPU; a named device must exist here."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(dev for dev, ok in available.items() if ok)
    elif not available[name]:
        raise UserError(f"--device {name} is not available on this machine (try --device auto)")
    return torch.device(name)

def make_writable_dir(path):
    """Create `path` (and parents), or a UserError that names it."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write to {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"cannot write to {path}: permission denied")

def refuse_non_regular(path):
    """os.replace onto a folder fails, and onto /dev/null as root replaces the device itself."""
    if os.path.lexists(path) and not os.path.isfile(path):
        raise UserError(f"{path} exists and is not a regular file: it is never replaced")

def check_writable_file(path):
    """Before the work: `path` may be written (its folder made), and is no folder or device to replace."""
    refuse_non_regular(path)
    make_writable_dir(os.path.dirname(path) or ".")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UserError(f"cannot write to {path}: permission denied")

@contextmanager
def atomic_path(path):
    """Yield a temporary name beside `path`, renamed onto `path` only if the block succeeds: a crash,
    a kill, Ctrl-C or a full disk never leaves a half-written file under the real name."""
    refuse_non_regular(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:  # a full disk, `ulimit -f`, a folder made read-only meanwhile
        raise UserError(f"cannot write {path} ({e.strerror or e}); any earlier one is kept") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

def save_checkpoint(checkpoint, path):
    """torch.save under atomic_path: the old checkpoint stays whole until the new one is."""
    with atomic_path(path) as tmp:
        try:
            torch.save(checkpoint, tmp)
        except RuntimeError as e:  # torch's zip writer reports a full disk so
            raise OSError(str(e).splitlines()[0]) from None

def all_finite(weights):
    """A state dict's floating-point tensors hold no NaN or infinity."""
    return all(w.isfinite().all() for w in weights.values() if w.is_floating_point())

CHECKPOINT_FORMAT = 5  # the layout of train.py's checkpoint.pt; other layouts are refused
# What each configuration entry may hold: the networks are built from these numbers before any
# weight is read, so a forged file must not ask for a network the size of the machine.
CONFIG_VALUES = dict(nz=range(1, MAX_NZ + 1), g_width=range(1, MAX_WIDTH + 1), d_width=range(1, MAX_WIDTH + 1),
                     channels=(1,), num_classes=(0, 10), modes=range(MAX_MODES + 1), kernel_size=(4, 5))

def load_checkpoint(path):
    """A checkpoint train.py wrote, on the CPU, or a one-line UserError. weights_only=True: the file
    may come from anywhere, and unpickling arbitrary objects could run code."""
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path} (train one with: python train.py)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or hostile file can fail in zip, pickle or tensor code
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("config"), dict):
        raise UserError(f"{path} is not a DCGAN kit checkpoint")
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} was written by another version of the kit (checkpoint format "
                        f"{checkpoint.get('format')!r}, this one reads {CHECKPOINT_FORMAT}): train a new one")
    config = checkpoint["config"]  # configuration, counters and weights checked here; optimizers on resume
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
        if not all_finite(weights):
            raise UserError(f"{path}: its {key} weights hold NaN or infinity (a diverged run): train a new one")
    return checkpoint

def generator_from_checkpoint(checkpoint, ema=True):
    """G rebuilt from the checkpoint's configuration, with its weights' moving average (`ema`) or the raw ones."""
    G, _ = build_networks(checkpoint["config"])
    try:
        G.load_state_dict(checkpoint["ema" if ema else "generator"])
    except RuntimeError as e:
        raise UserError(f"checkpoint weights do not fit its configuration: {str(e).splitlines()[0]}") from None
    return G
