"""The bound's terms against direct formulas, and a bits/dim worked out by hand."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ddpm import DDPMScheduler
from ddpm.likelihood import bits_per_dim, bound_terms, discretized_gaussian_log_likelihood, normal_kl, prior_kl, vb_term


def test_normal_kl_matches_torch_distributions():
    m1, m2 = torch.tensor([0.3, -1.0]), torch.tensor([0.0, 2.0])
    v1, v2 = torch.tensor([0.5, 2.0]), torch.tensor([1.0, 0.1])
    ours = normal_kl(m1, v1.log(), m2, v2.log())
    ref = kl_divergence(Normal(m1.double(), v1.double().sqrt()), Normal(m2.double(), v2.double().sqrt()))
    assert torch.allclose(ours, ref)


def test_discretized_likelihood_is_a_distribution_over_the_256_levels():
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for mean, sigma in ((0.0, 0.05), (0.9, 0.3), (-1.2, 0.01)):
        logp = discretized_gaussian_log_likelihood(
            levels, torch.full_like(levels, mean), torch.full_like(levels, math.log(sigma))
        )
        assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-6)


def test_prior_kl_formula():
    s = DDPMScheduler(num_train_timesteps=200)
    x0 = torch.tensor([[[[0.5, -1.0]]]])
    a = s.alphas_cumprod[-1].item()
    expected = sum(0.5 * ((1 - a) + a * v * v - 1 - math.log(1 - a)) for v in (0.5, -1.0)) / 2
    assert prior_kl(s, x0).item() == pytest.approx(expected, rel=1e-9)


def test_vb_term_is_the_kl_between_posterior_and_model():
    s = DDPMScheduler(num_train_timesteps=50)
    g = torch.Generator().manual_seed(0)
    x0, xt, eps = (torch.randn(1, 1, 2, 2, generator=g, dtype=torch.float64) for _ in range(3))
    t = 20
    mu_q, var_q, _ = s.posterior_mean_variance(x0, xt, t)
    mu_p = (xt - s.betas[t] / (1 - s.alphas_cumprod[t]).sqrt() * eps) / s.alphas[t].sqrt()
    expected = kl_divergence(Normal(mu_q, var_q.sqrt()), Normal(mu_p, var_q.sqrt())).mean()
    assert vb_term(s, eps, x0, xt, t).item() == pytest.approx(expected.item(), rel=1e-9)


def test_bits_per_dim_of_a_perfect_denoiser_on_one_point_by_hand():
    """One data point x0 and the exact denoiser eps(x_t) = (x_t - sqrt(abar) x0)/sqrt(1 - abar): every
    L_{t-1} is 0, the decoder mean is exactly x0, so the bound is L_T + L_0, computed here by hand."""
    T = 100
    s = DDPMScheduler(num_train_timesteps=T)
    pixels = [-1.0, 0.2, 1.0]  # two edge bins and one interior bin
    x0 = torch.tensor(pixels).view(1, 1, 1, 3)

    def perfect(x, t):
        return s.predict_eps(x0.to(x.dtype), x, int(t))

    b = bits_per_dim(perfect, s, x0, generator=torch.Generator().manual_seed(0))

    a = math.prod(1 - (1e-4 + (0.02 - 1e-4) * i / (T - 1)) for i in range(T))  # abar_T
    L_T = sum(0.5 * ((1 - a) + a * v * v - 1 - math.log(1 - a)) for v in pixels) / 3 / math.log(2)
    beta1, beta2 = 1e-4, 1e-4 + (0.02 - 1e-4) / (T - 1)
    sigma = math.sqrt(beta2 * beta1 / (1 - (1 - beta1) * (1 - beta2)))  # sqrt(beta-tilde_2), the clipped variance

    def Phi(z):
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))

    half_bin = 1 / 255 / sigma
    p_edge, p_inner = Phi(half_bin), Phi(half_bin) - Phi(-half_bin)
    L_0 = -(math.log(p_edge) * 2 + math.log(p_inner)) / 3 / math.log(2)

    assert b.prior.item() == pytest.approx(L_T, rel=1e-6)
    assert b.decoder.item() == pytest.approx(L_0, rel=1e-6)
    assert b.terms[0, 1:].abs().max().item() < 1e-9
    assert b.total.item() == pytest.approx(L_T + L_0, rel=1e-6)
    assert b.summary()["bits_per_dim"] == pytest.approx(L_T + L_0, rel=1e-6)


def test_a_wrong_denoiser_pays_in_the_kl_terms():
    s = DDPMScheduler(num_train_timesteps=20)
    x0 = torch.zeros(2, 1, 2, 2)
    b = bits_per_dim(lambda x, t: torch.ones_like(x), s, x0, generator=torch.Generator().manual_seed(0))
    assert (b.terms[:, 1:] > 0).all() and b.total.min() > b.prior.max()


def test_a_stopped_bound_returns_the_terms_it_computed():
    """Sending True after k timesteps stops the computation there: the terms from T - 1 down are those of the whole
    computation (same noises), the rest are not computed, and `complete` says so."""
    s = DDPMScheduler(num_train_timesteps=20)
    x0 = torch.linspace(-1, 1, 8).view(2, 1, 2, 2)

    def denoiser(x, t):
        return 0.5 * x

    whole = bits_per_dim(denoiser, s, x0, generator=torch.Generator().manual_seed(3))
    steps = bound_terms(denoiser, s, x0, generator=torch.Generator().manual_seed(3))
    assert [next(steps) for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(StopIteration) as end:
        steps.send(True)
    part = end.value.value
    assert whole.complete and not part.complete and part.timesteps.tolist() == list(range(14, 20))
    assert torch.equal(part.terms[:, 14:], whole.terms[:, 14:]) and not part.terms[:, :14].any()
    assert torch.equal(part.prior, whole.prior)


def test_the_bounds_weight_on_the_noise_error_is_each_terms_kl():
    """L_{t-1} with sigma_t^2 = beta-tilde_t is w_t ||eps - eps_theta||^2 per dimension (Ho et al. eq. 12), with
    w_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)): checked against vb_term's KL for t >= 2."""
    s = DDPMScheduler(num_train_timesteps=50)
    g = torch.Generator().manual_seed(0)
    x0, eps, eps_theta = (torch.randn(4, 1, 6, 6, generator=g) for _ in range(3))
    w = s.elbo_eps_weights()
    for t in (1, 10, 49):
        index = torch.full((4,), t)
        x_t = s.q_sample(x0, index, eps)
        kl = vb_term(s, eps_theta, x0, x_t, t)
        expected = w[t] * (eps - eps_theta).pow(2).flatten(1).mean(1)
        assert torch.allclose(kl, expected.to(kl), rtol=1e-6), t
    assert w[1] > 10 * w[40]  # the bound weighs small t far more than L_simple's uniform w_t = 1
