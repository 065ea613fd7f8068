"""The variational bound the article stops short of: L_T, L_{t-1}, L_0 in closed form, and bits/dim.

    -log p_theta(x_0) <= L_T + sum_{t>1} L_{t-1} + L_0                       (article, section 3.2)
    L_T     = KL(q(x_T | x_0) || p(x_T))                                    no parameters
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))           two Gaussians, closed form
    L_0     = -log p_theta(x_0 | x_1)                                        discretized Gaussian over 8-bit bins

Each term is computed for data in [-1, 1] (pixel bins of width 2/255), averaged over dimensions, and reported
in bits per dimension as in Ho et al. (2020) and improved-diffusion. Timestep indices are 0-based: index 0 is
L_0, index t >= 1 is L_t (the article's L_{t-1} for its time t + 1), and L_T is separate.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

import torch

from .scheduler import DDPMScheduler

LOG2 = math.log(2.0)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) per element, in nats:

    (logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2) - 1) / 2.
    """
    mean1, logvar1, mean2, logvar2 = (torch.as_tensor(v, dtype=torch.float64) for v in (mean1, logvar1, mean2, logvar2))
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) for 8-bit data x in [-1, 1] under N(mean, exp(log_scale)^2) integrated over x's pixel bin:

    P(x) = Phi((x + 1/255 - mean) / sigma) - Phi((x - 1/255 - mean) / sigma), with the bins of -1 and 1
    extended to -inf and +inf (Ho et al. 2020, eq. 13).
    """
    x, mean, log_scale = (v.to(torch.float64) for v in (x, mean, log_scale))
    inv_sigma = torch.exp(-log_scale)
    cdf_plus = standard_normal_cdf(inv_sigma * (x - mean + 1.0 / 255.0))
    cdf_minus = standard_normal_cdf(inv_sigma * (x - mean - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_delta))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1)


def prior_kl(scheduler: DDPMScheduler, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)) per sample, nats per dimension."""
    x0 = x0.to(torch.float64)
    T = scheduler.num_train_timesteps - 1
    mean, var = scheduler.q_mean_variance(x0, T)
    return mean_flat(normal_kl(mean, torch.log(var), 0.0, 0.0))


def vb_term(scheduler: DDPMScheduler, model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
    """One term of the bound per sample, nats per dimension, given the network's output at (x_t, t):

    t >= 1: L_t = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t));  t = 0: L_0 = -log p_theta(x_0 | x_1).
    The model's variance is fixed (beta-tilde or beta), its log clipped at t = 0 like the posterior's.
    """
    x0, x_t, model_output = (v.to(torch.float64) for v in (x0, x_t, model_output))
    t = torch.as_tensor(t, dtype=torch.long).expand(x0.shape[0])
    true_mean, _, true_logvar = scheduler.posterior_mean_variance(x0, x_t, t)
    p = scheduler.p_mean_variance(model_output, x_t, t)
    if scheduler.variance_type == "fixed_small":
        model_logvar = scheduler.posterior_log_variance_clipped[t]
    else:  # fixed_large: beta_t, with beta-tilde_2 in place of beta_1 (improved-diffusion)
        logs = torch.log(torch.cat([scheduler.posterior_variance[1:2], scheduler.betas[1:]]))
        model_logvar = logs[t]
    model_logvar = model_logvar.view(-1, *([1] * (x0.ndim - 1))).to(x0)
    kl = mean_flat(normal_kl(true_mean, true_logvar, p["mean"], model_logvar))
    nll = -mean_flat(discretized_gaussian_log_likelihood(x0, p["mean"], 0.5 * model_logvar))
    return torch.where(t == 0, nll, kl)


@dataclass
class BoundTerms:
    """The bound of a batch, in bits per dimension (per sample)."""

    prior: torch.Tensor  # L_T, [B]
    terms: torch.Tensor  # [B, T]: column 0 is L_0, column t >= 1 is L_t (the article's L_{t-1} at time t + 1)
    timesteps: torch.Tensor  # the 0-based timesteps evaluated, ascending: all T, or the last ones when stopped early

    @property
    def complete(self) -> bool:
        """Whether every term was computed (a stopped computation holds the terms from T down to some t)."""
        return len(self.timesteps) == self.terms.shape[1]

    @property
    def decoder(self) -> torch.Tensor:
        """L_0 = -log p(x_0 | x_1), [B]."""
        return self.terms[:, 0]

    @property
    def total(self) -> torch.Tensor:
        """The bound L_T + sum_t L_{t-1} + L_0 in bits/dim, [B]."""
        return self.prior + self.terms.sum(dim=1)

    def summary(self) -> dict:
        return {
            "bits_per_dim": float(self.total.mean()),
            "L_T": float(self.prior.mean()),
            "L_0": float(self.decoder.mean()),
            "sum_L_t-1": float(self.terms[:, 1:].sum(dim=1).mean()),
        }


@torch.inference_mode()
def bound_terms(
    model, scheduler: DDPMScheduler, x0: torch.Tensor, generator: torch.Generator | None = None
) -> Generator[int, None, BoundTerms]:
    """Every term of the bound for a batch of data x_0 in [-1, 1]: T network evaluations, each at x_t ~ q(x_t | x_0).

    A generator: it yields the number of timesteps done after each one (so a caller can report progress or stop
    between two network calls) and returns the `BoundTerms`; `bits_per_dim` runs it to the end. Sending it True
    stops it there: it returns the terms computed so far (t from T - 1 down), `complete` False.
    """
    params = next(model.parameters(), None) if hasattr(model, "parameters") else None
    device = params.device if params is not None else x0.device
    dtype = params.dtype if params is not None else torch.float32
    x0 = x0.to(device)
    T = scheduler.num_train_timesteps
    terms = torch.zeros(x0.shape[0], T, dtype=torch.float64)
    for i, t in enumerate(range(T - 1, -1, -1)):
        noise = torch.randn(x0.shape, generator=generator, dtype=dtype).to(device)
        x_t = scheduler.q_sample(x0.to(dtype), t, noise)
        out = model(x_t, torch.tensor(t, device=device))
        out = out.sample if hasattr(out, "sample") else out
        terms[:, t] = vb_term(scheduler, out, x0, x_t, t).cpu()
        if (yield i + 1):
            break
    return BoundTerms(prior=prior_kl(scheduler, x0).cpu() / LOG2, terms=terms / LOG2, timesteps=torch.arange(t, T))


def bits_per_dim(
    model, scheduler: DDPMScheduler, x0: torch.Tensor, generator: torch.Generator | None = None, progress=None
) -> BoundTerms:
    """`bound_terms` run to the end; `progress`, if given, is called with (done, total) after each timestep."""
    steps = bound_terms(model, scheduler, x0, generator)
    while True:
        try:
            done = next(steps)
        except StopIteration as end:
            return end.value
        if progress is not None:
            progress(done, scheduler.num_train_timesteps)
