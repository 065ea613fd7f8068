"""What a public Space agrees to serve: a model checked from its configs and file sizes before any weights are
read, then its cost measured on this machine; each request runs for at most `max_request_s` seconds of its own.

The budget is in the units a visitor pays, seconds on this hardware. A request is never refused on a guess: a run
that reaches the limit stops at its next step and keeps what it made (`RunClock` tells it when). When a model
loads, a few network calls are timed (`measure_cost`), again later and from real runs, the fastest kept (`Cost`):
the price shown before a run. Only a request that could not finish even at that best speed with a wide margin
(`REFUSE_FACTOR` x the limit) is refused upfront (`check_request`). The FLOP cap below only bounds what is worth
building and timing at all. The defaults fit Hugging Face's free CPU tier (2 vCPU,
16 GB); a GPU Space serves much more in the same seconds. Environment variables override:

    DDPM_MAX_WEIGHTS_MB         weights file size                    (default 200)
    DDPM_MAX_RESOLUTION         sample_size in pixels                (default 128)
    DDPM_MAX_CHANNELS           in/out channels                      (default 4)
    DDPM_MAX_TIMESTEPS          the scheduler's T                    (default 4000)
    DDPM_MAX_GFLOP_PER_STEP     one network call on one image        (default 50; google/ddpm-cifar10-32: 12.4)
    DDPM_MAX_REQUEST_S          seconds one request runs at the most (default 60: 16 images x 1000 steps of the
                                                                       bundled 28 px model take about 15 s here)
    DDPM_MODEL_CACHE_MB         parameters of the models kept loaded  (default 1024)
    DDPM_HUB_CACHE_MB           Hub models kept on disk, least recently used deleted first (default 2048)
    DDPM_CLIENT_UPLOAD_MB       bytes one client may upload in 10 minutes (default 200)
    DDPM_CLIENT_REQUESTS        requests one client may have queued or running at once (default 3)
    DDPM_DISK_MB                the Space's files on disk: run folders and Gradio's cache (default 1000)
    DDPM_DISK_AGE_MIN           minutes a result file is kept at the most                  (default 60)
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, fields

from ..models import build_on_meta, flops_per_image_step

REFUSE_FACTOR = 10  # a request predicted over this many times the limit, at the best measured speed, is refused

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
    max_gflop_per_step: float = 50.0
    max_request_s: float = 60.0
    model_cache_mb: float = 1024.0
    hub_cache_mb: float = 2048.0
    client_upload_mb: float = 200.0
    client_requests: int = 3
    disk_mb: float = 1000.0
    disk_age_min: float = 60.0

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
    betas = scheduler_config.get("trained_betas")
    if betas is not None and not isinstance(betas, list):
        raise OverBudget("its trained_betas is not a list of numbers")
    # trained_betas, when given, is the schedule: its length is T whatever num_train_timesteps says
    T = len(betas) if betas is not None else _as_int(scheduler_config.get("num_train_timesteps", 1000), "num_train_timesteps")
    if not 2 <= T <= limits.max_timesteps:
        raise OverBudget(f"its schedule has T = {T} steps; this Space serves T from 2 to {limits.max_timesteps}")
    channels = unet_config.get("block_out_channels", [])
    if (
        not isinstance(channels, list | tuple)
        or not 1 <= len(channels) <= MAX_LEVELS
        or any(not 1 <= _as_int(c, "block_out_channels") <= MAX_BLOCK_CHANNELS for c in channels)
        or not 1 <= _as_int(unet_config.get("layers_per_block", 2), "layers_per_block") <= MAX_LAYERS_PER_BLOCK
    ):
        raise OverBudget("its UNet is larger than this Space builds (levels, layers per block or channels)")
    try:
        params = sum(p.numel() for p in build_on_meta(unet_config).parameters())
        if weights_bytes < 2 * params:  # 2 bytes a parameter at the least (fp16/bf16): weights missing from the file
            raise OverBudget(
                f"its config makes {params / 1e6:.1f} M parameters but its weights file ({_size(weights_bytes)}) holds "
                f"at most {weights_bytes / 2e6:.2f} M: the weights do not match the config"
            )
        flops = flops_per_image_step(unet_config)
    except OverBudget:
        raise
    except Exception as e:  # a config diffusers cannot build
        raise OverBudget(
            f"its unet/config.json does not describe a UNet2DModel diffusers can build ({type(e).__name__})"
        ) from None
    if flops / 1e9 > limits.max_gflop_per_step:
        raise OverBudget(
            f"one step on one image costs {flops / 1e9:.1f} GFLOP; this Space serves up to {limits.max_gflop_per_step:g} GFLOP"
        )
    return flops


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} kB"


@dataclass(frozen=True)
class Cost:
    """Seconds one network call takes on this machine, measured: `fixed` + `per_image` x batch size."""

    fixed: float
    per_image: float

    def seconds(self, images: int, calls: int) -> float:
        return calls * (self.fixed + self.per_image * images)

    def images_that_fit(self, calls: int, seconds: float) -> int:
        """The most images (up to 16) whose `calls` network calls fit in `seconds`; 0 if not even one does."""
        fits = [n for n in range(1, 17) if self.seconds(n, calls) <= seconds * (1 + 1e-9)]
        return max(fits, default=0)

    def steps_that_fit(self, images: int, seconds: float) -> int:
        return int(seconds / max(self.seconds(images, 1), 1e-12) + 1e-9)

    def best(self, other: Cost) -> Cost:
        """The faster of two measurements, compared where they were made (1 and 4 images) and kept whole: a
        machine is never slower than it was once measured to be (a timing made while other work shared the cores
        reads many times too slow). Mixing the smaller term of each would price below both, as noise splits a
        timing between `fixed` and `per_image` differently each time."""
        return min(self, other, key=lambda c: c.seconds(1, 1) + c.seconds(4, 1))

    def learned(self, images: int, calls: int, seconds: float) -> Cost:
        """This cost, or a faster one where a real run of `images` x `calls` network calls took `seconds`, less
        than this cost predicts (both terms scaled down alike); a slower run changes nothing."""
        predicted = self.seconds(images, calls)
        if calls < 1 or not 0 < seconds < predicted:
            return self
        ratio = seconds / predicted
        return Cost(fixed=self.fixed * ratio, per_image=self.per_image * ratio)


HEAVY_CALL_S = 0.5  # a network whose first call takes longer is priced from that one call: timing it costs little


def measure_cost(unet, repeats: int = 3, precision: str = "fp32", turn=contextlib.nullcontext) -> Cost:
    """Time the network on this machine at batch 1 and batch 4 (in `precision`, after one warm-up call; the best
    of `repeats`) and fit `fixed + per_image x batch`: what a request's images x steps will cost here. A heavy
    network (its first call over HEAVY_CALL_S) is priced from that call alone, as `per_image` (its warm-up only
    prices it higher): 20 image-steps of a 46 GFLOP model took 73 s on 2 cores. Each call runs inside `turn()`
    (a Space passes its network lock, so visitors' steps go on between the calls)."""
    import time

    import torch

    from ..sampling import network_precision

    cfg = unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
    param = next(unet.parameters())

    def timed(batch: int) -> float:
        x = torch.zeros(batch, cfg.in_channels, size, size, device=param.device, dtype=param.dtype)
        t = torch.full((batch,), 10, device=param.device)
        with turn(), torch.inference_mode(), network_precision(precision, param.device):
            start = time.perf_counter()
            unet(x, t)
            if param.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

    try:
        first = timed(1)
        if first > HEAVY_CALL_S:
            return Cost(fixed=0.0, per_image=first)
        one = min(timed(1) for _ in range(repeats))
        timed(4)
        four = min(timed(4) for _ in range(repeats))
    except RuntimeError:  # e.g. ZeroGPU, where CUDA runs only inside a GPU call: priced from FLOPs at 10 TFLOP/s
        return Cost(fixed=0.005, per_image=max(flops_per_image_step(dict(cfg)), 1.0) / 10e12)
    per_image = max((four - one) / 3, one / 20)  # more images never cost nothing (timing noise can hide the growth)
    return Cost(fixed=max(one - per_image, 0.0), per_image=per_image)


def check_request(
    images: int, network_calls: int, cost: Cost, limits: Limits, change: str = "fewer images or fewer steps"
) -> None:
    """Refuse upfront only a request that could not finish even at this machine's best measured speed within
    `REFUSE_FACTOR` x the limit, saying what would finish and which controls (`change`) get there. Anything
    less runs, and stops at the limit keeping what it made."""
    seconds = cost.seconds(images, network_calls)
    if seconds <= REFUSE_FACTOR * limits.max_request_s:
        return
    fit = cost.images_that_fit(network_calls, limits.max_request_s)
    hint = (
        f"{fit} image(s) at {network_calls} steps finish within it"
        if fit
        else f"1 image finishes up to {cost.steps_that_fit(1, limits.max_request_s)} steps within it"
    )
    raise OverBudget(
        f"{images} image(s) x {network_calls} steps would take about {seconds:.0f} s here, far over this Space's "
        f"{limits.max_request_s:g} s a request: {hint} (use {change})"
    )
