"""The network presets: every GroupNorm pools several channels, and models saved by older presets still load."""

import json
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel

from ddpm.hub import load_pipeline
from ddpm.models import MIN_CHANNELS_PER_GROUP, PRESETS, make_unet, norm_groups
from ddpm.sampling import sample
from ddpm.space import DIGITS_MODEL


def group_sizes(unet):
    return {m.num_channels // m.num_groups for m in unet.modules() if isinstance(m, torch.nn.GroupNorm)}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_groupnorm_of_every_preset_holds_at_least_4_channels(preset):
    """One channel per group is instance norm: each feature map loses its mean, so the network cannot see how bright
    an image is. Every GroupNorm of every preset, at every level (attention, mid block and output too), pools 4+."""
    sizes = group_sizes(make_unet(preset, resolution=2 ** (len(PRESETS[preset]["block_out_channels"]) - 1) * 4))
    assert sizes and min(sizes) >= MIN_CHANNELS_PER_GROUP, sizes


def test_norm_groups_keeps_32_groups_where_the_channels_allow_and_refuses_too_few_channels():
    assert norm_groups((128, 256, 256, 256)) == 32  # Ho et al.'s 32 groups on the base preset
    assert norm_groups((16, 32, 64)) == 4 and norm_groups((32, 64, 64)) == 8
    assert norm_groups((24, 48)) == 6  # a divisor of every level, 4 channels each at the first
    with pytest.raises(ValueError, match="cannot hold 4 channels per GroupNorm group"):
        norm_groups((2, 4))


def test_a_model_saved_with_one_channel_per_group_loads_and_samples_unchanged():
    """The bundled digits model was saved by the old preset (32 groups on 32 channels): its config is kept as saved,
    and the ancestral sampler gives finite images with its own scheduler config (clip_sample off, as saved)."""
    saved = json.loads((Path(DIGITS_MODEL) / "unet" / "config.json").read_text())
    model = load_pipeline(DIGITS_MODEL)
    assert model.unet.config.norm_num_groups == saved["norm_num_groups"] == 32
    assert min(group_sizes(model.unet)) == 1
    assert model.scheduler.config.clip_sample is False
    fresh = UNet2DModel.from_config(saved)
    assert fresh.config.norm_num_groups == 32
    x = sample(model.unet, model.scheduler, 2, sampler="ddim", num_inference_steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
