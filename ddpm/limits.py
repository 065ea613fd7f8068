"""What a public Space agrees to serve: a budget checked from a model's configs and file sizes before any weights
are read, and the work one request may ask for.

The defaults fit Hugging Face's free CPU tier (2 vCPU, 16 GB); a GPU Space raises them with environment variables:

    DDPM_MAX_WEIGHTS_MB         weights file size                    (default 200)
    DDPM_MAX_RESOLUTION         sample_size in pixels                (default 128)
    DDPM_MAX_CHANNELS           in/out channels                      (default 4)
    DDPM_MAX_TIMESTEPS          the scheduler's T                    (default 4000)
    DDPM_MAX_GFLOP_PER_STEP     one network call on one image        (default 2)
    DDPM_MAX_REQUEST_TFLOP      images x steps x cost of one request  (default 5: 16 images x 1000 steps of the
                                                                       bundled 28 px model is 2.4)
    DDPM_MODEL_CACHE_MB         parameters of the models kept loaded  (default 1024)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

# Structure a UNet2DModel config may have before it is even built (on the meta device) to count its cost.
MAX_LEVELS, MAX_LAYERS_PER_BLOCK, MAX_BLOCK_CHANNELS = 8, 8, 4096


class OverBudget(ValueError):
    """A model or a request is larger than this Space serves; the message names the limit."""


@dataclass(frozen=True)
class Limits:
    max_weights_mb: float = 200.0
    max_resolution: int = 128
    max_channels: int = 4
    max_timesteps: int = 4000
    max_gflop_per_step: float = 2.0
    max_request_tflop: float = 5.0
    model_cache_mb: float = 1024.0

    @classmethod
    def from_env(cls, environ=None) -> Limits:
        """The defaults, each overridden by DDPM_<NAME> (e.g. DDPM_MAX_RESOLUTION=256)."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f"DDPM_{f.name.upper()}")
            if raw is not None:
                try:
                    values[f.name] = type(f.default)(raw)
                except ValueError:
                    raise ValueError(f"DDPM_{f.name.upper()}={raw!r} is not a number") from None
        return cls(**values)


def _as_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OverBudget(f"its {what} is not a whole number")
    return value


def flops_per_image_step(unet_config: dict) -> float:
    """Floating-point operations of one network call on one image, counted on the meta device (no memory, no
    weights): the UNet is built from its config and run on an empty tensor under torch's FLOP counter."""
    import torch
    from diffusers import UNet2DModel
    from torch.utils.flop_counter import FlopCounterMode

    size = unet_config["sample_size"]
    hw = (size, size) if isinstance(size, int) else tuple(size)
    with torch.device("meta"):
        unet = UNet2DModel.from_config(unet_config)
        x = torch.empty(1, unet_config.get("in_channels", 3), *hw)
        with FlopCounterMode(display=False) as counter:
            unet(x, torch.tensor(1))
    return float(counter.get_total_flops())


def check_model(unet_config: dict, scheduler_config: dict, weights_bytes: int, limits: Limits) -> float:
    """Refuse (OverBudget, one line naming the limit) what this Space cannot serve; return the cost of one
    network call on one image in FLOPs. Reads only the configs and the weights' size."""
    mb = weights_bytes / 2**20
    if mb > limits.max_weights_mb:
        raise OverBudget(f"its weights are {mb:.0f} MB; this Space serves models up to {limits.max_weights_mb:.0f} MB")
    size = unet_config.get("sample_size")
    sizes = [size] if not isinstance(size, list | tuple) else list(size)
    if not sizes or any(_as_int(s, "sample_size") > limits.max_resolution or s < 1 for s in sizes):
        raise OverBudget(f"it makes {size} px images; this Space serves up to {limits.max_resolution} px")
    for key in ("in_channels", "out_channels"):
        if not 1 <= _as_int(unet_config.get(key, 3), key) <= limits.max_channels:
            raise OverBudget(
                f"it has {unet_config.get(key)} {key.replace('_', ' ')}; this Space serves up to {limits.max_channels}"
            )
    T = _as_int(scheduler_config.get("num_train_timesteps", 1000), "num_train_timesteps")
    if not 1 <= T <= limits.max_timesteps:
        raise OverBudget(f"its schedule has T = {T} steps; this Space serves T up to {limits.max_timesteps}")
    channels = unet_config.get("block_out_channels", [])
    if (
        not isinstance(channels, list | tuple)
        or not 1 <= len(channels) <= MAX_LEVELS
        or any(not 1 <= _as_int(c, "block_out_channels") <= MAX_BLOCK_CHANNELS for c in channels)
        or not 1 <= _as_int(unet_config.get("layers_per_block", 2), "layers_per_block") <= MAX_LAYERS_PER_BLOCK
    ):
        raise OverBudget("its UNet is larger than this Space builds (levels, layers per block or channels)")
    try:
        flops = flops_per_image_step(unet_config)
    except Exception as e:  # a config diffusers cannot build
        raise OverBudget(
            f"its unet/config.json does not describe a UNet2DModel diffusers can build ({type(e).__name__})"
        ) from None
    if flops / 1e9 > limits.max_gflop_per_step:
        raise OverBudget(
            f"one step on one image costs {flops / 1e9:.1f} GFLOP; this Space serves up to {limits.max_gflop_per_step:g} GFLOP"
        )
    return flops


def check_request(images: int, network_calls: int, flops_per_step: float, limits: Limits) -> None:
    """Refuse a request whose total work (images x network calls x cost per image-step) is over the budget."""
    tflop = images * network_calls * flops_per_step / 1e12
    if tflop > limits.max_request_tflop:
        raise OverBudget(
            f"{images} image(s) x {network_calls} steps is {tflop:.1f} TFLOP of work; this Space serves up to "
            f"{limits.max_request_tflop:g} TFLOP a request: use fewer images or fewer steps"
        )
