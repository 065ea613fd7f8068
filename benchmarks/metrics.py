"""How the benchmarks score pictures, offline: a Fréchet distance in the features of one small classifier (trained on
scikit-learn's digits for "digits-FD", on Fashion-MNIST for "fashion-FD"), its bootstrap, broken pictures, and what
a set of pictures looks like. No experiment and no prose here.

digits-FD: every image, real or generated, takes the same path: the model's preprocessing (8 px digits upsampled
bilinearly to the model's resolution), then the metric's resize back to 8 px (box filter), then the classifier. The
real-data floor scores train-split digits through exactly that path, so it isolates what the model adds.

fashion-FD: the 64-d features of the classifier trained on Fashion-MNIST's 60,000 training images (Debian's
dataset-fashion-mnist), between generated images and the 10,000 test images. Its weights ship beside this file
(`fashion_classifier.safetensors`), as FID ships Inception's: the same training on another device gives another
network (on an H100: test accuracy 0.8891 against 0.8910 on these CPUs), and scores of different networks do not
compare; with one fixed network, runs on any machine do.

    python -m benchmarks.metrics --write-classifier     # train fashion-FD's network and write its weights
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import linalg

from ddpm.data import Preprocess, digits_arrays, load_arrays

METRIC_SIZE = 8  # digits-FD's resolution: the digits' own
CLASSIFIER = Path(__file__).with_name("fashion_classifier.safetensors")
FOREGROUND = -0.8  # a pixel brighter than 10% grey; Fashion-MNIST's background is exactly -1
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
# A sample "blows up" when its values leave the data's range by far before the final clamp, or when it is a flat
# picture: nearly uniform (sd < 0.1 in [-1, 1]; the flattest of the 10,000 test images has 0.14), mostly white (mean
# > 0.6; the brightest test image has 0.42) or all black (no pixel above -0.5, i.e. 25% grey). No test image is
# flagged (`failures` on the test split is reported beside the rows).
BLOWN_ABS = 1.5


# ---------------------------------------------------------------------- the Fréchet distance
def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD between Gaussians fitted to two feature sets: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # a dead ReLU feature makes the covariances singular: expected, and handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_a @ s_b)  # newer SciPy dropped `disp`; the result alone works in every version
    if not np.isfinite(covmean).all():
        eps = np.eye(len(s_a)) * 1e-6
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


def bootstrap_fd(a: np.ndarray, b: np.ndarray, resamples: int = 100, seed: int = 0) -> np.ndarray:
    """FD of `a` against `b` with `a` resampled with replacement: its spread is the sampling sd of the score.

    Only `a` (the generated side) is resampled: `b`, the held-out images, is the same for every row of a report, so
    its own noise moves all rows together and cancels in their ratios.
    """
    rng = np.random.default_rng(seed)
    return np.array([frechet_distance(a[rng.integers(0, len(a), len(a))], b) for _ in range(resamples)])


def ratio_interval(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """5th and 95th percentiles of the ratio of two bootstrap distributions.

    `bootstrap_fd` draws the same resamples (same seed) for every row, and rows share their noise seeds, so resample b
    picks the same x_T for both sides of a ratio of two samplers.
    """
    lo, hi = np.percentile(num / den, [5, 95])
    return float(lo), float(hi)


def mean_term(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance's first term, |mu_a - mu_b|^2: how far apart the two feature averages lie."""
    return float(((a.mean(0) - b.mean(0)) ** 2).sum())


def spread(f: np.ndarray) -> float:
    """tr(S), the features' total variance: how varied a set of pictures is in the classifier's eyes."""
    return float(np.trace(np.cov(f, rowvar=False)))


def uniform_shrink(test_spread: float, spread: float) -> float:
    """FD's covariance term between a covariance S and c S, c = spread / test_spread: tr(S) (1 - sqrt(c))^2."""
    return test_spread * (1.0 - np.sqrt(spread / test_spread)) ** 2


def class_distance(hist: list[int], ref: list[int]) -> float:
    """Total variation distance between two class mixes: the share of images that would have to change class."""
    p, r = np.asarray(hist, float), np.asarray(ref, float)
    return float(0.5 * np.abs(p / p.sum() - r / r.sum()).sum())


# ---------------------------------------------------------------------- the classifier, one for both data sets
class FeatureNet(nn.Module):
    """A small CNN on `size` x `size` grey images, 10 classes; `features` is its 64-d penultimate layer. Two 3x3
    convolutions, each followed by a 2x2 max-pool (the first one's only with `pool_first`: the 8 px digits keep
    their size through it)."""

    def __init__(self, size: int, pool_first: bool):
        super().__init__()
        self.pool_first = pool_first
        side = size // 4 if pool_first else size // 2
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * side * side, 64)
        self.fc2 = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2) if self.pool_first else x
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def digits_net() -> FeatureNet:
    return FeatureNet(METRIC_SIZE, pool_first=False)


def fashion_net() -> FeatureNet:
    return FeatureNet(28, pool_first=True)


def fit(net: FeatureNet, x: torch.Tensor, y: np.ndarray, epochs: int, batch: int, lr: float, seed: int) -> FeatureNet:
    """Adam on cross-entropy, light noise (sd 0.05) on the inputs so that features are robust to generated images'
    imperfections; returns `net` in eval mode."""
    y_t = torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(perm), batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(net(x[idx] + 0.05 * torch.randn(x[idx].shape, generator=g)), y_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: FeatureNet, x: torch.Tensor, y: np.ndarray) -> float:
    """The share of `x` classified as `y`."""
    return float((torch.cat([net(x[i : i + 1000]) for i in range(0, len(x), 1000)]).argmax(1).numpy() == y).mean())


@torch.no_grad()
def features(net: FeatureNet, x: torch.Tensor) -> np.ndarray:
    """The 64-d features of images in [-1, 1] (clamped), in batches of 1000, as float64."""
    return torch.cat([net.features(x[i : i + 1000].clamp(-1, 1)) for i in range(0, len(x), 1000)]).double().numpy()


@torch.no_grad()
def class_histogram(net: FeatureNet, x: torch.Tensor) -> list[int]:
    """How many of `x` the classifier puts in each of the 10 classes."""
    return np.bincount(net(x.clamp(-1, 1)).argmax(1).numpy(), minlength=10).tolist()


@torch.no_grad()
def classify(net: FeatureNet, x_metric: torch.Tensor) -> dict:
    """Accuracy-like summary of generated digits: share of confident predictions and the class histogram."""
    probs = F.softmax(net(x_metric), dim=1)
    conf, cls = probs.max(1)
    hist = np.bincount(cls.numpy(), minlength=10)
    return {"confident": float((conf > 0.9).float().mean()), "mean_confidence": float(conf.mean()), "histogram": hist.tolist()}


# ---------------------------------------------------------------------- digits-FD's path
def to_metric(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] at any resolution -> 1-channel 8x8 in [-1, 1] (the metric's resize: area average)."""
    x = x.clamp(-1, 1)
    if x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    return F.adaptive_avg_pool2d(x, METRIC_SIZE) if x.shape[-1] != METRIC_SIZE else x


def through_model_path(split: str, resolution: int) -> tuple[torch.Tensor, np.ndarray]:
    """A digits split as the model's training data (upsampled to `resolution`), then through the metric's resize."""
    from PIL import Image

    images, labels = digits_arrays(split)
    pre = Preprocess(resolution, 1)
    x = torch.stack([pre(Image.fromarray(a, mode="L")) for a in images])
    return to_metric(x), labels


def digits_classifier(seed: int = 0, epochs: int = 40) -> tuple[FeatureNet, float]:
    """digits-FD's network, trained on the train split at 8 px (a few seconds); returns it and its test accuracy."""
    torch.manual_seed(seed)
    net = fit(digits_net(), *through_model_path("train", METRIC_SIZE), epochs=epochs, batch=64, lr=2e-3, seed=seed)
    return net, accuracy(net, *through_model_path("test", METRIC_SIZE))


# ---------------------------------------------------------------------- fashion-FD's data and network
def split_tensor(split: str) -> tuple[torch.Tensor, np.ndarray]:
    """A Fashion-MNIST split in [-1, 1], [N, 1, 28, 28], as the model's training data (the same scaling)."""
    arrays = load_arrays("fashion_mnist", split)
    if arrays is None:
        raise SystemExit("Fashion-MNIST is not on this machine: apt-get install dataset-fashion-mnist")
    return torch.from_numpy(arrays.images).unsqueeze(1).float() / 127.5 - 1.0, arrays.labels


def floor_order(n_train: int) -> torch.Tensor:
    """The order the real-data floor draws training images in: its first n are the floor of a score at n."""
    return torch.from_numpy(np.random.default_rng(0).permutation(n_train))


def train_fashion_classifier(epochs: int = 3, seed: int = 0) -> tuple[FeatureNet, float]:
    """Adam, batches of 128: about a minute on 2 CPU cores, test accuracy about 0.89."""
    torch.manual_seed(seed)
    net = fit(fashion_net(), *split_tensor("train"), epochs=epochs, batch=128, lr=1e-3, seed=seed)
    return net, accuracy(net, *split_tensor("test"))


def fashion_classifier(path: Path = CLASSIFIER) -> tuple[FeatureNet, float]:
    """fashion-FD's feature network and its test accuracy: the shipped weights (made by `train_fashion_classifier`,
    written by `python -m benchmarks.metrics --write-classifier`), or, where that file is missing, one trained now."""
    if not path.is_file():
        print(f"  {path.name} is missing: training a classifier (its scores compare only within this run)", flush=True)
        return train_fashion_classifier()
    from safetensors.torch import load_file

    net = fashion_net()
    net.load_state_dict(load_file(path))
    return net.eval(), accuracy(net, *split_tensor("test"))


# ---------------------------------------------------------------------- broken pictures, and what pictures look like
def failure_masks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: blown (pre-clamp max |x| > 1.5) and flat (uniform, white or black picture after the clamp)."""
    flat_x = x.clamp(-1, 1).flatten(1)
    blown = x.flatten(1).abs().amax(1) > BLOWN_ABS
    flat = (flat_x.std(1) < 0.1) | (flat_x.mean(1) > 0.6) | (flat_x.amax(1) < -0.5)
    return blown, flat


def failures(x: torch.Tensor) -> dict:
    """Per-set counts of blown-up samples: `blown`, `flat` and `any` (either); see `failure_masks`."""
    blown, flat = failure_masks(x)
    return {"blown": int(blown.sum()), "flat": int(flat.sum()), "any": int((blown | flat).sum())}


def tally(x: torch.Tensor) -> dict:
    """A many-noise row's columns: `failures`, the largest |value| before the clamp, and which images broke."""
    broken = torch.stack(failure_masks(x)).any(0).nonzero().flatten().tolist()
    return {**failures(x), "max_abs": float(x.abs().max()), "noises": broken}


def picture_stats(x: torch.Tensor) -> dict:
    """Mean pixel, foreground share (pixels above 10% grey) and detail (mean |Laplacian|) of images in [-1, 1]."""
    x = x.clamp(-1, 1).float()
    return {
        "mean": float(x.mean()),
        "foreground": float((x > FOREGROUND).float().mean()),
        "detail": float(F.conv2d(x, LAPLACIAN).abs().mean()),
    }


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="fashion-FD's feature network")
    p.add_argument("--write-classifier", action="store_true", help=f"train it and write {CLASSIFIER.name}")
    a = p.parse_args()
    if a.write_classifier:
        from safetensors.torch import save_file

        net, acc = train_fashion_classifier()
        save_file(net.state_dict(), CLASSIFIER)
        print(f"wrote {CLASSIFIER} (test accuracy {acc:.4f})")


if __name__ == "__main__":
    main()
