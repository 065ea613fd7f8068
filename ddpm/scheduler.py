"""The DDPM of the article, equation by equation (Ho et al. 2020; article sections 3.1-3.3 and 4).

Read it beside the article. Timesteps are 0-based as in diffusers and the article's code: index `t` in
[0, T-1] is the article's time t + 1, so `betas[0]` is beta_1 and `alphas_cumprod[T-1]` is abar_T.

Every schedule quantity is a float64 buffer; inputs keep their own dtype (the coefficients are cast to it).
The class is a drop-in for diffusers' `DDPMScheduler`: same constructor keywords and `config`, `add_noise`,
`set_timesteps`, `timesteps`, `step(...)` returning `.prev_sample` / `.pred_original_sample`, and a
`scheduler_config.json` that either library reads. Random numbers are drawn as diffusers draws them, so the
same `torch.Generator` seed gives the same samples.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .schedules import diagnose, make_betas, snr

CONFIG_NAME = "scheduler_config.json"
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
VARIANCE_TYPES = ("fixed_small", "fixed_large")
LOSS_TYPES = ("l2", "l1", "huber")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
# Keys diffusers writes that we accept but do not use (their defaults change nothing here).
_IGNORED_KEYS = {"_class_name", "_diffusers_version", "dynamic_thresholding_ratio", "sample_max_value"}


class SchedulerConfig(dict):
    """The constructor arguments, read-only, readable as attributes like diffusers' `FrozenDict`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, key, value):
        raise TypeError("the scheduler config is read-only; build a new scheduler with from_config(..., **changes)")

    def __reduce__(self):  # copy, deepcopy and pickle rebuild it whole instead of setting its keys one by one
        return (type(self), (dict(self),))


@dataclass
class DDPMSchedulerOutput:
    """What `step` returns: x_{t-1} and the model's estimate of x_0 (diffusers' field names)."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def _broadcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A coefficient (scalar or one per sample) as x's dtype and device, shaped to broadcast over x."""
    v = v.to(device=x.device, dtype=x.dtype)
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def _gather(values: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
    """values[t] broadcast over x (t a scalar or one timestep per sample)."""
    return _broadcast(values[torch.as_tensor(t, dtype=torch.long).cpu()], x)


def _model_output(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Call a network eps_theta(x_t, t): a diffusers UNet (returns `.sample`) or any callable returning a tensor."""
    out = model(x, t)
    return out.sample if hasattr(out, "sample") else out


try:  # diffusers' pipelines save a component whose class derives from one of theirs, and load it back when the
    # module it names (model_index.json: ["ddpm.scheduler", "DDPMScheduler"]) holds that base under its own name
    from diffusers import SchedulerMixin
except ImportError:  # diffusers is optional for the scheduler itself
    SchedulerMixin = object


class DDPMScheduler(SchedulerMixin):
    """Forward process q, reverse process p_theta and the training loss L_gamma of a DDPM.

    Args mirror diffusers' `DDPMScheduler`. `clip_sample` is off by default, as in the article. In a diffusers
    pipeline (`pipe.scheduler = DDPMScheduler(...)`), `pipe.save_pretrained` writes it to `scheduler/` and
    `DDPMPipeline.from_pretrained` loads it back as this class (model_index.json names `ddpm.scheduler`); its
    `scheduler_config.json` also loads in diffusers' own `DDPMScheduler`.
    """

    _compatibles: list = []

    config_name = CONFIG_NAME
    order = 1
    init_noise_sigma = 1.0

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas=None,
        variance_type: str = "fixed_small",
        clip_sample: bool = False,
        prediction_type: str = "epsilon",
        clip_sample_range: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        thresholding: bool = False,
        rescale_betas_zero_snr: bool = False,
    ):
        if variance_type == "fixed_small_log":  # diffusers' name for the same sigma computed through a log
            variance_type = "fixed_small"
        for name, value, allowed in (
            ("variance_type", variance_type, VARIANCE_TYPES),
            ("prediction_type", prediction_type, PREDICTION_TYPES),
            ("timestep_spacing", timestep_spacing, TIMESTEP_SPACINGS),
        ):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not supported: use one of {', '.join(allowed)}")
        if thresholding or rescale_betas_zero_snr:
            raise ValueError("thresholding and rescale_betas_zero_snr are not supported: set them to false")
        betas = make_betas(num_train_timesteps, beta_schedule, beta_start, beta_end, trained_betas)
        if trained_betas is not None:
            num_train_timesteps = len(betas)
            trained_betas = betas.tolist()
        self.config = SchedulerConfig(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            trained_betas=trained_betas,
            variance_type=variance_type,
            clip_sample=clip_sample,
            prediction_type=prediction_type,
            clip_sample_range=clip_sample_range,
            timestep_spacing=timestep_spacing,
            steps_offset=steps_offset,
            thresholding=False,
            rescale_betas_zero_snr=False,
        )
        self.variance_type = variance_type

        self._set_buffers(betas)
        self.num_inference_steps = None
        self.custom_timesteps = False
        self.timesteps = torch.from_numpy(np.arange(0, num_train_timesteps)[::-1].copy())

    def _set_buffers(self, betas: torch.Tensor) -> None:
        """The article's section 4, in float64: alpha_t = 1 - beta_t, abar_t = prod alpha_s and their roots, and the
        posterior q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, beta-tilde_t I)."""
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = F.pad(self.alphas_cumprod[:-1], (1, 0), value=1.0)
        self.sqrt_recip_alphas = torch.sqrt(1.0 / self.alphas)
        self.sqrt_alphas_cumprod = torch.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = torch.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = torch.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = torch.sqrt(1.0 / self.alphas_cumprod - 1)
        # Posterior q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, beta-tilde_t I).
        self.posterior_variance = self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # beta-tilde_1 = 0, so its log is clipped to the next value (as improved-diffusion does).
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]) if len(betas) > 1 else self.betas
        )
        self.posterior_mean_coef1 = self.betas * torch.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * torch.sqrt(self.alphas) / (1.0 - self.alphas_cumprod)

    # ------------------------------------------------------------------ schedule facts
    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    def __len__(self) -> int:
        return self.num_train_timesteps

    def snr(self) -> torch.Tensor:
        """SNR(t) = abar_t / (1 - abar_t) for every timestep."""
        return snr(self.alphas_cumprod)

    def diagnostics(self, warn: bool = False):
        """abar_T, sqrt(abar_T), SNR(T) and the prior KL; see `ddpm.schedules.diagnose`."""
        return diagnose(self.betas, warn=warn)

    # ------------------------------------------------------------------ forward process q
    def q_step_sample(self, x_prev: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """One Markov step of the forward process.

        q(x_t | x_{t-1}) = N(x_t; sqrt(alpha_t) x_{t-1}, beta_t I), i.e. x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps.
        """
        return _gather(torch.sqrt(self.alphas), t, x_prev) * x_prev + _gather(torch.sqrt(self.betas), t, x_prev) * noise

    def q_mean_variance(self, x0: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Closed form q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I): returns (mean, variance)."""
        mean = _gather(self.sqrt_alphas_cumprod, t, x0) * x0
        return mean, _gather(1.0 - self.alphas_cumprod, t, x0).expand_as(x0)

    def q_sample(self, x0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) in closed form: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        return _gather(self.sqrt_alphas_cumprod, t, x0) * x0 + _gather(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """diffusers' name for `q_sample` (its argument order)."""
        return self.q_sample(original_samples, timesteps, noise)

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """The v-prediction target v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022)."""
        return (
            _gather(self.sqrt_alphas_cumprod, timesteps, sample) * noise
            - _gather(self.sqrt_one_minus_alphas_cumprod, timesteps, sample) * sample
        )

    # ------------------------------------------------------------------ training: L_gamma
    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """What the network learns to output: eps (the article), x_0 ("sample") or v."""
        if self.config.prediction_type == "epsilon":
            return noise
        if self.config.prediction_type == "sample":
            return x0
        return self.get_velocity(x0, noise, t)

    def eps_loss_weights(self) -> torch.Tensor:
        """The w_t of L_gamma that this prediction type's squared error is, one per timestep.

        Every target is a fixed linear function of eps given x_t: eps_hat - eps = sqrt(abar_t) (v_hat - v) and
        x0_hat - x_0 = -(eps_hat - eps) / sqrt(SNR(t)), so ||v_hat - v||^2 = ||eps_hat - eps||^2 / abar_t and
        ||x0_hat - x_0||^2 = ||eps_hat - eps||^2 / SNR(t): w_t = 1 ("epsilon", Ho et al.'s L_simple),
        1 / abar_t ("v_prediction": up to 1 / abar_T at the noisiest step), 1 / SNR(t) ("sample").
        """
        if self.config.prediction_type == "epsilon":
            return torch.ones_like(self.betas)
        if self.config.prediction_type == "v_prediction":
            return 1.0 / self.alphas_cumprod
        return 1.0 / self.snr()

    def elbo_eps_weights(self) -> torch.Tensor:
        """The w_t that makes the bound's term L_{t-1} a weighted noise-prediction error (Ho et al. eq. 12), per
        dimension: with p_theta's variance sigma_t^2 = beta-tilde_t,

        L_{t-1} = KL(q(x_{t-1}|x_t, x_0) || p_theta(x_{t-1}|x_t)) = w_t ||eps - eps_theta||^2 / D,
        w_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)),

        since mu-tilde - mu_theta = beta_t / (sqrt(alpha_t) sqrt(1 - abar_t)) (eps_theta - eps). L_simple sets w_t = 1;
        these weights are huge at small t, where beta-tilde_t is tiny (at t = 1, beta-tilde_2 stands in for the 0 of
        beta-tilde_1, as the clipped log-variance does)."""
        sigma2 = torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        return self.betas**2 / (2 * sigma2 * self.alphas * (1 - self.alphas_cumprod))

    def timestep_weights(self, weighting: str = "uniform", snr_gamma: float = 5.0) -> torch.Tensor:
        """The weights of the training loss on the network's own target, one per timestep.

        "uniform": 1 (Ho et al. 2020: L_simple for eps; for another target L_gamma with its `eps_loss_weights`).
        "min_snr": min-SNR-gamma (Hang et al. 2023), w_t = min(SNR(t), gamma) / SNR(t) on eps, so that divided by
        `eps_loss_weights` on this target (v: min(SNR(t), gamma) / (SNR(t) + 1); x_0: min(SNR(t), gamma)).
        """
        if weighting == "uniform":
            return torch.ones_like(self.betas)
        if weighting != "min_snr":
            raise ValueError(f"unknown timestep weighting {weighting!r}: use 'uniform' or 'min_snr'")
        s = self.snr()
        return torch.clamp(s, max=snr_gamma) / s / self.eps_loss_weights()

    def loss(
        self,
        model,
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        loss_type: str = "l2",
        weights: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """The article's training objective, one Monte Carlo sample per image:

        L_gamma(theta) = sum_t w_t E_{x_0, eps} || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2

        with t ~ Uniform{0..T-1}, eps ~ N(0, I). `loss_type` picks the distance: "l2" (the article's squared
        error, mean over pixels), "l1" or "huber" (smooth L1), as in the article's `p_losses`. `weights` is the
        vector w (length T, uniform when None). Returns the batch mean, or per-sample values with reduction="none".
        """
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {loss_type!r}: use one of {', '.join(LOSS_TYPES)}")
        b = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.num_train_timesteps, (b,), generator=generator, device="cpu").to(x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device="cpu", dtype=x0.dtype).to(x0.device)
        x_t = self.q_sample(x0, t, noise)
        prediction = _model_output(model, x_t, t)
        target = self.training_target(x0, noise, t)
        if loss_type == "l2":
            per_pixel = F.mse_loss(prediction.float(), target.float(), reduction="none")
        elif loss_type == "l1":
            per_pixel = F.l1_loss(prediction.float(), target.float(), reduction="none")
        else:
            per_pixel = F.smooth_l1_loss(prediction.float(), target.float(), reduction="none")
        per_sample = per_pixel.flatten(1).mean(dim=1)
        if weights is not None:
            per_sample = per_sample * torch.as_tensor(weights, dtype=torch.float64)[t.cpu()].to(per_sample)
        return per_sample.mean() if reduction == "mean" else per_sample

    # ------------------------------------------------------------------ posterior q(x_{t-1} | x_t, x_0)
    def posterior_mean_variance(self, x0: torch.Tensor, x_t: torch.Tensor, t):
        """q(x_{t-1} | x_t, x_0) = N(mu-tilde, beta-tilde_t I) with

        mu-tilde = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,
        beta-tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t.
        Returns (mean, variance, log variance clipped at t = 0 where beta-tilde is 0).
        """
        mean = _gather(self.posterior_mean_coef1, t, x_t) * x0 + _gather(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, _gather(self.posterior_variance, t, x_t), _gather(self.posterior_log_variance_clipped, t, x_t)

    # ------------------------------------------------------------------ reverse process p_theta
    def _step_quantities(self, t, prev_t=None):
        """float64 (alpha_t, beta_t, abar_t, abar_prev) for a step t -> prev_t (prev_t = -1 means x_0).

        For prev_t = t - 1 these are the schedule's own alpha_t and beta_t. For a respaced step (prev_t < t - 1)
        they are those of the shortened chain: alpha = abar_t / abar_prev, beta = 1 - alpha (Nichol & Dhariwal 2021).
        """
        t = torch.as_tensor(t, dtype=torch.long).cpu()
        prev_t = t - 1 if prev_t is None else torch.as_tensor(prev_t, dtype=torch.long).cpu()
        abar = self.alphas_cumprod[t]
        abar_prev = torch.where(prev_t >= 0, self.alphas_cumprod[prev_t.clamp(min=0)], torch.ones_like(abar))
        one_step = prev_t == t - 1
        beta = torch.where(one_step, self.betas[t], 1.0 - abar / abar_prev)
        return 1.0 - beta, beta, abar, abar_prev

    def predict_x0(self, model_output: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """x_0 from the network's output, inverting q(x_t|x_0): x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        if self.config.prediction_type == "epsilon":
            return (
                _gather(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
                - _gather(self.sqrt_recipm1_alphas_cumprod, t, x_t) * model_output
            )
        if self.config.prediction_type == "sample":
            return model_output
        return (
            _gather(self.sqrt_alphas_cumprod, t, x_t) * x_t - _gather(self.sqrt_one_minus_alphas_cumprod, t, x_t) * model_output
        )

    def _clip(self, x0: torch.Tensor) -> torch.Tensor:
        """The optional clipping of the predicted x_0 to [-clip_sample_range, clip_sample_range].

        Off by default, as the article's Algorithm 2 is written; diffusers' schedulers and Ho et al.'s released
        sampler clip. The data lie in [-1, 1], so clipping only removes what the network got wrong, and it keeps a
        few-step sampler (DDIM) from compounding those errors into saturated images."""
        r = self.config.clip_sample_range
        return x0.clamp(-r, r) if self.config.clip_sample else x0

    def with_clip_sample(self, clip_sample: bool) -> DDPMScheduler:
        """This scheduler if its `clip_sample` is already `clip_sample`, else a copy that differs only there."""
        if bool(self.config.clip_sample) == bool(clip_sample):
            return self
        return type(self).from_config(self.config, clip_sample=bool(clip_sample))

    def predict_eps(self, x0: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """eps from x_0 and x_t: eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t)."""
        return (x_t - _gather(self.sqrt_alphas_cumprod, t, x_t) * x0) / _gather(self.sqrt_one_minus_alphas_cumprod, t, x_t)

    def p_mean_variance(self, model_output: torch.Tensor, x_t: torch.Tensor, t, prev_t=None) -> dict:
        """p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I), the article's sampling mean

        mu_theta(x_t, t) = (x_t - beta_t / sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(alpha_t)

        and sigma_t^2 = beta-tilde_t ("fixed_small") or beta_t ("fixed_large"). With `clip_sample` (or an x_0 / v
        prediction) the mean is the posterior mean mu-tilde(x_0 estimate, x_t), which is the same quantity.
        Returns mean, variance, log_variance and pred_original_sample.
        """
        alpha, beta, abar, abar_prev = self._step_quantities(t, prev_t)
        pred_x0 = self._clip(self.predict_x0(model_output, x_t, t))
        if self.config.prediction_type == "epsilon" and not self.config.clip_sample:
            coef_eps = beta / torch.sqrt(1.0 - abar)
            mean = _broadcast(torch.rsqrt(alpha), x_t) * (x_t - _broadcast(coef_eps, x_t) * model_output)
        else:
            coef1 = torch.sqrt(abar_prev) * beta / (1.0 - abar)
            coef2 = torch.sqrt(alpha) * (1.0 - abar_prev) / (1.0 - abar)
            mean = _broadcast(coef1, x_t) * pred_x0 + _broadcast(coef2, x_t) * x_t
        if self.variance_type == "fixed_small":
            variance = ((1.0 - abar_prev) / (1.0 - abar) * beta).clamp(min=1e-20)
        else:
            variance = beta
        return {
            "mean": mean,
            "variance": _broadcast(variance, x_t),
            "log_variance": _broadcast(torch.log(variance), x_t),
            "pred_original_sample": pred_x0,
        }

    def p_sample(
        self, model_output: torch.Tensor, t, x_t: torch.Tensor, generator: torch.Generator | None = None, prev_t=None
    ) -> DDPMSchedulerOutput:
        """One reverse step (Algorithm 2, line 4): x_{t-1} = mu_theta(x_t, t) + sigma_t z, z ~ N(0, I); no noise at t = 0.

        z is drawn like diffusers draws it (`randn` on the generator's device in the model output's dtype).
        """
        out = self.p_mean_variance(model_output, x_t, t, prev_t)
        x_prev = out["mean"]
        last = (int(t) - 1 if prev_t is None else int(prev_t)) < 0
        if not last:
            z = randn(model_output.shape, generator, model_output.device, model_output.dtype)
            x_prev = x_prev + torch.sqrt(out["variance"]) * z
        return DDPMSchedulerOutput(prev_sample=x_prev, pred_original_sample=out["pred_original_sample"])

    def ddim_step(
        self,
        model_output: torch.Tensor,
        t,
        x_t: torch.Tensor,
        prev_t,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> DDPMSchedulerOutput:
        """DDIM (Song et al. 2021, eq. 12) from t to prev_t with the same trained network:

        x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z,
        sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).
        eta = 0 is deterministic; eta = 1 is the respaced DDPM step with beta-tilde variance.
        """
        _, beta, abar, abar_prev = self._step_quantities(t, prev_t)
        pred_x0 = self._clip(self.predict_x0(model_output, x_t, t))
        eps = self.predict_eps(pred_x0, x_t, t)
        sigma = eta * torch.sqrt((1.0 - abar_prev) / (1.0 - abar) * beta)
        dir_coef = torch.sqrt((1.0 - abar_prev - sigma**2).clamp(min=0))
        x_prev = _broadcast(torch.sqrt(abar_prev), x_t) * pred_x0 + _broadcast(dir_coef, x_t) * eps
        if eta > 0 and int(prev_t) >= 0:
            z = randn(model_output.shape, generator, model_output.device, model_output.dtype)
            x_prev = x_prev + _broadcast(sigma, x_t) * z
        return DDPMSchedulerOutput(prev_sample=x_prev, pred_original_sample=pred_x0)

    def half_log_snr(self, t) -> torch.Tensor:
        """lambda_t = log(sqrt(abar_t) / sqrt(1 - abar_t)) = log(SNR(t)) / 2 (float64); +inf at t = -1 (x_0, abar = 1)."""
        t = torch.as_tensor(t, dtype=torch.long).cpu()
        abar = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], torch.ones((), dtype=torch.float64))
        return 0.5 * torch.log(snr(abar))

    def dpm_solver_2m_step(
        self, model_output: torch.Tensor, t, x_t: torch.Tensor, prev_t, last: tuple[torch.Tensor, int] | None = None
    ) -> DDPMSchedulerOutput:
        """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) from t to prev_t: DDIM's deterministic step, second order.

        With lambda the half log-SNR (`half_log_snr`) and h = lambda_prev - lambda_t, DDIM (eta 0) reads

        x_prev = sqrt(1 - abar_prev) / sqrt(1 - abar_t) x_t - sqrt(abar_prev) (exp(-h) - 1) D,   D = x0_hat;

        2M replaces D by the line through this step's x0_hat and the previous step's, `last = (x0_hat_last, t_last)`:
        D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_last, r = h_last / h, h_last = lambda_t - lambda_{t_last}.
        The first step (no `last`) and the step into x_0 (prev_t = -1, h infinite) stay first order: DDIM's.
        The same network calls as DDIM; x0_hat is clipped as the scheduler's `clip_sample` says.
        """
        _, _, abar, abar_prev = self._step_quantities(t, prev_t)
        pred_x0 = self._clip(self.predict_x0(model_output, x_t, t))
        lam, lam_prev = self.half_log_snr(t), self.half_log_snr(prev_t)
        D = pred_x0
        if last is not None and int(prev_t) >= 0:
            r = (lam - self.half_log_snr(last[1])) / (lam_prev - lam)
            D = _broadcast(1 + 0.5 / r, x_t) * pred_x0 - _broadcast(0.5 / r, x_t) * last[0]
        coef_x = torch.sqrt((1.0 - abar_prev) / (1.0 - abar))
        coef_d = -torch.sqrt(abar_prev) * torch.expm1(-(lam_prev - lam))
        x_prev = _broadcast(coef_x, x_t) * x_t + _broadcast(coef_d, x_t) * D
        return DDPMSchedulerOutput(prev_sample=x_prev, pred_original_sample=pred_x0)

    # ------------------------------------------------------------------ diffusers' sampling interface
    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """DDPM needs no input scaling (diffusers interface)."""
        return sample

    def set_timesteps(self, num_inference_steps: int | None = None, device=None, timesteps=None) -> None:
        """Choose the timesteps `step` walks through, as diffusers does ("leading" spacing by default)."""
        T = self.num_train_timesteps
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("pass exactly one of num_inference_steps or timesteps")
        if timesteps is not None:
            ts = np.asarray(timesteps, dtype=np.int64)
            if ts.ndim != 1 or len(ts) == 0 or (np.diff(ts) >= 0).any() or ts[0] >= T or ts[-1] < 0:
                raise ValueError(f"timesteps must be strictly decreasing integers in [0, {T - 1}]")
            self.custom_timesteps, self.num_inference_steps = True, len(ts)
        else:
            n = int(num_inference_steps)
            if not 1 <= n <= T:
                raise ValueError(f"num_inference_steps must be between 1 and {T} (num_train_timesteps), got {n}")
            self.custom_timesteps, self.num_inference_steps = False, n
            spacing = self.config.timestep_spacing
            if spacing == "linspace":
                ts = np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
            elif spacing == "leading":
                ts = (np.arange(0, n) * (T // n)).round()[::-1].copy().astype(np.int64) + self.config.steps_offset
            else:
                ts = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
        self.timesteps = torch.from_numpy(ts).to(device)

    def previous_timestep(self, timestep) -> int:
        """The timestep after `timestep` in the current walk (-1 after the last)."""
        t = int(timestep)
        if not self.num_inference_steps:
            return t - 1
        ts = self.timesteps.tolist()
        i = ts.index(t)
        return ts[i + 1] if i + 1 < len(ts) else -1

    def step(
        self,
        model_output: torch.Tensor,
        timestep,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        """diffusers' `step`: `p_sample` from `timestep` to the previous timestep of `set_timesteps`."""
        out = self.p_sample(model_output, int(timestep), sample, generator, prev_t=self.previous_timestep(timestep))
        return out if return_dict else (out.prev_sample, out.pred_original_sample)

    # ------------------------------------------------------------------ config I/O
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Write `scheduler_config.json`, readable by this class and by diffusers' `DDPMScheduler.from_pretrained`."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        config = {"_class_name": "DDPMScheduler", "_diffusers_version": _diffusers_version()}
        config.update(self.config)
        config.update(dynamic_thresholding_ratio=0.995, sample_max_value=1.0)
        (path / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_config(cls, config: dict, **overrides) -> DDPMScheduler:
        """Build from a config dict (ours or diffusers'); unknown diffusers-only keys are ignored."""
        config = {**dict(config), **overrides}
        params = cls.__init__.__code__.co_varnames[1 : cls.__init__.__code__.co_argcount]
        unknown = set(config) - set(params) - _IGNORED_KEYS
        if unknown:
            raise ValueError(f"unsupported scheduler config keys: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in config.items() if k in params})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, subfolder: str | None = None, **kwargs):
        """Load `scheduler_config.json` from a local folder or a Hub repo (diffusers' layout, `subfolder="scheduler"`)."""
        root = Path(pretrained_model_name_or_path)
        if root.is_dir():
            file = root / (subfolder or "") / CONFIG_NAME
            if not file.is_file():
                raise FileNotFoundError(f"no {CONFIG_NAME} in {file.parent}")
        else:
            from huggingface_hub import hf_hub_download

            file = Path(hf_hub_download(str(pretrained_model_name_or_path), CONFIG_NAME, subfolder=subfolder, **kwargs))
        return cls.from_config(json.loads(file.read_text()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(dict(self.config), sort_keys=True, default=str)[:400]})"


def randn(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """Standard normal noise drawn as diffusers' `randn_tensor` draws it: on the generator's device, then moved."""
    gen_device = generator.device if generator is not None else torch.device(device)
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def _diffusers_version() -> str:
    try:
        from importlib.metadata import version

        return version("diffusers")
    except Exception:  # diffusers is optional for the scheduler itself
        return "0.42.1"


__all__ = ["DDPMScheduler", "DDPMSchedulerOutput", "SchedulerConfig", "randn"]
