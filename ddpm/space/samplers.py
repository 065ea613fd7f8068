"""Which sampler, and what each trades: one x_T and one generator through every sampler the Space offers, one row
each (the final images and x̂0 at a few t they all visit), with the network calls, the seconds here and the
fashion-FD the model's card measured for it."""

from __future__ import annotations

import re
import time

import torch
from PIL import Image

from ..hub import LoadedModel
from ..sampling import trajectory, walk
from ..visualize import captioned, grid, side_by_side, stacked
from .runtime import RunClock, Serialized
from .settings import MAX_SEED, cost_of

MAX_SAMPLERS_IMAGES = 4
SHARED_T = 3  # x̂0 shown at this many t that every row visits


def plan(T: int, steps: int, eta: float) -> list[tuple[str, str, dict]]:
    """(row name, the card's row for it, `trajectory` keywords): ancestral over all T steps, then the few-step
    samplers at `steps`; DDIM at eta 0 (deterministic) and at the visitor's eta (1: respaced DDPM's very steps)."""
    few = {"num_inference_steps": steps}
    rows = [
        (f"DDPM ancestral, all {T} steps (Algorithm 2)", "ancestral", {"sampler": "ddpm"}),
        (f"DDPM respaced, {steps} steps", f"respaced-{steps}", {"sampler": "respaced", **few}),
        (f"DDIM, eta 0, {steps} steps", f"ddim-{steps}", {"sampler": "ddim", "eta": 0.0, **few}),
        (f"DDIM, eta {eta:g}, {steps} steps", f"ddim-{steps} eta {eta:g}", {"sampler": "ddim", "eta": eta, **few}),
        (f"DPM-Solver++ 2M, {steps} steps", f"dpm2m-{steps}", {"sampler": "dpm2m", **few}),
    ]
    return [r for i, r in enumerate(rows) if i != 3 or eta != 0.0]


def card_scores(model: LoadedModel) -> dict[str, str]:
    """The fashion-FD of each sampler row in the model's card ("| ddim-50 | 50 | 0 | 5.89 ± 1.17 | 2.71 |"), by row."""
    card = model.path / "README.md"
    text = card.read_text(errors="replace") if card.is_file() else ""
    return {
        m[1]: m[2] for m in re.finditer(r"^\| ([a-z0-9 .-]{3,40}) \| \d+ \| \d+ \| ([\d.]+ ± [\d.]+) \| [\d.]+ \|$", text, re.M)
    }


def check_samplers(model: LoadedModel, seed, num_images, steps, eta, limit_s: float) -> tuple[int, int, int, float]:
    try:
        seed, n, steps, eta = int(seed), int(num_images), int(steps), float(eta)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("seed, number of images and steps must be whole numbers, eta a number") from None
    T = model.scheduler.num_train_timesteps
    if not (0 <= seed <= MAX_SEED and 1 <= n <= MAX_SAMPLERS_IMAGES and 1 <= steps <= T and 0.0 <= eta <= 1.0):
        raise ValueError(f"pick a seed up to {MAX_SEED}, 1 to {MAX_SAMPLERS_IMAGES} images, 1 to {T} steps, eta 0 to 1")
    calls = T + 4 * steps
    if cost_of(model).seconds(n, calls) > 10 * limit_s:  # far over even at the best speed measured: refused
        raise ValueError(f"{n} image(s) through all five samplers ({calls} network calls) would take far longer than this "
                         f"Space's {limit_s:g} s a request: use fewer images or steps")  # fmt: skip
    return seed, n, steps, eta


def samplers_view(model: LoadedModel, seed, num_images, steps, eta, limit_s: float = 60.0):
    """Every sampler from the same x_T and generator: one picture, a row a sampler (named below it), and a markdown
    table. The rows share the request's limit (`RunClock`): a row not reached in it says so."""
    seed, n, steps, eta = check_samplers(model, seed, num_images, steps, eta, limit_s)
    T, scheduler = model.scheduler.num_train_timesteps, model.scheduler
    shared = walk(T, "ddim", steps)[:: max(1, steps // SHARED_T)][1 : SHARED_T + 1]  # t every walk visits
    scores, network = card_scores(model), Serialized(model.unet)
    clock, pictures, finals = RunClock(network, limit_s), [], {}
    table = ["| sampler | network calls | seconds here | fashion-FD (model card, 1000 images) |", "|---|---|---|---|"]
    for name, key, kwargs in plan(T, steps, eta):
        if clock.over():
            table.append(f"| {name} | - | not run: the request's {limit_s:g} s were spent | {scores.get(key, '-')} |")
            continue
        calls, start = network.calls, time.perf_counter()
        frames = trajectory(network, scheduler, n, generator=torch.Generator().manual_seed(seed), **kwargs)
        x0, before = {}, None
        for frame in frames:  # a frame's x̂0 is the one the network made at the frame before it
            if before is not None and before.t - 1 in shared:
                x0[before.t - 1] = frame.pred_original_sample
            before = frame
        finals[key] = before.sample
        seconds = time.perf_counter() - start
        pictures.append(captioned(row_picture(model, before.sample, x0, shared, n), name))
        table.append(f"| {name} | {network.calls - calls} | {seconds:.1f} | {scores.get(key, '-')} |")
    return stacked(pictures), "\n".join(table) + "\n\n" + READING + same_pictures(finals, steps, eta)


def same_pictures(finals: dict, steps: int, eta: float) -> str:
    """At eta 1, DDIM's step is respaced DDPM's: the two rows end on the same pictures (said with the difference)."""
    a, b = finals.get(f"respaced-{steps}"), finals.get(f"ddim-{steps} eta {eta:g}")
    if eta != 1.0 or a is None or b is None:
        return ""
    return f" Here, at eta 1: respaced DDPM and DDIM end on the same pictures, max |difference| {float((a - b).abs().max()):.1e}."


def row_picture(model: LoadedModel, final: torch.Tensor, x0: dict, shared: list[int], n: int) -> Image.Image:
    """One sampler's row: its final images, then the network's x̂0 at each shared t (the walk's frame after t)."""
    scale = max(2, 160 // model.unet.config.sample_size)  # a caption fits under one image
    picture = captioned(grid(final.clamp(-1, 1), nrow=n, scale=scale), "x_0")
    for t in shared:
        if t in x0:
            shown = captioned(grid(x0[t].clamp(-1, 1), nrow=n, scale=scale), f"predicted x_0, t = {t + 1}")
            picture = side_by_side(picture, shown)
    return picture


READING = (
    "Every row starts from the same x_T and draws its step noise from the same generator. Ancestral sampling (the "
    "paper's Algorithm 2) takes every step; the others skip: respaced DDPM keeps the stochastic step, DDIM with eta 0 "
    "is deterministic (an ODE), DDIM's eta dials between the two (at eta 1 its steps are respaced DDPM's, the same "
    "pictures), and DPM-Solver++ 2M is a second-order ODE step: DDIM's calls, close to all-T quality. x̂0 is the "
    "network's guess of x_0 on the way, at t that every row visits."
)
