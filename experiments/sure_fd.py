"""How much of a checkpoint's Frechet distance comes from its unsure digits (blends and scribbles).

    python experiments/sure_fd.py --checkpoint runs/b128/card_s2/checkpoint.pt --data-root ../shared/data

Draws evaluate.py's 10,000 samples (the same noise) and its 10,000 real training images, and prints the
FD to MNIST's test images of each, first of all of them, then of only the "sure" ones (evaluate.py's
classifier gives the top class at least evaluate.SURE, 0.9), with the share kept. Dropping unsure real
images moves real data's FD too; the generated rows compare with that. Then, of all, FD's mean term |mu - mu_test|^2
and the spread tr(cov) of the features, against the test images' spread: too little spread is too little
variety.
"""

import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from evaluate import SURE, features_and_probs, frechet_distance, get_classifier  # noqa: E402
from plumbing import generate_batches, generator_from_checkpoint, load_checkpoint, load_mnist, seeded_noise  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description="FD of all samples and of the sure ones only.")
    p.add_argument("--checkpoint", required=True, help="an unconditional train.py checkpoint")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw/ (default: data)")
    args = p.parse_args(argv)
    cpu = torch.device("cpu")
    G = generator_from_checkpoint(load_checkpoint(args.checkpoint))
    if G.num_classes:
        p.error("a conditional checkpoint: its digits are asked for, so unsure ones say little")
    train_set, test_set = load_mnist(args.data_root, cpu), load_mnist(args.data_root, cpu, train=False)
    model, _ = get_classifier(args.data_root, train_set, test_set)
    test_features, _ = features_and_probs(model, test_set[0].split(500))
    pick = torch.randperm(len(train_set[0]), generator=torch.Generator().manual_seed(0))[:10000]
    sets = dict(generated=list(generate_batches(G, seeded_noise(10000, G.nz, 0), None, 500)),
                real=train_set[0][pick].split(500))
    for name, batches in sets.items():
        feats, probs = features_and_probs(model, batches)
        sure = probs.max(1).values >= SURE
        mean_term = (feats.mean(0) - test_features.mean(0)).square().sum()
        print(f"{name}: FD {frechet_distance(feats, test_features):.2f} all, "
              f"{frechet_distance(feats[sure], test_features):.2f} sure only ({sure.double().mean():.1%} kept); "
              f"of all: mean term {mean_term:.2f}, spread tr(cov) {torch.cov(feats.T).trace():.1f}")
    print(f"test images: spread tr(cov) {torch.cov(test_features.T).trace():.1f}")


if __name__ == "__main__":
    main()
