"""Small shared pieces for the tests."""

import os
from pathlib import Path

import torch
from diffusers import UNet2DModel

ROOT = Path(__file__).resolve().parents[1]


def python_path() -> str:
    """PYTHONPATH for a subprocess: the repository first, then the caller's own (packages installed with `--target`,
    as on a GPU machine that has no diffusers of its own)."""
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def tiny_unet(size: int = 8, channels: int = 1, seed: int = 0) -> UNet2DModel:
    """A small random UNet2DModel (fast on CPU), the same for the same seed."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
    ).eval()


# Every device this machine has: the device tests run on the CPU everywhere, and on CUDA too where a GPU is present.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
