"""Noise schedules beta_1 < ... < beta_T and their diagnostics (article, section 3.1 and 4).

A schedule is a float64 tensor of T betas. Everything else the scheduler needs (alpha_t, abar_t, ...) is derived
from it in `ddpm.scheduler`. Names follow diffusers' `beta_schedule` values so configs are interchangeable;
"cosine" is accepted as an alias of diffusers' "squaredcos_cap_v2".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
ALIASES = {"cosine": "squaredcos_cap_v2"}

# x_T keeps sqrt(abar_T) of the data's signal; above this the prior p(x_T) = N(0, I) is visibly wrong.
SIGNAL_WARNING_THRESHOLD = 0.05


def linear_beta_schedule(num_train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """The article's schedule: beta_t = torch.linspace(beta_start, beta_end, T) (Ho et al. 2020)."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def scaled_linear_beta_schedule(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """beta_t = linspace(sqrt(beta_start), sqrt(beta_end), T)^2 (latent diffusion's schedule)."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2


def cosine_beta_schedule(num_train_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021): abar(t) = cos^2(((t/T + s)/(1 + s)) * pi/2), beta_t = min(1 - abar(t)/abar(t-1), max_beta)."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    T = num_train_timesteps
    betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float64)


def make_betas(
    num_train_timesteps: int = 1000,
    beta_schedule: str = "linear",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    trained_betas=None,
) -> torch.Tensor:
    """Betas for a named schedule, or the explicit `trained_betas`; validated to lie in (0, 1)."""
    if trained_betas is not None:
        betas = torch.as_tensor(trained_betas, dtype=torch.float64).flatten()
    else:
        name = ALIASES.get(beta_schedule, beta_schedule)
        if num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be at least 1, got {num_train_timesteps}")
        if name == "linear":
            betas = linear_beta_schedule(num_train_timesteps, beta_start, beta_end)
        elif name == "scaled_linear":
            betas = scaled_linear_beta_schedule(num_train_timesteps, beta_start, beta_end)
        elif name == "squaredcos_cap_v2":
            betas = cosine_beta_schedule(num_train_timesteps)
        else:
            known = ", ".join(SCHEDULES + tuple(ALIASES))
            raise ValueError(f"unknown beta_schedule {beta_schedule!r}: use one of {known}, or pass trained_betas")
    if betas.numel() == 0 or not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError("every beta must lie strictly between 0 and 1")
    return betas


def snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio of q(x_t|x_0): SNR(t) = abar_t / (1 - abar_t)."""
    return alphas_cumprod / (1 - alphas_cumprod)


def prior_kl_unit_data(alphas_cumprod_T: float) -> float:
    """KL(q(x_T|x_0) || N(0, I)) per dimension in nats, averaged over data with E[x_0^2] = 1.

    KL(N(m, v) || N(0, 1)) = (v + m^2 - 1 - log v) / 2 with m = sqrt(abar_T) x_0, v = 1 - abar_T; taking
    E[x_0^2] = 1 gives -log(1 - abar_T) / 2.
    """
    return -0.5 * math.log1p(-alphas_cumprod_T)


@dataclass(frozen=True)
class ScheduleDiagnostics:
    """How close the forward process ends to the prior p(x_T) = N(0, I)."""

    num_train_timesteps: int
    alphas_cumprod_T: float
    sqrt_alphas_cumprod_T: float
    snr_T: float
    prior_kl_nats: float  # per dimension, unit-variance data

    @property
    def prior_kl_bits(self) -> float:
        return self.prior_kl_nats / math.log(2)

    @property
    def warning(self) -> str | None:
        """A sentence for the user when x_T is not close to N(0, I), else None."""
        if self.sqrt_alphas_cumprod_T <= SIGNAL_WARNING_THRESHOLD:
            return None
        return (
            f"x_T is not close to N(0, I): sqrt(abar_T) = {self.sqrt_alphas_cumprod_T:.3f} of the image survives at "
            f"t = T = {self.num_train_timesteps} (prior KL {self.prior_kl_bits:.3g} bits/dim); use more timesteps "
            "(T = 1000) or a larger beta_end."
        )


def diagnose(betas: torch.Tensor, warn: bool = False) -> ScheduleDiagnostics:
    """Diagnostics of a schedule; with `warn=True` a `UserWarning` is raised when x_T is not close to N(0, I)."""
    abar = torch.cumprod(1 - betas.to(torch.float64), dim=0)
    abar_T = float(abar[-1])
    diag = ScheduleDiagnostics(
        num_train_timesteps=len(betas),
        alphas_cumprod_T=abar_T,
        sqrt_alphas_cumprod_T=math.sqrt(abar_T),
        snr_T=abar_T / (1 - abar_T),
        prior_kl_nats=prior_kl_unit_data(abar_T),
    )
    if warn and diag.warning:
        warnings.warn(diag.warning, UserWarning, stacklevel=2)
    return diag
