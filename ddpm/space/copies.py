"""Does the model copy its training images? Its samples beside their nearest training images, the same for the
training set's ideal denoiser (`ddpm.ideal`: it can only copy) run from the same noise through the same sampler, and
for held-out test images (what "new" looks like for real data)."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data import load_arrays
from ..hub import LoadedModel
from ..ideal import IdealDenoiser, as_unit, nearest
from ..sampling import sample
from ..visualize import captioned, grid, side_by_side
from .inputs import held_out_order, held_out_set, model_input
from .registry import dataset_name
from .runtime import Serialized
from .settings import MAX_SEED

MAX_COPIES_IMAGES, MAX_COPIES_STEPS, NEIGHBOURS = 8, 100, 3
SAMPLER = "dpm2m"  # the Space's default sampler


@functools.lru_cache(maxsize=2)
def _training_set(name: str, channels: int, size: int) -> torch.Tensor | None:
    arrays = load_arrays(name, "train")
    if arrays is None:
        return None
    x = torch.from_numpy(np.ascontiguousarray(arrays.images))[:, None]  # [N, 1, h, w] uint8, as the data ships
    if x.shape[-1] != size:  # the model's resolution, as its training data was resized
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True).round().clamp(0, 255).byte()
    return x.expand(-1, channels, -1, -1).contiguous()


def training_set(model: LoadedModel) -> torch.Tensor | None:
    """The model's training images as uint8 [N, C, H, W] at its resolution, when this machine has them (digits with
    scikit-learn; Fashion-MNIST from Debian's dataset-fashion-mnist), else None."""
    name, cfg = dataset_name(model), model.unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
    return _training_set(name, cfg.in_channels, size) if name else None


def check_copies(seed, num_images, steps) -> tuple[int, int, int]:
    try:
        seed, num_images, steps = int(seed), int(num_images), int(steps)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("seed, number of images and steps must be whole numbers") from None
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"the seed must be between 0 and {MAX_SEED}")
    if not 1 <= num_images <= MAX_COPIES_IMAGES or not 1 <= steps <= MAX_COPIES_STEPS:
        raise ValueError(f"pick 1 to {MAX_COPIES_IMAGES} images and 1 to {MAX_COPIES_STEPS} steps")
    return seed, num_images, steps


def rows(x: torch.Tensor, train: torch.Tensor, scale: int) -> tuple[Image.Image, torch.Tensor]:
    """Each image of `x` followed by its NEIGHBOURS nearest training images, one row each; and the distances."""
    index, dist = nearest(x, train, NEIGHBOURS)
    tiles = torch.cat([torch.cat([x[b : b + 1].clamp(-1, 1), as_unit(train[index[b]])]) for b in range(len(x))])
    return captioned(grid(tiles, nrow=NEIGHBOURS + 1, scale=scale), "picture, then its 3 nearest training images"), dist


def copies_view(model: LoadedModel, seed, num_images, steps, samples: torch.Tensor | None = None) -> tuple[Image.Image, str]:
    """One picture of three blocks side by side (the network's samples, the ideal denoiser's from the same x_T,
    held-out test images), each row a picture and its nearest training images; and a reading of their distances.
    `samples` (a finished run's x_0, e.g. the visitor's last Generate) replaces the network's new samples."""
    seed, n, steps = check_copies(seed, num_images, steps)
    train = training_set(model)
    if train is None:
        raise ValueError("this model's training images are not on this Space, so there is nothing to compare with")
    kwargs = {"sampler": SAMPLER, "num_inference_steps": steps}
    networks = Serialized(model.unet), Serialized(IdealDenoiser(train, model.scheduler))  # each call a turn
    ours = samples[:n] if samples is not None else None
    n = n if ours is None else len(ours)
    ideal = sample(networks[1], model.scheduler, n, generator=torch.Generator().manual_seed(seed), **kwargs)
    if ours is None:
        ours = sample(networks[0], model.scheduler, n, generator=torch.Generator().manual_seed(seed), **kwargs)
    held = held_out_set(model)
    real = torch.cat([model_input(model, Image.fromarray(a, mode="L")) for a in held.images[held_out_order(held.labels)[:n]]])
    scale = max(3, 96 // train.shape[-1])
    mine = "the network's samples" if samples is None else "your run's images"
    sets = [(ours, mine), (ideal, f"the ideal denoiser's, seed {seed}"), (real, "held-out test images")]
    pictures, dists = [], []
    for x, title in sets:
        picture, dist = rows(x, train, scale)
        pictures.append(captioned(picture, title))
        dists.append(dist[:, 0])
    picture = side_by_side(side_by_side(pictures[0], pictures[1], gap=16), pictures[2], gap=16)
    return picture, reading(dists, len(train), steps, mine)


def reading(dists: list[torch.Tensor], n_train: int, steps: int, mine: str = "the network's samples") -> str:
    """What the nearest distances say (RMS per pixel, 0 to 1): copies sit at 0, new pictures as far as real ones."""
    ours, ideal, real = (float(d.mean()) for d in dists)
    return (
        f"Nearest training image (of {n_train:,}), as the RMS difference per pixel on a 0-1 scale, averaged over the "
        f"pictures: **{mine} {ours:.3f}**, the ideal denoiser's {ideal:.3f}, held-out test images "
        f"{real:.3f}. The ideal denoiser, the exact minimiser of the training loss on this training set, can only "
        "return training images (0: copies). A network whose samples sit about as far from the training set as real "
        "pictures it never saw made new ones: it generalised. "
        f"(DPM-Solver++ 2M, {steps} steps, fp32; the same seed and number of images give Generate's x_T.)"
    )
