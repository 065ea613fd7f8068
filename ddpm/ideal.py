"""The ideal denoiser of a finite training set, and the nearest training images of a picture: what "copying" means.

Trained to the end on N images x_1..x_N, the loss E ||x_0 - x̂0(x_t, t)||^2 has one exact minimiser, the posterior
mean of x_0 given x_t under q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) with x_0 uniform over the set:

    x̂0*(x_t, t) = sum_i softmax_i( -||x_t - sqrt(abar_t) x_i||^2 / (2 (1 - abar_t)) ) x_i

Run through a sampler it can only return training images: a network that made new ones generalised. `IdealDenoiser`
answers as the network does (eps = (x_t - sqrt(abar_t) x̂0*) / sqrt(1 - abar_t)), so every sampler runs it as is.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from .scheduler import DDPMScheduler

CHUNK = 8192  # training images compared at once (a chunk of Fashion-MNIST: 26 MB in float32)


def as_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, C, H, W] (0..255) -> float32 in [-1, 1], as the models' data."""
    return images.float() / 127.5 - 1.0


def squared_distances(x: torch.Tensor, y: torch.Tensor, y2: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """||x_b - scale * y_i||^2 [B, N] for images `x` [B, ...] and flattened images `y` [N, D] with their squared
    norms `y2` [N]: ||x||^2 - 2 scale x.y + scale^2 ||y||^2 (two reads of y, one matrix product)."""
    flat = x.flatten(1).float()
    return ((flat * flat).sum(1, keepdim=True) - 2 * scale * flat @ y.T + scale**2 * y2).clamp_min(0)


def nearest(x: torch.Tensor, train: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` training images (uint8 `train` [N, C, H, W]) nearest to each of `x` (values in [-1, 1]): their indices
    [B, k] and distances [B, k], as the RMS difference per pixel on the [0, 1] scale (0: the same picture). Compared
    CHUNK training images at a time, so memory stays small whatever N."""
    d2 = []
    for i in range(0, len(train), CHUNK):
        y = as_unit(train[i : i + CHUNK]).flatten(1)
        d2.append(squared_distances(x.clamp(-1, 1), y, (y * y).sum(1)))
    d2, index = torch.cat(d2, dim=1).topk(k, dim=1, largest=False)
    return index, (d2 / x[0].numel()).sqrt() / 2  # [-1, 1] is twice the [0, 1] scale


def ideal_x0(x_t: torch.Tensor, abar: float, y: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """x̂0*(x_t, t) = sum_i softmax_i(-||x_t - sqrt(abar_t) x_i||^2 / (2 (1 - abar_t))) x_i, the training images x_i
    flattened in `y` [N, D] (squared norms `y2`)."""
    weights = torch.softmax(-squared_distances(x_t, y, y2, abar**0.5) / (2 * (1 - abar)), dim=1)
    return (weights @ y).view(x_t.shape)


class IdealDenoiser:
    """The training set's ideal denoiser, called as a UNet is (`(x_t, t) -> eps`) by the samplers of ddpm.sampling:
    eps = (x_t - sqrt(abar_t) x̂0*) / sqrt(1 - abar_t). Holds the set in float32 while it runs (Fashion-MNIST's
    60,000 images: 188 MB)."""

    def __init__(self, train: torch.Tensor, scheduler: DDPMScheduler):
        if train.dtype != torch.uint8 or train.ndim != 4:
            raise ValueError("the training set is uint8 images [N, C, H, W]")
        self.y = as_unit(train).flatten(1)
        self.y2 = (self.y * self.y).sum(1)
        self.scheduler = scheduler
        self.config = SimpleNamespace(in_channels=train.shape[1], sample_size=train.shape[-1])

    def __call__(self, x_t: torch.Tensor, t) -> torch.Tensor:
        abar = float(self.scheduler.alphas_cumprod[int(t)])
        x0 = ideal_x0(x_t.float(), abar, self.y, self.y2)
        return (x_t - abar**0.5 * x0) / (1 - abar) ** 0.5
