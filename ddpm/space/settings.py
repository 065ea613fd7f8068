"""What a visitor asks of a sampling run (seed, images, sampler, steps, eta, precision, clipping), checked before any
work: every bad value is a ValueError whose one line says what to change."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..hub import LoadedModel
from ..sampling import bf16_is_native, walk
from .limits import Cost, Limits, check_request, measure_cost
from .runtime import Serialized

MAX_IMAGES = 16
MAX_SEED = 2**32 - 1
SAMPLER_LABELS = {
    "DDPM ancestral, all T steps (Algorithm 2)": "ddpm",
    "DDPM respaced (fewer steps)": "respaced",
    "DDIM (fewer steps, eta)": "ddim",
    "DPM-Solver++ 2M (fewer steps, second order)": "dpm2m",
}
FAST_SAMPLER = "dpm2m"  # the default: DDIM's network calls, a second-order step (benchmarks/RESULTS.md measures both)
SAMPLER_NAMES = {"ddpm": "ancestral", "respaced": "respaced DDPM", "ddim": "DDIM", "dpm2m": "DPM-Solver++ 2M"}


def shown(text: str, limit: int = 60) -> str:
    """What a visitor typed, safe to echo: one line, at most `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


PRECISION_LABELS = {
    "fp32: full precision (ancestral: diffusers' exact images)": "fp32",
    "bf16: faster on CPUs with bfloat16": "bf16",
}
CLIP_LABELS = {
    "clip x̂0 to [-1, 1] (diffusers' default)": True,
    "no clipping, as Algorithm 2 of the paper writes it": False,
}
CLIP_NOTE = (
    "At every step the network's estimate of the clean image, x̂0, lies in the data's range [-1, 1] once clipped; "
    "the next x_t is computed from that estimate. Without clipping (Algorithm 2 as written) a small network's "
    "errors can compound over the steps into saturated, all-black or all-white pictures, fastest with few steps."
)


def default_precision() -> str:
    """The Generate tab's default: bf16 where this CPU computes it natively (it pays there), else fp32."""
    label = {v: k for k, v in PRECISION_LABELS.items()}
    return label["bf16" if bf16_is_native() else "fp32"]


@dataclass(frozen=True)
class Settings:
    seed: int
    num_images: int
    sampler: str
    num_steps: int
    eta: float
    show_x0: bool
    precision: str = "fp32"
    clip: bool = True

    @property
    def sampler_name(self) -> str:
        """The sampler in a few words, as the status line names it ("DDIM, eta 0.5")."""
        name = SAMPLER_NAMES[self.sampler]
        return f"{name}, eta {self.eta:g}" if self.sampler == "ddim" and self.eta else name


def check_settings(model: LoadedModel, seed, num_images, sampler, num_steps, eta, show_x0, precision="fp32",
                   limits: Limits | None = None, clip=True) -> Settings:  # fmt: skip
    """Validate what a visitor (or an API caller) asked for, and its work against `limits`; ValueError says what
    to change."""
    T = model.scheduler.num_train_timesteps
    sampler = SAMPLER_LABELS.get(sampler, sampler)
    if sampler not in SAMPLER_LABELS.values():
        raise ValueError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLER_LABELS)}")
    precision = PRECISION_LABELS.get(precision, precision)
    if precision not in PRECISION_LABELS.values():
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISION_LABELS)}")
    clip = CLIP_LABELS.get(clip, clip) if isinstance(clip, str) else clip
    if not isinstance(clip, bool):
        raise ValueError(f"unknown clipping {shown(clip)!r}: choose one of {', '.join(CLIP_LABELS)}")
    try:
        seed, num_images, num_steps, eta = int(seed), int(num_images), int(num_steps), float(eta)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("seed, number of images and steps must be whole numbers, eta a number") from None
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"the seed must be between 0 and {MAX_SEED}")
    if not 1 <= num_images <= MAX_IMAGES:
        raise ValueError(f"the number of images must be between 1 and {MAX_IMAGES}, got {num_images}")
    if sampler == "ddpm":
        num_steps = T
    elif not 1 <= num_steps <= T:
        raise ValueError(f"the number of steps must be between 1 and {T} (this model's T), got {num_steps}")
    if not 0.0 <= eta <= 1.0 or math.isnan(eta):
        raise ValueError(f"eta must be between 0 and 1, got {eta}")
    settings = Settings(seed, num_images, sampler, num_steps, eta, bool(show_x0), precision, clip)
    if limits is not None:
        check_work(model, settings, limits)
    return settings


REMEASURE_S = 30.0  # a model's cost is timed again, when the network is idle, at most this often ...
REMEASURE_MAX_GFLOP = 5.0  # ... where timing it (20 image-steps) costs less (a heavy model learns from its runs alone)
TURN_S = 2.0  # the longest one turn of the network should be: a step of more images runs as several turns


def _attribute(precision: str) -> str:
    """Where a model keeps its price in `precision`, set here on the loaded model: model.cost (fp32) or .cost_bf16."""
    return "cost" if precision == "fp32" else f"cost_{precision}"


def cost_of(model: LoadedModel, precision: str = "fp32") -> Cost:
    """What a network call of this model costs on this machine in `precision`, the fastest of what was measured:
    timed when it loads (both precisions, by the registry), timed again when no run holds the network (at most
    every REMEASURE_S, where that is cheap), and learned from the Space's own runs (`learn_cost`). One timing is
    not the machine's speed: made while other work shares the cores, it reads many times too slow, and keeping the
    fastest lets that pass. bf16 is priced apart: on a CPU it is slower than fp32 for a few images, faster for
    many, and 3x slower on some models. Every timed call takes its turn of the network (`Serialized.lock`)."""
    cheap = 0 < 20 * getattr(model, "flops_per_step", 0.0) < REMEASURE_MAX_GFLOP * 1e9
    now, cost = time.monotonic(), getattr(model, _attribute(precision), None)
    if cost is None:
        cost = measure_cost(model.unet, precision=precision, turn=lambda: Serialized.lock)
    elif cheap and now - getattr(model, "timed", {}).get(precision, now) > REMEASURE_S and Serialized.lock.acquire(False):
        try:  # idle: no visitor's step waits for this
            cost = cost.best(measure_cost(model.unet, precision=precision))
        finally:
            Serialized.lock.release()
    else:
        return cost
    setattr(model, _attribute(precision), cost)
    model.timed = {**getattr(model, "timed", {}), precision: now}
    return cost


def learn_cost(model: LoadedModel, settings: Settings, calls: int, seconds: float) -> None:
    """A run of `calls` network calls on the request's images held the server `seconds` (its rendering included):
    where that is faster than the price it paid predicts, that price learns it."""
    cost = cost_of(model, settings.precision).learned(settings.num_images, calls, seconds)
    setattr(model, _attribute(settings.precision), cost)


def turn_size(model: LoadedModel, precision: str = "fp32") -> int:
    """The most images one turn of the network takes (`Serialized`'s max_batch): as many as run in TURN_S here,
    at least 1. The bundled model runs 16 in one; a 46 GFLOP model one at a time, so others' steps go between."""
    return max(1, cost_of(model, precision).images_that_fit(1, TURN_S))


def network_calls(model: LoadedModel, settings: Settings, start: int | None = None) -> int:
    """The network calls the request's sampler makes from `start` (a drawing noised to t; default T) down to 0."""
    if start == 0:
        return 0  # no steps: the input itself
    return len(walk(model.scheduler.num_train_timesteps, settings.sampler, settings.num_steps, start))


def predicted_seconds(model: LoadedModel, settings: Settings, start: int | None = None) -> float:
    """About how long the request takes here, from the model's measured cost (no one else generating)."""
    return cost_of(model, settings.precision).seconds(settings.num_images, network_calls(model, settings, start))


def fewer(settings: Settings) -> str:
    """The controls that make a request shorter, in the visitor's words (ancestral sampling has no steps to cut)."""
    if settings.sampler == "ddpm":
        return "fewer images, or a sampler with fewer steps"
    return "fewer images or fewer steps"


def check_work(model: LoadedModel, settings: Settings, limits: Limits, start: int | None = None) -> None:
    """Refuse only a request far beyond the budget at the best measured speed (`check_request`): its images x
    `network_calls`. Anything else runs, and stops at the limit."""
    calls = network_calls(model, settings, start)
    if calls:
        check_request(settings.num_images, calls, cost_of(model, settings.precision), limits, fewer(settings))


def budget_note(model: LoadedModel, limits: Limits) -> str:
    """What runs here and about how long, in plain words, from the model's measured cost (fp32): 50 steps of a fast
    sampler and all T steps for 16 images, against a request's limit (said when a model loads, so a visitor knows
    what finishes)."""
    cost, T = cost_of(model), model.scheduler.num_train_timesteps
    step_ms = cost.seconds(1, 1) * 1000
    budget = limits.max_request_s

    def takes(calls: int) -> str:
        seconds = cost.seconds(MAX_IMAGES, calls)
        text = f"about {seconds:.0f} s for {MAX_IMAGES} images"
        if seconds <= budget:
            return text
        n = cost.images_that_fit(calls, budget)
        return text + (f" ({n} finish within the limit)" if n else f" (1 image gets {cost.steps_that_fit(1, budget)} steps in)")

    fast = min(T, 50)
    device = next(model.unet.parameters()).device.type
    return (
        f"**What runs here, and how long**: {fast} steps of a fast sampler (DPM-Solver++ 2M or DDIM) take {takes(fast)}; "
        f"all {T} steps of the paper's own sampler (Algorithm 2) {takes(T)}. A run stops after {budget:g} s, this Space's "
        f"limit for one request, and keeps what it made. On this machine ({device}) one step of one image takes about "
        f"{step_ms:.0f} ms."
    )
