"""The teaching views: the forward process q(x_t | x_0) at any t, the noise schedule, the strength of a
drawing's noising, and the variational bound term by term."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image

from ..hub import LoadedModel
from ..likelihood import BoundTerms, bound_terms
from ..visualize import auto_scale, grid, side_by_side
from .frames import frame_caption, log_snr_frames
from .limits import Limits, check_request
from .runtime import RunClock, Serialized
from .settings import cost_of, turn_size


def strength_note(model: LoadedModel, t: int) -> str:
    """What starting the reverse process at time t keeps of the drawing: abar_t, the SNR, and in words."""
    T = model.scheduler.num_train_timesteps
    if not 0 <= int(t) <= T:
        raise ValueError(f"t must be between 0 and {T}")
    if int(t) == 0:
        return "**t = 0**: no noise, nothing for the model to do: the result is your drawing."
    abar = float(model.scheduler.alphas_cumprod[int(t) - 1])
    snr = abar / (1 - abar)
    if snr >= 1:
        words = "more signal than noise: the model keeps your drawing and cleans it up"
    elif snr >= 0.01:
        words = "more noise than signal: only the rough shape of your drawing survives"
    else:
        words = "almost pure noise: the model forgets your drawing and makes an image of its own"
    return f"**t = {int(t)}** of {T}: ᾱ_t = {abar:.4f}, SNR = ᾱ_t / (1 − ᾱ_t) = {snr:.3g}: {words}."


def _x_t(model: LoadedModel, x0: torch.Tensor, t: int, seed: int) -> tuple[torch.Tensor, float]:
    """(x_t, abar_t) at the article's time t (0 = the data itself), eps drawn from `seed`."""
    s = model.scheduler
    T = s.num_train_timesteps
    if not 0 <= int(t) <= T:
        raise ValueError(f"t must be between 0 and {T}")
    if int(t) == 0:
        return x0, 1.0
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed)))
    return s.q_sample(x0, int(t) - 1, eps), float(s.alphas_cumprod[int(t) - 1])


def forward_view(model: LoadedModel, x0: torch.Tensor, t: int, seed: int = 0) -> tuple[Image.Image, str]:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps at the article's time t (0 = the data), beside x_0."""
    xt, abar = _x_t(model, x0, t, seed)
    scale = auto_scale(x0.shape[-1], 192)
    snr = abar / (1 - abar) if abar < 1 else math.inf
    picture = side_by_side(grid(x0, scale=scale, padding=0), grid(xt.clamp(-1, 1), scale=scale, padding=0))
    text = (
        f"**t = {int(t)}** of T = {model.scheduler.num_train_timesteps}: q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) "
        f"with ᾱ_t = {abar:.5f}, √ᾱ_t = {math.sqrt(abar):.4f} (signal kept), "
        f"√(1 − ᾱ_t) = {math.sqrt(1 - abar):.4f} (noise sd), SNR = ᾱ_t / (1 − ᾱ_t) = {snr:.4g}. Left: x_0, right: x_t."
    )
    return picture, text


def forward_strip(model: LoadedModel, x0: torch.Tensor, count: int = 9, seed: int = 0) -> list[tuple[Image.Image, str]]:
    """x_t at `count` times from t = 0 to T, all with the same eps (the closed form, not a chain), chosen as the
    gallery's are: evenly in log-SNR where the picture goes, then x_T (evenly in t, every frame from t ~ 375 of a
    linear T = 1000 was the same grey noise). Captioned with t and SNR."""
    T = model.scheduler.num_train_timesteps
    scale = auto_scale(x0.shape[-1], 96)
    times = list(range(T, -1, -1))
    shown = sorted(times[i] for i in log_snr_frames(model.scheduler, times, count))
    return [
        (grid(_x_t(model, x0, t, seed)[0].clamp(-1, 1), scale=scale, padding=0), frame_caption(model.scheduler, t)) for t in shown
    ]


def schedule_figure(model: LoadedModel):
    """beta_t, abar_t (with sqrt(abar_t)) and SNR(t) over t = 1..T, as a matplotlib figure."""
    from matplotlib.figure import Figure

    s = model.scheduler
    t = np.arange(1, s.num_train_timesteps + 1)
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax1.plot(t, s.betas.numpy())
    ax1.set(title=r"$\beta_t$", xlabel="t")
    ax2.plot(t, s.alphas_cumprod.numpy(), label=r"$\bar\alpha_t$")
    ax2.plot(t, s.sqrt_alphas_cumprod.numpy(), label=r"$\sqrt{\bar\alpha_t}$")
    ax2.set(title=r"$\bar\alpha_t = \prod_{s \leq t} \alpha_s$", xlabel="t", ylim=(0, 1.02))
    ax2.legend()
    ax3.semilogy(t, s.snr().numpy())
    ax3.set(title=r"SNR$(t) = \bar\alpha_t\,/\,(1 - \bar\alpha_t)$", xlabel="t")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    return fig


def schedule_report(model: LoadedModel) -> str:
    s = model.scheduler
    d = s.diagnostics()
    text = (
        f"T = {d.num_train_timesteps}, beta from {float(s.betas[0]):.2e} to {float(s.betas[-1]):.4f} "
        f"({s.config.beta_schedule}). At t = T: ᾱ_T = {d.alphas_cumprod_T:.3e}, √ᾱ_T = "
        f"{d.sqrt_alphas_cumprod_T:.4f}, SNR(T) = {d.snr_T:.3e}; prior KL(q(x_T | x_0) ‖ N(0, I)) = "
        f"{d.prior_kl_bits:.3e} bits/dim for unit-variance data."
    )
    return text + (f"\n\n⚠️ {d.warning}" if d.warning else "\n\n✅ x_T is close to N(0, I): sampling can start from pure noise.")


def likelihood_view(model: LoadedModel, x0: torch.Tensor, seed: int = 0, limits: Limits | None = None,
                    every_s: float = 0.5) -> Iterator[tuple[object | None, str]]:  # fmt: skip
    """The bound L_T + sum L_{t-1} + L_0 (bits/dim) on a batch: yields (None, a progress line) about every `every_s`
    seconds while the T network calls run, then (a chart of every term, a summary). A caller that stops iterating
    stops the work before the next network call (Gradio does, when a visitor cancels). With `limits`, a batch far
    over the request limit is refused at once, and a computation that reaches the limit stops there and shows the
    terms it has."""
    limit = None
    if limits is not None:
        check_request(x0.shape[0], model.scheduler.num_train_timesteps, cost_of(model), limits, "fewer images")
        limit = limits.max_request_s
    return _likelihood_steps(model, x0, seed, every_s, limit)


def _likelihood_steps(model: LoadedModel, x0: torch.Tensor, seed: int, every_s: float, limit_s: float | None = None):
    T = model.scheduler.num_train_timesteps
    network = Serialized(model.unet, turn_size(model))
    clock = RunClock(network, limit_s)
    steps = bound_terms(network, model.scheduler, x0, generator=torch.Generator().manual_seed(int(seed)))
    last, stop = time.monotonic(), None
    while True:
        try:
            done = steps.send(stop)
        except StopIteration as end:
            terms = end.value
            break
        stop = clock.over() or None  # True: the generator returns the terms it has
        if not stop and time.monotonic() - last >= every_s:
            last = time.monotonic()
            yield None, f"computing the bound: {done} of {T} timesteps done (t = {T - done})"
    yield bound_chart(terms, x0.shape[0], clock.seconds)


def bound_chart(terms: BoundTerms, n: int, seconds: float = 0.0):
    """A chart of every term of the bound over t and of the totals, and a one-paragraph summary; for a
    computation stopped at the request limit, the terms it has and what is missing."""
    from matplotlib.figure import Figure

    s = terms.summary()
    per_t = terms.terms.mean(0).numpy()
    T = len(per_t)
    ts = terms.timesteps.numpy()
    ts = ts[ts >= 1]  # the L_{t-1} terms computed (0-based index t is the article's time t + 1)
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(3, 1))
    ax1.semilogy(
        ts + 1,
        np.clip(per_t[ts], 1e-12, None),
        label=r"$L_{t-1} = KL(q(x_{t-1} \mid x_t, x_0)\ \|\ p_\theta(x_{t-1} \mid x_t))$",
    )
    ax1.set(title="terms of the bound over t (bits/dim)", xlabel="t")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    if not terms.complete:
        ax1.set_xlim(1, T + 1)
        ax2.bar([r"$L_T$", r"$\sum L_{t-1}$ so far"], [s["L_T"], s["sum_L_t-1"]], color=["#999", "#4c72b0"])
        ax2.set(title="bits/dim (incomplete)")
        first = int(terms.timesteps[0]) + 1
        text = (
            f"**Stopped at t = {first}** after {len(terms.timesteps)} of {T} timesteps ({seconds:.0f} s, this Space's limit for "
            f"one request): the terms from t = {T} down to {first} are drawn, Σ L_{{t−1}} over them = {s['sum_L_t-1']:.3f} "
            f"bits/dim for {n} image(s). The bound needs all {T}: fewer images finish within the limit."
        )
        return fig, text
    names = [r"$L_T$", r"$\sum L_{t-1}$", r"$L_0$", "total"]
    values = [s["L_T"], s["sum_L_t-1"], s["L_0"], s["bits_per_dim"]]
    ax2.bar(names, values, color=["#999", "#4c72b0", "#dd8452", "#222"])
    ax2.set(title="bits/dim")
    ax2.tick_params(axis="x", labelrotation=30)
    text = (
        f"**{s['bits_per_dim']:.3f} bits/dim** (upper bound on −log₂ p(x_0) per dimension) for {n} image(s): "
        f"L_T = {s['L_T']:.2e}, Σ L_{{t−1}} = {s['sum_L_t-1']:.3f}, L_0 = {s['L_0']:.3f}."
    )
    return fig, text
