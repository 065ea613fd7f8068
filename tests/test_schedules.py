import math
import warnings

import pytest
import torch

from ddpm.likelihood import normal_kl
from ddpm.schedules import cosine_beta_schedule, diagnose, linear_beta_schedule, make_betas, snr


def test_linear_is_the_articles_linspace():
    betas = linear_beta_schedule(200)
    assert betas.dtype == torch.float64 and len(betas) == 200
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    assert torch.allclose(betas.float(), torch.linspace(0.0001, 0.02, 200))
    assert torch.all(betas[1:] > betas[:-1])


def test_cosine_follows_nichol_dhariwal():
    T, s = 1000, 0.008
    betas = cosine_beta_schedule(T)
    abar = torch.cumprod(1 - betas, 0)

    def f(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    for t in (0, 10, 500, 900):  # abar_t = f((t+1)/T) / f(0) while no beta is capped
        assert abar[t].item() == pytest.approx(f((t + 1) / T) / f(0), rel=1e-9)
    assert betas.max().item() == pytest.approx(0.999)  # the cap
    assert torch.equal(make_betas(T, "cosine"), make_betas(T, "squaredcos_cap_v2"))


def test_explicit_betas_and_errors():
    assert torch.equal(make_betas(trained_betas=[0.1, 0.2]), torch.tensor([0.1, 0.2], dtype=torch.float64))
    with pytest.raises(ValueError, match="beta_schedule"):
        make_betas(10, "quadratic")
    with pytest.raises(ValueError, match="between 0 and 1"):
        make_betas(trained_betas=[0.1, 1.5])


def test_diagnostics_warn_for_the_articles_T200_schedule():
    d200 = diagnose(linear_beta_schedule(200))
    abar_T = torch.prod(1 - linear_beta_schedule(200)).item()
    assert d200.alphas_cumprod_T == pytest.approx(abar_T)
    assert d200.sqrt_alphas_cumprod_T == pytest.approx(0.37, abs=0.01)
    assert d200.snr_T == pytest.approx(abar_T / (1 - abar_T))
    assert d200.warning and "0.364" in d200.warning
    with pytest.warns(UserWarning, match="not close to N"):
        diagnose(linear_beta_schedule(200), warn=True)
    d1000 = diagnose(linear_beta_schedule(1000))
    assert d1000.sqrt_alphas_cumprod_T < 0.01 and d1000.warning is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diagnose(linear_beta_schedule(1000), warn=True)


def test_prior_kl_is_the_gaussian_kl_averaged_over_unit_variance_data():
    d = diagnose(linear_beta_schedule(200))
    a = d.alphas_cumprod_T
    x0 = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x0 = (x0 - x0.mean()) / x0.std()  # E[x0^2] = 1 exactly
    kl = normal_kl(math.sqrt(a) * x0, math.log(1 - a), 0.0, 0.0).mean().item()
    assert d.prior_kl_nats == pytest.approx(kl, rel=1e-4)
    assert d.prior_kl_bits == pytest.approx(kl / math.log(2), rel=1e-4)


def test_snr():
    abar = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    assert torch.allclose(snr(abar), torch.tensor([9.0, 1.0, 1 / 9], dtype=torch.float64))
