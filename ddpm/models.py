"""The network eps_theta(x_t, t): diffusers' `UNet2DModel`, in a few presets sized for CPU and GPU."""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import UNet2DModel

# Each preset: channels per resolution level, resnet blocks per level, and whether the lowest level has attention.
PRESETS = {
    "nano": {"block_out_channels": (16, 32, 64), "layers_per_block": 1},  # ~0.7 M, the 28 px Space model on 2 vCPU
    "tiny": {"block_out_channels": (32, 64, 64), "layers_per_block": 1},  # ~1.1 M params, CPU-friendly
    "small": {"block_out_channels": (64, 128, 128), "layers_per_block": 2},  # ~6 M
    "base": {"block_out_channels": (128, 256, 256, 256), "layers_per_block": 2},  # ~36 M, Ho et al.-like, GPU
}


# GroupNorm statistics are pooled over this many channels at least. With one channel per group GroupNorm is instance
# norm: every feature map loses its own mean, so the network cannot see how bright an image is and the reverse process
# drifts to all-black or all-white pictures (measured: 166 of 256 ancestral samples at 4k steps with 1 channel per group,
# 2 of 256 with 4). diffusers' defaults keep 4+ channels per group too (32 groups on 128+ channels).
MIN_CHANNELS_PER_GROUP = 4


def norm_groups(block_out_channels) -> int:
    """GroupNorm groups for a UNet2DModel: at most 32 (Ho et al.), at least MIN_CHANNELS_PER_GROUP channels in each
    group at every level, and a divisor of every level's channel count (diffusers uses one group count throughout)."""
    fits = [g for g in range(1, 33) if all(c % g == 0 and c // g >= MIN_CHANNELS_PER_GROUP for c in block_out_channels)]
    if not fits:
        raise ValueError(
            f"channels {tuple(block_out_channels)} cannot hold {MIN_CHANNELS_PER_GROUP} channels per GroupNorm group"
        )
    return max(fits)


def min_resolution_multiple(preset: str) -> int:
    """Every downsampling halves the image: the resolution must be a multiple of 2^(levels - 1)."""
    return 2 ** (len(PRESETS[preset]["block_out_channels"]) - 1)


def make_unet(preset: str = "tiny", resolution: int = 16, channels: int = 1) -> UNet2DModel:
    """A fresh UNet2DModel for `resolution` x `resolution` images with `channels` channels."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}: use one of {', '.join(PRESETS)}")
    m = min_resolution_multiple(preset)
    if resolution < m or resolution % m:
        raise ValueError(f"resolution {resolution} does not fit the {preset!r} preset: use a multiple of {m} (e.g. {max(m, 16)})")
    p = PRESETS[preset]
    levels = len(p["block_out_channels"])
    down = ["DownBlock2D"] * (levels - 1) + ["AttnDownBlock2D"]
    up = ["AttnUpBlock2D"] + ["UpBlock2D"] * (levels - 1)
    return UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=p["block_out_channels"],
        layers_per_block=p["layers_per_block"],
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        attention_head_dim=None,
        norm_num_groups=norm_groups(p["block_out_channels"]),
    )


def load_unet(config_name_or_path: str) -> UNet2DModel:
    """A UNet from a config JSON (fresh weights) or from a saved model/pipeline folder (fine-tuning)."""
    path = Path(config_name_or_path)
    if path.is_file():
        return UNet2DModel.from_config(json.loads(path.read_text()))
    if (path / "unet").is_dir():
        return UNet2DModel.from_pretrained(path, subfolder="unet", use_safetensors=True)
    if path.is_dir():
        return UNet2DModel.from_pretrained(path, use_safetensors=True)
    return UNet2DModel.from_pretrained(config_name_or_path, subfolder="unet", use_safetensors=True)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def build_on_meta(unet_config: dict):
    """A UNet2DModel built from its config on the meta device: its shapes and parameter count, no memory."""
    import torch
    from diffusers import UNet2DModel

    with torch.device("meta"):
        return UNet2DModel.from_config(unet_config)


def flops_per_image_step(unet_config: dict) -> float:
    """Floating-point operations of one network call on one image, counted on the meta device (no memory, no
    weights): the UNet is built from its config and run on an empty tensor under torch's FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = unet_config["sample_size"]
    hw = (size, size) if isinstance(size, int) else tuple(size)
    unet = build_on_meta(unet_config)
    with torch.device("meta"):
        x = torch.empty(1, unet_config.get("in_channels", 3), *hw)
        with FlopCounterMode(display=False) as counter:
            unet(x, torch.tensor(1))
    return float(counter.get_total_flops())
