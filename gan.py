"""DCGAN for 28x28 MNIST digits (Radford et al. 2015): what a student copies into a notebook. The
generator, the discriminator, the DCGAN weight init, the training step, G's moving average and
generation. Importing this file runs nothing; the scripts' shared plumbing lives in plumbing.py.
Sized for MNIST's native 28x28, not the 64x64 pytorch/examples resizes to: about a quarter of the FLOPs.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

class Generator(nn.Module):
    """Noise z (N, nz) -> images (N, channels, 28, 28) in [-1, 1]. G reads a discrete choice from z:
    which of its first `modes` entries is largest (each equally likely). A smooth map of connected
    noise must pass through blends to get from a 3 to a 7; a choice lets it jump (fewer malformed
    digits: docs/experiments.md). With num_classes > 0 it is class-conditional instead:
    forward(z, labels) also takes the (N,) digits. The choice or the digit is embedded beside z."""

    def __init__(self, *, nz=100, width=64, channels=1, num_classes=0, modes=10, kernel_size=5):
        super().__init__()
        self.nz, self.num_classes, self.modes = nz, num_classes, 0 if num_classes else modes
        kinds = num_classes or self.modes
        k, pad, out_pad = kernel_size, (kernel_size - 1) // 2, kernel_size % 2  # 7 -> 14 -> 28 for k = 4 or 5
        # Left at PyTorch's N(0, 1) (weights_init skips it): at 0.3 or 0.02 G hardly used its choice (experiments.md).
        self.embed = nn.Embedding(kinds, kinds) if kinds else None
        # The paper's "projection": a matrix product reshaped into 7x7 maps (pytorch/examples' transposed
        # conv on a 1x1 input computes the same, 4x slower in oneDNN).
        self.project = nn.Linear(nz + kinds, width * 4 * 7 * 7, bias=False)
        self.net = nn.Sequential(
            nn.Unflatten(1, (width * 4, 7, 7)),  # (N, 4w * 7 * 7) -> (N, 4w, 7, 7)
            nn.BatchNorm2d(width * 4),
            nn.ReLU(inplace=True),
            # A stride-1 stage at 7x7, as in the TensorFlow DCGAN tutorial: more layers where a digit's
            # shape is decided, at no extra step time on a CPU (docs/experiments.md). Always 5x5, which keeps 7x7.
            nn.ConvTranspose2d(width * 4, width * 2, 5, 1, 2, bias=False),  # -> (N, 2w, 7, 7)
            nn.BatchNorm2d(width * 2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width * 2, width, k, 2, pad, out_pad, bias=False),  # -> (N, w, 14, 14)
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, channels, k, 2, pad, out_pad),  # -> (N, C, 28, 28)
            nn.Tanh(),  # [-1, 1], the range the data is scaled to
        )

    def forward(self, z, labels=None):
        if self.modes:
            labels = z[:, :self.modes].argmax(1)  # (N,): the choice
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)  # (N, nz + kinds)
        return self.net(self.project(z))  # (N, C, 28, 28)

class Discriminator(nn.Module):
    """Images (N, channels, 28, 28) -> one real-vs-fake logit each, (N,): logits, because
    BCEWithLogitsLoss is exact under autocast (Sigmoid + BCELoss is not). With num_classes > 0,
    forward(x, labels) judges "a real image of this digit" as a projection discriminator (Miyato &
    Koyama 2018): each class adds its own 7x7 kernel, from zero, to the final one."""

    def __init__(self, *, width=32, channels=1, num_classes=0, kernel_size=5):
        super().__init__()
        k, pad = kernel_size, (kernel_size - 1) // 2  # 28 -> 14 -> 7 for k = 4 or 5
        self.class_kernels = nn.Parameter(torch.zeros(num_classes, width * 2, 7, 7)) if num_classes else None
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, k, 2, pad),  # -> (N, w, 14, 14); no BatchNorm on the input layer
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, width * 2, k, 2, pad, bias=False),  # -> (N, 2w, 7, 7); BatchNorm shifts
            nn.BatchNorm2d(width * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width * 2, 1, 7, 1, 0),  # -> (N, 1, 1, 1): a 7x7 kernel sees the whole map
        )

    def forward(self, x, labels=None):
        if self.class_kernels is None:
            return self.net(x).flatten()  # (N,)
        features = self.net[:-1](x)  # (N, 2w, 7, 7)
        # Each image's features against every class's kernel, then the one of its label: products
        # and a mask, whose gradients are deterministic (indexing's backward adds in any order).
        scores = features.flatten(1) @ self.class_kernels.flatten(1).T  # (N, num_classes)
        projection = (scores * F.one_hot(labels, len(self.class_kernels))).sum(1)  # (N,)
        return self.net[-1](features).flatten() + projection

def weights_init(module):
    """DCGAN init, as `net.apply(weights_init)`: conv and projection weights N(0, 0.02), BatchNorm N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)

def train_step(G, D, opt_g, opt_d, scaler, real, labels, autocast, ema, ema_decay, r1=0.0):
    """One DCGAN step: D learns real (target 1) from fake (0), G learns to make D say real, and G's
    moving average `ema` moves toward G. `labels` (B,): the real digits of a conditional GAN (fakes
    are asked for the same), else None. r1 > 0 adds r1 / 2 x r1_penalty to D's loss. Returns (4,) on
    the device: loss_d (without the penalty), loss_g, D(x), D(G(z)); nothing here reads a device value
    (.item()), which would make the host wait."""
    z = torch.randn(real.size(0), G.nz, device=real.device)
    real = real.detach().requires_grad_(r1 > 0)
    with autocast:
        fake = G(z, labels)  # (B, 1, 28, 28)
        # Two D calls: one batch of both would mix real and fake BatchNorm statistics.
        logit_real, logit_fake = D(real, labels), D(fake.detach(), labels)  # (B,), (B,); no G grads
        loss_d = (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
                  + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))
    objective = loss_d + r1 / 2 * r1_penalty(logit_real, real, scaler) if r1 > 0 else loss_d  # no add when off
    # fp16 loss scaling with two optimizers, as PyTorch's AMP examples do it: each optimizer stepped
    # through the scaler (it skips a step whose gradients overflowed), one update() after both.
    opt_d.zero_grad(set_to_none=True)
    scaler.scale(objective).backward()
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

def lazy_r1(gamma, step, every=16):
    """train_step's r1 at `step` (from 0), lazy as StyleGAN2: gamma x `every` on every `every`-th step, 0 between."""
    return gamma * every if step % every == 0 else 0.0

def r1_penalty(logit_real, real, scaler):
    """R1 (Mescheder et al. 2018): D's squared gradient at the real images, per image, mean over the batch. Through
    the loss scaler as PyTorch's AMP examples take a gradient penalty (fp16 would underflow), unscaled on the device."""
    grad, = torch.autograd.grad(scaler.scale(logit_real.float().sum()), real, create_graph=True)
    return (grad / scaler.scale(torch.ones((), device=real.device))).square().flatten(1).sum(1).mean()

@torch.no_grad()
def update_average(average, G, decay):
    """average = decay * average + (1 - decay) * G, over G's weights and BatchNorm statistics, with
    swa_utils' EMA: one fused lerp for all (AveragedModel.update_parameters would also read its
    counter from the device every call, and on a GPU a lerp per tensor costs a launch each)."""
    pairs = list(zip(average.state_dict().values(), G.state_dict().values()))
    means, news = zip(*[(mean, new) for mean, new in pairs if mean.is_floating_point()])
    get_ema_multi_avg_fn(decay)(list(means), list(news), None)
    for mean, new in pairs:
        if not mean.is_floating_point():  # BatchNorm's count of batches seen
            mean.copy_(new)

def warmed_up_decay(step, decay, warmup):
    """The moving average's decay at `step` (from 0): (1 + step) / (warmup + step), capped at `decay`. It weighs
    step s's weights as about s ** (warmup - 2) (polynomial-decay averaging, Shamir & Zhang 2013), so it trails G
    by about step / warmup steps: it forgets the random init within an epoch, and a longer run averages longer."""
    return min(decay, (1 + step) / (warmup + step))

@torch.no_grad()
def generate(G, z, labels=None):
    """Images (N, C, 28, 28) in [-1, 1] for noise z (N, nz) (and digits (N,) if G is conditional), with
    BatchNorm's running statistics, so an image does not depend on the rest of its batch."""
    was_training, device = G.training, next(G.parameters()).device
    images = G.eval()(z.to(device), None if labels is None else labels.to(device))
    G.train(was_training)
    return images
