"""Sample quality that runs offline: "digits-FD", a Fréchet distance in the feature space of a small classifier
trained on scikit-learn's digits (train split), computed against the held-out test split.

Every image, real or generated, takes the same path: the model's preprocessing (8 px digits upsampled bilinearly
to the model's resolution), then the metric's resize back to 8 px (box filter), then the classifier. The
real-data floor scores train-split digits through exactly that path, so it isolates what the model adds.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import linalg

from ddpm.data import Preprocess, digits_arrays
from ddpm.sampling import sample

METRIC_SIZE = 8


class DigitNet(nn.Module):
    """A small CNN on 8x8 digits; `features` is its 64-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def to_metric(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] at any resolution -> 1-channel 8x8 in [-1, 1] (the metric's resize: area average)."""
    x = x.clamp(-1, 1)
    if x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    return F.adaptive_avg_pool2d(x, METRIC_SIZE) if x.shape[-1] != METRIC_SIZE else x


def through_model_path(split: str, resolution: int) -> tuple[torch.Tensor, np.ndarray]:
    """A digits split as the model's training data (upsampled to `resolution`), then through the metric's resize."""
    images, labels = digits_arrays(split)
    from PIL import Image

    pre = Preprocess(resolution, 1)
    x = torch.stack([pre(Image.fromarray(a, mode="L")) for a in images])
    return to_metric(x), labels


def train_classifier(seed: int = 0, epochs: int = 40) -> tuple[DigitNet, float]:
    """The feature network, trained on the train split at 8 px; returns it and its test accuracy."""
    torch.manual_seed(seed)
    xtr, ytr = through_model_path("train", METRIC_SIZE)
    xte, yte = through_model_path("test", METRIC_SIZE)
    ytr_t = torch.from_numpy(ytr)
    net = DigitNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            # small shifts and noise so features are robust to generated-image imperfections
            xb = xtr[idx] + 0.05 * torch.randn(xtr[idx].shape, generator=g)
            loss = F.cross_entropy(net(xb), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(xte).argmax(1).numpy() == yte).mean()
    return net, float(acc)


@torch.no_grad()
def features(net: DigitNet, x_metric: torch.Tensor) -> np.ndarray:
    return net.features(x_metric).double().numpy()


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

    Only `a` (the generated side) is resampled: `b`, the held-out digits, is the same for every row of a report, so
    its own noise moves all rows together and cancels in their ratios.
    """
    rng = np.random.default_rng(seed)
    return np.array([frechet_distance(a[rng.integers(0, len(a), len(a))], b) for _ in range(resamples)])


@torch.no_grad()
def classify(net: DigitNet, x_metric: torch.Tensor) -> dict:
    """Accuracy-like summary of generated digits: share of confident predictions and the class histogram."""
    probs = F.softmax(net(x_metric), dim=1)
    conf, cls = probs.max(1)
    hist = np.bincount(cls.numpy(), minlength=10)
    return {"confident": float((conf > 0.9).float().mean()), "mean_confidence": float(conf.mean()), "histogram": hist.tolist()}


def generate_many(m, n: int, batch: int, seed: int = 1000, draw=None, **kwargs) -> torch.Tensor:
    """n samples in batches, batch i seeded with seed + i: `sample(..., **kwargs)`, or `draw(batch_size, generator)`
    for a sampler written elsewhere that draws its x_T first from the generator (then on the same noises)."""
    draw = draw or (lambda b, g: sample(m.unet, m.scheduler, b, generator=g, **kwargs))
    return torch.cat([draw(min(batch, n - i), torch.Generator().manual_seed(seed + i)) for i in range(0, n, batch)])


def ratio_interval(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """5th and 95th percentiles of the ratio of two bootstrap distributions.

    `bootstrap_fd` draws the same resamples (same seed) for every row, and rows share their noise seeds, so resample b
    picks the same x_T for both sides of a ratio of two samplers.
    """
    lo, hi = np.percentile(num / den, [5, 95])
    return float(lo), float(hi)
