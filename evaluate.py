"""Score generated digits: are they any good, and did the GAN collapse onto a few digits?

    python evaluate.py --checkpoint out/checkpoint.pt --data-root ../shared/data
    python evaluate.py --samples fakes/ --json scores.json     # any folder of 28x28 PNGs

The scores live in the feature space of a small MNIST classifier (trained here the first time,
then cached as <data-root>/mnist_classifier.pt), compared against the 10,000 MNIST test images:
  - Frechet distance of the classifier's penultimate-layer features (the MNIST analog of FID;
    comparable only with other numbers from this classifier, never with Inception FIDs);
  - the class histogram: digits covered (share above 1%) and KL divergence to uniform
    (0 is perfect; all samples one digit gives ln 10 = 2.30);
  - the Inception-Score analog exp(E KL(p(y|x) || p(y))), at most 10, the mean top-class
    confidence, and the share of unsure digits (top class below 0.9: blends and scribbles).
For a checkpoint of `train.py --conditional`, which draws the digits 0-9 in turn, it also
reports how often the classifier reads the digit that was asked for (per digit and overall).
The same scores for 10,000 real training images are printed beside them: the floor that a
perfect generator would reach.
"""

import json
import math
import os
import sys

try:  # Ctrl-C while torch loads ends as quietly as one later
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch import nn
    from torchvision.transforms.functional import pil_to_tensor

    from plumbing import (SEED, ArgumentParser, UserError, add_device_flag, atomic_path, bounded,
                          check_writable_file, generate_batches, generator_from_checkpoint, load_checkpoint,
                          load_mnist, pick_device, say, seeded_noise)
except KeyboardInterrupt:
    sys.exit(130)

SCORES = ("frechet", "digits_covered", "kl_to_uniform", "is_analog", "confidence", "unsure")
SURE = 0.9  # a digit whose top class is below this is unsure: a blend or a scribble
# Image modes that convert to 8-bit grayscale exactly as they look; 16-bit and float ("I;16", "I", "F")
# would be clipped by convert("L"), and CMYK or alpha would be scored as something else.
GRAY_CONVERTIBLE = ("1", "L", "P", "RGB")


def parse_args(argv=None):
    p = ArgumentParser(prog="evaluate.py", description="Score generated MNIST digits.")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", default="out/checkpoint.pt",
                        help="generator to score (default: out/checkpoint.pt)")
    source.add_argument("--samples", help="score a folder of 28x28 PNGs instead")
    # At least 2: a covariance needs two samples; at most 100,000, kept in memory (about 300 MB).
    p.add_argument("--n", type=bounded(int, 2, 100_000), default=10000,
                   help="samples drawn from --checkpoint (default: 10000)")
    p.add_argument("--seed", type=SEED, default=0, help="noise seed (default: 0)")
    add_device_flag(p)
    p.add_argument("--no-ema", action="store_true",
                   help="use the generator's raw weights instead of their moving average")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw/ (default: data)")
    p.add_argument("--json", help="also write the scores to this JSON file")
    p.add_argument("--batch-size", type=bounded(int, 1, 10_000), default=500,
                   help="images per forward pass (default: 500)")
    return p.parse_args(argv)


class Classifier(nn.Module):
    """A small MNIST CNN; its 128-d penultimate layer is the feature space of the Frechet distance."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # (N, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 64, 7, 7)
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),          # (N, 128)
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(128, 10))    # (N, 10) logits

    def forward(self, x):
        return self.head(self.features(x))


def fit_classifier(train_set, test_set, steps=2000, batch_size=128):
    """Train on (images, labels) in [-1, 1] for `steps` batches (2000 is about 4 epochs of MNIST);
    return the model in eval mode and its accuracy on `test_set`."""
    images, labels = train_set
    model = Classifier().to(images.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    order = torch.empty(0, dtype=torch.long, device=images.device)
    for _ in range(steps):
        if len(order) < batch_size:  # start a new pass over the data in a new order
            order = torch.randperm(len(images), device=images.device)
        batch, order = order[:batch_size], order[batch_size:]
        loss = F.cross_entropy(model(images[batch]), labels[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    model.eval()
    return model, accuracy(model, *test_set)


@torch.no_grad()
def accuracy(model, images, labels, batch_size=1000):
    right = sum((model(images[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum().item()
                for i in range(0, len(images), batch_size))
    return right / len(images)


def load_classifier(path, device):
    """The cached classifier, or None if it is missing or unreadable (then it is retrained)."""
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
        model = Classifier()
        model.load_state_dict(cached["model"])
        return model.to(device).eval(), cached["test_accuracy"]
    except Exception:  # missing, truncated, foreign: any of these means "train a new one"
        return None


def get_classifier(root, train_set, test_set, steps=2000, batch_size=128):
    """The cached classifier from <root>/mnist_classifier.pt, or a new one trained and cached."""
    path = os.path.join(root, "mnist_classifier.pt")
    cached = load_classifier(path, test_set[0].device)
    if cached:
        model, acc = cached
        say(f"classifier: {path} (test accuracy {acc:.2%})")
        return model, acc
    say(f"training the MNIST classifier (once; cached as {path}) ...")
    torch.manual_seed(0)
    model, acc = fit_classifier(train_set, test_set, steps, batch_size)
    try:
        with atomic_path(path) as tmp:
            torch.save({"model": model.state_dict(), "test_accuracy": acc}, tmp)
    except UserError as e:  # a read-only data folder: score anyway, retrain next time
        say(f"{e}: the classifier will be retrained next time")
    say(f"classifier test accuracy {acc:.2%}" + ("" if acc >= 0.99 else " (below 99%: scores are less reliable)"))
    return model, acc


@torch.no_grad()
def features_and_probs(model, batches):
    """Penultimate features (N, 128) in float64 and class probabilities (N, 10) for image batches, made
    float64 on the CPU: MPS has no float64."""
    device = next(model.parameters()).device
    feats, probs = [], []
    for images in batches:
        f = model.features(images.to(device))
        feats.append(f.cpu().double())
        probs.append(F.softmax(model.head(f), dim=1).cpu().double())
    return torch.cat(feats), torch.cat(probs)


def frechet_distance(x, y):
    """Frechet distance between Gaussians fitted to feature sets x (N, D) and y (M, D)."""
    x, y = x.double(), y.double()
    return frechet_from_stats(x.mean(0), torch.cov(x.T), y.mean(0), torch.cov(y.T))


def frechet_from_stats(mu_x, s_x, mu_y, s_y):
    """|mu_x - mu_y|^2 + tr(Sx) + tr(Sy) - 2 tr((Sx^1/2 Sy Sx^1/2)^1/2), in float64.
    Through symmetric eigendecompositions (no scipy): the matrix inside the trace is symmetric
    PSD, so its eigenvalues are real, and clamping round-off negatives to 0 keeps the result
    real and non-negative even for near-singular covariances."""
    mu_x, s_x, mu_y, s_y = (t.double() for t in (mu_x, s_x, mu_y, s_y))
    vals, vecs = torch.linalg.eigh(s_x)
    s_x_half = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    inner = torch.linalg.eigvalsh(s_x_half @ s_y @ s_x_half).clamp(min=0).sqrt().sum()
    distance = (mu_x - mu_y).square().sum() + s_x.trace() + s_y.trace() - 2 * inner
    return max(distance.item(), 0.0)


def class_scores(probs):
    """Scores of the class probabilities (N, 10): digits covered, KL to uniform, IS analog, confidence, unsure."""
    xlogy = torch.special.xlogy  # x * log(y), and 0 where x is 0: the convention 0 log 0 = 0
    share = torch.bincount(probs.argmax(1), minlength=10).double() / len(probs)  # (10,)
    kl_uniform = xlogy(share, share * 10).sum().item()
    marginal = probs.mean(0, keepdim=True)  # p(y), (1, 10)
    kl_each = (xlogy(probs, probs) - xlogy(probs, marginal)).sum(1)  # KL(p(y|x) || p(y)), (N,)
    return dict(digits_covered=int((share > 0.01).sum()), kl_to_uniform=kl_uniform,
                is_analog=kl_each.mean().exp().item(), confidence=probs.max(1).values.mean().item(),
                unsure=(probs.max(1).values < SURE).double().mean().item(),
                histogram=[round(s, 4) for s in share.tolist()])


def label_scores(probs, labels):
    """How often the classifier reads the digit asked for: overall and for each digit 0-9."""
    right = (probs.argmax(1) == labels).double()
    per_digit = [right[labels == d].mean().item() for d in range(10)]
    return dict(label_accuracy=right.mean().item(), label_accuracy_per_digit=[round(a, 4) for a in per_digit])


def score(model, batches, test_features, labels=None):
    """The scores of image batches; with their intended `labels` (N,), the label accuracy too."""
    feats, probs = features_and_probs(model, batches)
    scores = dict(frechet=frechet_distance(feats, test_features), **class_scores(probs))
    if labels is not None:
        scores.update(label_scores(probs, labels.cpu()))
    return scores


def read_folder(folder, batch_size):
    """Every file in `folder` as (N, 1, 28, 28) batches in [-1, 1]. Colour images are converted to
    grayscale, other modes and any size but 28x28 refused (resizing would blur strokes and bias scores)."""
    if not os.path.isdir(folder):
        raise UserError(f"--samples {folder} is not a folder")
    names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    if len(names) < 2:
        raise UserError(f"--samples {folder} holds {'one image' if names else 'no images'}; the scores need at least 2")
    images = []
    for name in names:
        try:
            with Image.open(os.path.join(folder, name)) as image:
                if image.size != (28, 28):
                    raise UserError(f"{name} in {folder} is {image.size[0]}x{image.size[1]}; expected 28x28 digits")
                if image.mode not in GRAY_CONVERTIBLE:
                    raise UserError(f"{name} in {folder} is in image mode {image.mode}; save 8-bit grayscale or RGB")
                images.append(pil_to_tensor(image.convert("L")))  # (1, 28, 28) uint8
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # what Pillow raises
            raise UserError(f"{name} in {folder} is not an image ({type(e).__name__})") from None
    images = torch.stack(images).float().div(127.5).sub(1)
    return list(images.split(batch_size))


def print_table(generated, real):
    lines = [f"\n{'score':28} {'generated':>12} {'real (floor)':>13}"]
    names = dict(frechet="Frechet distance (MNIST clf)", digits_covered="digits covered (>1%)",
                 kl_to_uniform="KL to uniform", is_analog="IS analog (max 10)", confidence="mean confidence",
                 unsure=f"unsure (top class < {SURE})")
    for key in SCORES:
        lines.append(f"{names[key]:28} {generated[key]:12.4g} {real[key]:13.4g}")
    if "label_accuracy" in generated:
        lines.append(f"{'digit asked for, read back':28} {generated['label_accuracy']:12.4g} "
                     f"{real['label_accuracy']:13.4g}")
        lines.append("  per digit 0-9: " + " ".join(f"{a:.3f}" for a in generated["label_accuracy_per_digit"]))
    lines.append("histogram of generated digits 0-9: " + " ".join(f"{s:.3f}" for s in generated["histogram"]))
    say("\n".join(lines + ["Frechet distances here compare only with this classifier's, not with Inception FIDs."]))


def strict_json(value):
    """`value` with every NaN or infinity made None: JSON's null, not the bare NaN strict readers refuse."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def evaluate(args):
    device = pick_device(args.device)
    if args.json:  # checked now, not after minutes of scoring
        check_writable_file(args.json)
    labels = None  # the digit asked for, for a conditional checkpoint: 0, 1, ..., 9, 0, 1, ...
    if args.samples:
        batches = read_folder(args.samples, args.batch_size)
    else:
        G = generator_from_checkpoint(load_checkpoint(args.checkpoint), ema=not args.no_ema).to(device)
        labels = torch.arange(args.n) % G.num_classes if G.num_classes else None
        batches = list(generate_batches(G, seeded_noise(args.n, G.nz, args.seed), labels, args.batch_size))
    train_set = load_mnist(args.data_root, device, train=True)
    test_set = load_mnist(args.data_root, device, train=False)
    model, acc = get_classifier(args.data_root, train_set, test_set)
    test_features, _ = features_and_probs(model, test_set[0].split(args.batch_size))
    pick = torch.randperm(len(train_set[0]), generator=torch.Generator().manual_seed(args.seed))[:10000].to(device)
    real_labels = None if labels is None else train_set[1][pick]
    real = score(model, train_set[0][pick].split(args.batch_size), test_features, real_labels)
    generated = score(model, batches, test_features, labels)
    if args.json:
        result = dict(source=args.samples or args.checkpoint, n=sum(len(b) for b in batches),
                      classifier_test_accuracy=acc, generated=generated, real=real)
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            json.dump(strict_json(result), f, indent=2, allow_nan=False)
    print_table(generated, real)
    if args.json:
        say(f"wrote {args.json}")


def main(argv=None):
    args = parse_args(argv)
    try:
        evaluate(args)
    except UserError as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
