"""Algorithm 1 on one picture: what the network is trained to do at one t, and its error over all t.

The article's objective is L_gamma = sum_t w_t E ||eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t)||^2
(L_simple: w_t = 1). `objective_parts` computes every term of it for one x_0, t and eps; `objective_view` shows them
(x_0, eps, x_t, eps_theta, the error, and x̂0 = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t)) with the numbers;
`loss_over_t` draws the network's error against t on held-out images, where a visitor sees which t carry the
average and why a training loss averaged over uniform t can stay flat while the samples improve. A model that
predicts x_0 or v is read as eps through the scheduler (the same conversion as its `eps_loss_weights`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

from ..hub import LoadedModel
from ..visualize import auto_scale, captioned, grid, side_by_side
from .runtime import Serialized

CURVE_TIMESTEPS = 40  # the loss curve's t values, evenly in t: L_simple draws t uniformly


def _predicted(model: LoadedModel, x_t: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps_theta, x̂0) from the network at (x_t, t), whatever it predicts (its turn of the Space's network): x̂0 is
    the scheduler's `predict_x0`, and eps_theta the network's own output, or for an x_0 or v model the eps that
    x̂0 implies (`predict_eps`)."""
    with torch.inference_mode():
        out = Serialized(model.unet)(x_t, index)
    out = (out.sample if hasattr(out, "sample") else out).to(x_t.dtype)
    s = model.scheduler
    x0_hat = s.predict_x0(out, x_t, index).to(x_t.dtype)
    return (out if s.config.prediction_type == "epsilon" else s.predict_eps(x0_hat, x_t, index).to(x_t.dtype)), x0_hat


def objective_parts(model: LoadedModel, x0: torch.Tensor, t: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """For the article's time t (1..T): eps (drawn from `seed`), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, the
    network's eps_theta(x_t, t), the error eps - eps_theta and x̂0 = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t)."""
    s = model.scheduler
    if not 1 <= int(t) <= s.num_train_timesteps:
        raise ValueError(f"t must be between 1 and {s.num_train_timesteps} (the objective's t)")
    index = torch.full((x0.shape[0],), int(t) - 1, dtype=torch.long)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed)))
    x_t = s.q_sample(x0, index, eps).to(x0.dtype)
    eps_theta, x0_hat = _predicted(model, x_t, index)
    return {"x0": x0, "eps": eps, "x_t": x_t, "eps_theta": eps_theta, "error": eps - eps_theta, "x0_hat": x0_hat}


def objective_view(model: LoadedModel, x0: torch.Tensor, t: int, seed: int = 0) -> tuple[Image.Image, str]:
    """The six pictures of one training example at t, each captioned, and its numbers: ||eps - eps_theta||^2 per
    pixel, and the weight w_t that L_simple (1) and the bound give this t."""
    parts = objective_parts(model, x0[:1], t, seed)
    s, index = model.scheduler, int(t) - 1
    scale = auto_scale(x0.shape[-1], 128)

    def shown(name: str, caption: str, noise: bool = False) -> Image.Image:
        x = parts[name][:1]
        x = (x / 3).clamp(-1, 1) if noise else x.clamp(-1, 1)  # noise shown at +-3 sd
        return captioned(grid(x, scale=scale, padding=0), caption)

    panels = [
        shown("x0", "x_0"), shown("eps", "eps (true noise)", True), shown("x_t", f"x_t, t = {int(t)}"),
        shown("eps_theta", "eps_theta(x_t, t)", True), shown("error", "eps - eps_theta", True),
        shown("x0_hat", "x0_hat"),
    ]  # fmt: skip
    picture = functools.reduce(side_by_side, panels)
    mse = float(parts["error"].pow(2).mean())
    x0_mse = float((parts["x0_hat"].clamp(-1, 1) - parts["x0"]).pow(2).mean())
    abar = float(s.alphas_cumprod[index])
    text = (
        f"**t = {int(t)}**: ‖ε − ε_θ‖² per pixel = **{mse:.4f}** (a network that knew nothing would score about 1, "
        f"the variance of ε). L_simple weighs this t by w_t = 1; the bound by w_t = "
        f"{float(s.elbo_eps_weights()[index]):.3g}. The same error on x̂0 is ‖x̂0 − x_0‖² = {x0_mse:.4f} per pixel "
        f"(before clipping, ε's error divided by SNR = {abar / (1 - abar):.3g}). Noise pictures are shown at ±3 standard "
        "deviations; x̂0 = (x_t − √(1 − ᾱ_t) ε_θ) / √ᾱ_t."
    )
    return picture, text


def loss_curve(model: LoadedModel, x0: torch.Tensor, seed: int = 0, count: int = CURVE_TIMESTEPS):
    """(t values, mean ||eps - eps_theta||^2 per pixel at each, mean ||x̂0 - x_0||^2 per pixel at each) over the
    batch x0, one eps per image drawn from `seed` and reused at every t."""
    T = model.scheduler.num_train_timesteps
    ts = np.unique(np.linspace(1, T, min(count, T)).round().astype(int))
    eps_err, x0_err = [], []
    for t in ts:
        parts = objective_parts(model, x0, int(t), seed)
        eps_err.append(float(parts["error"].pow(2).mean()))
        x0_err.append(float((parts["x0_hat"].clamp(-1, 1) - parts["x0"]).pow(2).mean()))
    return ts, np.array(eps_err), np.array(x0_err)


def loss_over_t(model: LoadedModel, x0: torch.Tensor, seed: int = 0, count: int = CURVE_TIMESTEPS):
    """A chart of the network's error against t on the images x0 (on eps, with L_simple's uniform average marked,
    and on x̂0), and a paragraph that reads it: which t carry the average, and why it can stay flat."""
    from matplotlib.figure import Figure

    ts, eps_err, x0_err = loss_curve(model, x0, seed, count)
    average = float(eps_err.mean())
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(ts, eps_err, marker=".")
    ax1.axhline(average, color="tab:red", linestyle="--", label=f"L_simple: uniform average {average:.4f}")
    ax1.set(title=r"$\|\epsilon - \epsilon_\theta(x_t, t)\|^2$ per pixel", xlabel="t", yscale="log")
    ax1.legend()
    ax2.plot(ts, x0_err, marker=".", color="tab:green")
    ax2.set(title=r"$\|\hat x_0 - x_0\|^2$ per pixel", xlabel="t")
    low = ts <= max(ts[0], ts[-1] // 10)  # the first tenth of the steps
    share = float(eps_err[low].sum() / eps_err.sum())
    text = (
        f"On {x0.shape[0]} held-out image(s) at {len(ts)} values of t: the uniform average, the quantity a training "
        f"log shows, is **{average:.4f}**, and the first tenth of the steps (t ≤ {int(ts[low][-1])}) carries "
        f"**{share:.0%}** of it: there x_t is almost x_0 and the noise in it is hard to tell from the image's own "
        f"detail. At large t the error is small ({eps_err[-1]:.4f} at t = {int(ts[-1])}), because x_t is nearly "
        "all noise and predicting ε is nearly copying x_t, yet on x̂0 (right) those are the steps where the picture "
        "is decided. So a loss averaged over uniform t can stay flat while samples improve: its average is held up "
        "by the small-t steps, where improving is hardest, while what the eye sees is decided at large t, where "
        "the error in ε was small all along."
    )
    return fig, text
