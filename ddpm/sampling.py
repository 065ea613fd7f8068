"""Sampling: the reverse process from x_T ~ N(0, I) to x_0, one frame at a time (article section 3.3).

`trajectory(...)` is a generator of `Frame`s (x_T first, x_0 last) that the app streams; `sample(...)` runs it
to the end and returns x_0. Four samplers over the same trained network:

- "ddpm": Algorithm 2 of Ho et al., all T steps, x_{t-1} = mu_theta(x_t, t) + sigma_t z.
- "respaced": the same step over N evenly spaced timesteps, with the shortened chain's betas
  (Nichol & Dhariwal 2021, "timestep respacing"); N = T is exactly "ddpm".
- "ddim": DDIM (Song et al. 2021) over N timesteps; eta = 0 deterministic, eta = 1 the respaced DDPM.
- "dpm2m": DPM-Solver++(2M) (Lu et al. 2022) over N timesteps: DDIM's deterministic step made second order by
  reusing the previous step's x̂0; the same network calls, a smaller discretisation error.

`precision="bf16"` runs the network under CPU/CUDA autocast to bfloat16 (the scheduler's arithmetic stays in the
sample's dtype): about 1.2-1.5x faster on CPUs with native bfloat16 (AVX512_BF16, AMX), slightly different images.
"fp32" (the default) is the mode whose images equal diffusers'.

Random numbers are drawn in diffusers' order (the initial noise, then one draw per step with t > 0), so "ddpm"
with a seeded CPU `torch.Generator` gives diffusers' `DDPMPipeline` images for that seed.
"""

from __future__ import annotations

import contextlib
import functools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .scheduler import DDPMScheduler, randn

SAMPLERS = ("ddpm", "respaced", "ddim", "dpm2m")
PRECISIONS = ("fp32", "bf16")


@functools.cache
def bf16_is_native() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512_BF16 or AMX): only then does bf16 sampling pay on CPU."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def network_precision(precision: str, device: torch.device):
    """The context the network runs in: autocast to bfloat16 for "bf16", nothing for "fp32"."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@dataclass
class Frame:
    """One state of the reverse process.

    `t` is the article's time of `sample`: T for the initial noise x_T, 0 for the final image x_0.
    `pred_original_sample` is the network's estimate of x_0 made on the way to this frame (None for x_T).
    """

    step: int
    num_steps: int
    t: int
    sample: torch.Tensor
    pred_original_sample: torch.Tensor | None


def sampling_timesteps(num_train_timesteps: int, num_steps: int) -> list[int]:
    """N timesteps evenly spaced over [0, T-1], first T-1 and last 0, in the order they are walked (descending).

    This is improved-diffusion's respacing: the walk always starts from the most noisy timestep T-1, so x_T is
    really N(0, I) at any N (diffusers' "leading" spacing would start at T - T/N).
    """
    T = num_train_timesteps
    if not 1 <= num_steps <= T:
        raise ValueError(f"the number of steps must be between 1 and {T} for this model, got {num_steps}")
    if num_steps == 1:
        return [T - 1]
    ts = np.unique(np.round(np.linspace(0, T - 1, num_steps)).astype(np.int64))
    return ts[::-1].tolist()


def walk(num_train_timesteps: int, sampler: str, num_inference_steps: int | None = None, start: int | None = None) -> list[int]:
    """The 0-based timesteps a sampler visits, descending, from article time `start` (default T) down to 0.

    "ddpm" walks every one of them; "respaced", "ddim" and "dpm2m" walk `num_inference_steps` (default 50, at most `start`)
    evenly spaced ones, always beginning with the noisiest, start - 1.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
    T = num_train_timesteps
    start = T if start is None else int(start)
    if not 1 <= start <= T:
        raise ValueError(f"the reverse process starts at a t between 1 and {T}, got {start}")
    if sampler == "ddpm":
        return list(range(start - 1, -1, -1))
    return sampling_timesteps(start, min(num_inference_steps or 50, start))


def frame_times(timesteps: list[int]) -> list[int]:
    """The article's time of each frame `trajectory` yields over `timesteps`: start, ..., 0 (x_0)."""
    return [timesteps[0] + 1, *(t + 1 for t in timesteps[1:]), 0]


def _model_config(model):
    return getattr(model, "config", None)


def sample_shape(model, batch_size: int) -> tuple[int, ...]:
    """(batch, channels, height, width) of a UNet2DModel's samples."""
    cfg = _model_config(model)
    size = cfg.sample_size
    hw = (size, size) if isinstance(size, int) else tuple(size)
    return (batch_size, cfg.in_channels, *hw)


@torch.inference_mode()
def trajectory(
    model,
    scheduler: DDPMScheduler,
    batch_size: int = 1,
    *,
    sampler: str = "ddpm",
    num_inference_steps: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    shape: tuple[int, ...] | None = None,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    start: tuple[torch.Tensor, int] | None = None,
    clip_sample: bool | None = None,
) -> Iterator[Frame]:
    """Yield x_T, then every x_t the sampler visits, down to x_0 (num_steps + 1 frames).

    `num_inference_steps` defaults to T for "ddpm" (which ignores any other value) and to 50 otherwise;
    `precision` is "fp32" (diffusers' images) or "bf16" (the network under autocast). `start = (x_t, t)` begins
    the reverse process at the article's time t from a given x_t (e.g. a noised image) instead of x_T ~ N(0, I).
    `clip_sample` clips (True) or does not clip (False) each step's predicted x_0 to [-1, 1]; None keeps the
    scheduler's own `clip_sample`.
    """
    if clip_sample is not None:
        scheduler = scheduler.with_clip_sample(clip_sample)
    T = scheduler.num_train_timesteps
    timesteps = walk(T, sampler, num_inference_steps, None if start is None else start[1])
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be between 0 and 1, got {eta}")

    params = next(model.parameters(), None) if hasattr(model, "parameters") else None
    device = torch.device(device) if device is not None else (params.device if params is not None else torch.device("cpu"))
    dtype = params.dtype if params is not None else torch.float32
    shape = shape or sample_shape(model, batch_size)
    autocast = network_precision(precision, device)

    x = randn(shape, generator, device, dtype) if start is None else start[0].to(device, dtype)
    n, last = len(timesteps), None
    yield Frame(step=0, num_steps=n, t=timesteps[0] + 1, sample=x, pred_original_sample=None)
    for i, t in enumerate(timesteps):
        prev_t = timesteps[i + 1] if i + 1 < n else -1
        t_in = torch.tensor(t, device=device)
        with autocast:
            out = model(x, t_in)
        model_output = (out.sample if hasattr(out, "sample") else out).to(x.dtype)
        if sampler == "ddim":
            step = scheduler.ddim_step(model_output, t, x, prev_t, eta=eta, generator=generator)
        elif sampler == "dpm2m":
            step = scheduler.dpm_solver_2m_step(model_output, t, x, prev_t, last)
            last = (step.pred_original_sample, t)
        else:
            step = scheduler.p_sample(model_output, t, x, generator, prev_t=prev_t)
        x = step.prev_sample
        yield Frame(step=i + 1, num_steps=n, t=prev_t + 1, sample=x, pred_original_sample=step.pred_original_sample)


def sample(model, scheduler: DDPMScheduler, batch_size: int = 1, **kwargs) -> torch.Tensor:
    """Run `trajectory` to the end and return x_0 (values in about [-1, 1])."""
    (last,) = deque(trajectory(model, scheduler, batch_size, **kwargs), maxlen=1)
    return last.sample
