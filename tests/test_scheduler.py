"""The scheduler against the article's equations and against diffusers' own DDPMScheduler."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline
from diffusers import DDPMScheduler as DiffusersDDPMScheduler
from helpers import tiny_unet

from ddpm import DDPMScheduler
from ddpm.sampling import sampling_timesteps


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_buffers_are_float64_and_follow_section_4():
    s = DDPMScheduler(num_train_timesteps=200)
    betas = torch.linspace(1e-4, 0.02, 200, dtype=torch.float64)
    assert s.betas.dtype == torch.float64
    assert torch.allclose(s.alphas, 1 - betas)
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(1 - betas, 0))
    assert s.alphas_cumprod_prev[0] == 1.0 and torch.equal(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1])
    assert torch.allclose(s.sqrt_recip_alphas, 1 / torch.sqrt(1 - betas))
    expected_var = betas * (1 - s.alphas_cumprod_prev) / (1 - s.alphas_cumprod)
    assert torch.allclose(s.posterior_variance, expected_var)


def test_closed_form_matches_the_iterated_markov_chain():
    """x_t from t applications of q(x_t|x_{t-1}) has mean sqrt(abar_t) x0 and variance 1 - abar_t."""
    s = DDPMScheduler(num_train_timesteps=200)
    g = gen(1)
    x0 = torch.tensor([-0.8, 0.0, 0.5, 1.0], dtype=torch.float64).repeat(20_000, 1)
    x = x0.clone()
    checkpoints = {0: None, 9: None, 99: None, 199: None}
    for t in range(200):
        x = s.q_step_sample(x, t, torch.randn(x.shape, generator=g, dtype=torch.float64))
        if t in checkpoints:
            checkpoints[t] = x.clone()
    for t, xt in checkpoints.items():
        mean, var = s.q_mean_variance(x0[:1], t)
        assert torch.allclose(xt.mean(0), mean[0], atol=0.02), t
        assert torch.allclose(xt.var(0), var[0], rtol=0.05), t
        # and the closed-form sampler has the same moments
        xc = s.q_sample(x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64))
        assert torch.allclose(xc.mean(0), mean[0], atol=0.02) and torch.allclose(xc.var(0), var[0], rtol=0.05)


def test_q_sample_is_the_closed_form():
    s = DDPMScheduler()
    x0, eps, t = torch.randn(3, 1, 4, 4, generator=gen()), torch.randn(3, 1, 4, 4, generator=gen(1)), torch.tensor([0, 500, 999])
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[t].view(3, 1, 1, 1)
    expected = abar.sqrt() * x0.double() + (1 - abar).sqrt() * eps.double()
    assert torch.allclose(s.q_sample(x0, t, eps).double(), expected, atol=1e-6)
    assert torch.equal(s.add_noise(x0, eps, t), s.q_sample(x0, t, eps))


def test_posterior_is_bayes_rule_of_the_two_gaussians():
    """q(x_{t-1}|x_t,x0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x0): precisions add, means are precision-weighted."""
    s = DDPMScheduler(num_train_timesteps=50)
    x0, xt = (
        torch.randn(5, 1, 2, 2, generator=gen(), dtype=torch.float64),
        torch.randn(5, 1, 2, 2, generator=gen(1), dtype=torch.float64),
    )
    for t in (1, 7, 49):
        a, b, abar_prev = s.alphas[t], s.betas[t], s.alphas_cumprod[t - 1]
        precision = a / b + 1 / (1 - abar_prev)
        mean = (a.sqrt() / b * xt + abar_prev.sqrt() / (1 - abar_prev) * x0) / precision
        m, v, logv = s.posterior_mean_variance(x0, xt, t)
        assert torch.allclose(m, mean) and torch.allclose(v.flatten(), (1 / precision).view(1))
        assert torch.allclose(logv, torch.log(v))
    assert s.posterior_variance[0] == 0 and s.posterior_log_variance_clipped[0] == math.log(s.posterior_variance[1])


def test_sampling_mean_is_the_articles_formula_and_the_posterior_mean():
    s = DDPMScheduler(num_train_timesteps=100)
    x, eps = (
        torch.randn(2, 1, 4, 4, generator=gen(), dtype=torch.float64),
        torch.randn(2, 1, 4, 4, generator=gen(1), dtype=torch.float64),
    )
    for t in (0, 1, 50, 99):
        out = s.p_mean_variance(eps, x, t)
        article = (x - s.betas[t] / torch.sqrt(1 - s.alphas_cumprod[t]) * eps) / torch.sqrt(s.alphas[t])
        assert torch.allclose(out["mean"], article)
        x0 = (x - torch.sqrt(1 - s.alphas_cumprod[t]) * eps) / torch.sqrt(s.alphas_cumprod[t])
        assert torch.allclose(out["pred_original_sample"], x0)
        posterior_mean, _, _ = s.posterior_mean_variance(x0, x, t)
        assert torch.allclose(out["mean"], posterior_mean)
        assert torch.allclose(out["variance"].flatten(), s.posterior_variance[t].clamp(min=1e-20).view(1))
    large = DDPMScheduler(num_train_timesteps=100, variance_type="fixed_large")
    assert torch.allclose(large.p_mean_variance(eps, x, 50)["variance"].flatten(), large.betas[50].view(1))


def test_p_sample_adds_no_noise_at_t0():
    s = DDPMScheduler(num_train_timesteps=10)
    x, eps = torch.randn(2, 1, 4, 4, generator=gen()), torch.randn(2, 1, 4, 4, generator=gen(1))
    g = gen(5)
    out = s.p_sample(eps, 0, x, g)
    assert torch.equal(out.prev_sample, s.p_mean_variance(eps, x, 0)["mean"])
    assert torch.equal(g.get_state(), gen(5).get_state())  # no random number drawn
    z = torch.randn(2, 1, 4, 4, generator=gen(5))
    out = s.p_sample(eps, 3, x, gen(5))
    mv = s.p_mean_variance(eps, x, 3)
    assert torch.allclose(out.prev_sample, mv["mean"] + mv["variance"].sqrt() * z)


def test_clip_sample_is_off_by_default_and_clamps_x0_when_on():
    s = DDPMScheduler(num_train_timesteps=10)
    assert s.config.clip_sample is False
    x, eps = torch.full((1, 1, 2, 2), 3.0), torch.zeros(1, 1, 2, 2)
    assert s.p_mean_variance(eps, x, 5)["pred_original_sample"].max() > 1
    c = DDPMScheduler(num_train_timesteps=10, clip_sample=True)
    assert c.p_mean_variance(eps, x, 5)["pred_original_sample"].max() == 1


class ConstantModel(torch.nn.Module):
    """eps_theta that ignores t and returns a fixed tensor (checks the loss arithmetic)."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, t):
        return self.out.expand_as(x)


def test_loss_is_L_gamma():
    s = DDPMScheduler(num_train_timesteps=100)
    x0, eps = torch.randn(4, 1, 4, 4, generator=gen()), torch.randn(4, 1, 4, 4, generator=gen(1))
    t = torch.tensor([0, 10, 50, 99])
    pred = torch.randn(1, 1, 4, 4, generator=gen(2))
    model = ConstantModel(pred)
    assert s.loss(model, x0, t, eps).item() == pytest.approx(F.mse_loss(pred.expand_as(eps), eps).item(), rel=1e-6)
    assert s.loss(model, x0, t, eps, loss_type="l1").item() == pytest.approx(F.l1_loss(pred.expand_as(eps), eps).item(), rel=1e-6)
    assert s.loss(model, x0, t, eps, loss_type="huber").item() == pytest.approx(
        F.smooth_l1_loss(pred.expand_as(eps), eps).item(), rel=1e-6
    )
    w = torch.zeros(100, dtype=torch.float64)
    w[10] = 2.0  # only the sample at t=10 counts, twice
    per = ((pred - eps) ** 2).flatten(1).mean(1)
    assert s.loss(model, x0, t, eps, weights=w).item() == pytest.approx((2 * per[1] / 4).item(), rel=1e-6)
    # the network sees x_t = q_sample(x0, t, eps) and t
    seen = {}

    def spy(x, tt):
        seen["x"], seen["t"] = x, tt
        return torch.zeros_like(x)

    s.loss(spy, x0, t, eps)
    assert torch.equal(seen["x"], s.q_sample(x0, t, eps)) and torch.equal(seen["t"], t)
    with pytest.raises(ValueError, match="loss_type"):
        s.loss(model, x0, t, eps, loss_type="l3")


def test_min_snr_weights_and_other_targets():
    s = DDPMScheduler(num_train_timesteps=1000)
    snr = s.alphas_cumprod / (1 - s.alphas_cumprod)
    w = s.timestep_weights("min_snr", 5.0)
    assert torch.allclose(w, torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / snr)
    assert w[0] < 1e-3 and w[-1] == 1.0
    assert torch.equal(s.timestep_weights(), torch.ones(1000, dtype=torch.float64))
    clipped = torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64))  # diffusers' train_text_to_image.py's weights
    assert torch.allclose(DDPMScheduler(prediction_type="v_prediction").timestep_weights("min_snr"), clipped / (snr + 1))
    assert torch.allclose(DDPMScheduler(prediction_type="sample").timestep_weights("min_snr"), clipped)
    x0, eps, t = torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2), torch.tensor([3, 700])
    v = DDPMScheduler(prediction_type="v_prediction")
    xt = v.q_sample(x0, t, eps)
    target = v.training_target(x0, eps, t)
    assert torch.allclose(v.predict_x0(target, xt, t), x0, atol=1e-5)
    assert torch.equal(DDPMScheduler(prediction_type="sample").training_target(x0, eps, t), x0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_each_target_is_l_gamma_on_eps_with_its_weights(prediction_type):
    """A network's squared error on its own target equals w_t ||eps_hat - eps||^2, eps_hat read from its output."""
    s = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type)
    x0, eps = (
        torch.randn(4, 1, 3, 3, generator=gen(), dtype=torch.float64),
        torch.randn(4, 1, 3, 3, generator=gen(1), dtype=torch.float64),
    )
    t = torch.tensor([0, 10, 500, 999])
    out = torch.randn(4, 1, 3, 3, generator=gen(2), dtype=torch.float64)
    per_sample = s.loss(lambda x, tt: out, x0, t, eps, reduction="none")
    x_t = s.q_sample(x0, t, eps)
    eps_hat = s.predict_eps(s.predict_x0(out, x_t, t), x_t, t)
    on_eps = ((eps_hat - eps) ** 2).flatten(1).mean(1)
    assert torch.allclose(per_sample.double(), s.eps_loss_weights()[t] * on_eps, rtol=1e-4)
    w = s.eps_loss_weights()
    first, last = {"epsilon": (1, 1), "v_prediction": (1, 1 / float(s.alphas_cumprod[-1])), "sample": (1e-4, 2.5e4)}[
        prediction_type
    ]
    assert float(w[0]) == pytest.approx(first, rel=0.01) and float(w[-1]) == pytest.approx(last, rel=0.01)


# --------------------------------------------------------------------- against diffusers
@pytest.mark.parametrize("T", [1000, 200, 37])
def test_add_noise_and_step_equal_diffusers(T):
    ours = DDPMScheduler(num_train_timesteps=T)
    theirs = DiffusersDDPMScheduler(num_train_timesteps=T, clip_sample=False)
    x, eps = torch.randn(4, 3, 8, 8, generator=gen()), torch.randn(4, 3, 8, 8, generator=gen(1))
    ts = torch.tensor([0, 1, T // 2, T - 1])
    assert torch.allclose(ours.add_noise(x, eps, ts), theirs.add_noise(x, eps, ts), atol=1e-5)
    for t in (0, 1, T // 2, T - 1):
        a = ours.step(eps, t, x, generator=gen(3))
        b = theirs.step(eps, torch.tensor(t), x, generator=gen(3))
        # diffusers keeps abar in float32: at t=1, 1 - abar_0 = beta_1 = 1e-4 loses digits (about 1e-4 off)
        atol = 5e-4 if t == 1 else 1e-5
        assert torch.allclose(a.prev_sample, b.prev_sample, atol=atol), t
        assert torch.allclose(a.pred_original_sample, b.pred_original_sample, rtol=1e-4, atol=atol), t


def test_set_timesteps_and_respaced_step_equal_diffusers():
    for spacing in ("leading", "trailing", "linspace"):
        ours = DDPMScheduler(timestep_spacing=spacing)
        theirs = DiffusersDDPMScheduler(timestep_spacing=spacing, clip_sample=False)
        ours.set_timesteps(37)
        theirs.set_timesteps(37)
        assert torch.equal(ours.timesteps, theirs.timesteps), spacing
        x, eps = torch.randn(2, 1, 8, 8, generator=gen()), torch.randn(2, 1, 8, 8, generator=gen(1))
        for t in ours.timesteps[[0, 5, -1]]:
            assert ours.previous_timestep(t) == int(theirs.previous_timestep(t))
            a, b = ours.step(eps, t, x, generator=gen(2)), theirs.step(eps, t, x, generator=gen(2))
            assert torch.allclose(a.prev_sample, b.prev_sample, atol=1e-5)
    with pytest.raises(ValueError, match="between 1 and 1000"):
        DDPMScheduler().set_timesteps(1001)


@pytest.mark.parametrize("clip_sample", [False, True])
def test_ddim_step_equals_diffusers_ddim_scheduler(clip_sample):
    """`ddim_step` is diffusers' `DDIMScheduler.step` at eta 0 and 1 (the same noise draw); with clipping, diffusers'
    `use_clipped_model_output=True`: eps re-derived from the clipped x_0, as improved-diffusion's DDIM does. Without
    that argument diffusers keeps the network's eps beside the clipped x_0, a different sampler."""
    from diffusers import DDIMScheduler

    ours = DDPMScheduler(clip_sample=clip_sample)
    theirs = DDIMScheduler.from_config(ours.config)
    theirs.set_timesteps(50)  # "leading": 980, 960, ..., 0; diffusers steps from t to t - 20
    x, eps = 1.5 * torch.randn(2, 1, 8, 8, generator=gen()), torch.randn(2, 1, 8, 8, generator=gen(1))
    for t in (980, 500, 20, 0):
        for eta in (0.0, 1.0):
            a = ours.ddim_step(eps, t, x, t - 20, eta=eta, generator=gen(2))
            b = theirs.step(eps, t, x, eta=eta, use_clipped_model_output=True, generator=gen(2))
            atol = 5e-4 if t <= 20 else 1e-5  # diffusers' float32 abar near t = 0, as in the DDPM comparison above
            assert torch.allclose(a.prev_sample, b.prev_sample, atol=atol), (t, eta)
            assert torch.allclose(a.pred_original_sample, b.pred_original_sample, atol=atol), (t, eta)
    raw = theirs.step(eps, 500, x, eta=0.0).prev_sample  # diffusers' default: the same only where nothing is clipped
    rederived = theirs.step(eps, 500, x, eta=0.0, use_clipped_model_output=True).prev_sample
    assert ((raw - rederived).abs().max() > 1e-2) == clip_sample


@pytest.mark.parametrize("clip_sample", [False, True])
def test_dpm_solver_2m_walk_equals_diffusers_dpm_solver_multistep(clip_sample):
    """A whole 20-step walk of `dpm_solver_2m_step` (each step given the previous step's x0_hat) is diffusers'
    `DPMSolverMultistepScheduler` with algorithm_type "dpmsolver++", solver_order 2, over the same timesteps; our
    clipping is its thresholding with sample_max_value 1 (the threshold can then only be 1: a clamp to [-1, 1])."""
    from diffusers import DPMSolverMultistepScheduler

    ours = DDPMScheduler(clip_sample=clip_sample)
    theirs = DPMSolverMultistepScheduler.from_config(
        ours.config, algorithm_type="dpmsolver++", solver_order=2, thresholding=clip_sample, sample_max_value=1.0
    )
    w = 0.4 * torch.randn(2, 2, generator=gen(3))

    def network(x, t):  # a smooth eps_theta that mixes channels and depends on t
        return torch.tanh(torch.einsum("ij,bjhw->bihw", w, x) * (1 + t / 1000) + 0.3)

    timesteps = sampling_timesteps(1000, 20)
    theirs.set_timesteps(timesteps=timesteps)
    x = y = torch.randn(3, 2, 4, 4, generator=gen(4))
    last = None
    for i, t in enumerate(timesteps):
        out = ours.dpm_solver_2m_step(network(x, t), t, x, timesteps[i + 1] if i + 1 < len(timesteps) else -1, last)
        x, last = out.prev_sample, (out.pred_original_sample, t)
        y = theirs.step(network(y, t), t, y).prev_sample
        assert torch.allclose(x, y, atol=1e-5), t
    assert (x.abs().max() <= 1.0) == clip_sample  # the walk ends on x0_hat: clipped or not


def test_full_200_step_pipeline_run_equals_diffusers():
    """The same DDPMPipeline, our scheduler swapped in for diffusers': the same images for the same seed."""
    unet = tiny_unet()
    ours = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=200))
    theirs = DDPMPipeline(unet=unet, scheduler=DiffusersDDPMScheduler(num_train_timesteps=200, clip_sample=False))
    for p in (ours, theirs):
        p.set_progress_bar_config(disable=True)
    a = ours(batch_size=3, generator=gen(7), num_inference_steps=200, output_type="np").images
    b = theirs(batch_size=3, generator=gen(7), num_inference_steps=200, output_type="np").images
    assert a.shape == (3, 8, 8, 1)
    assert abs(a - b).max() < 1e-3  # float32 rounding of diffusers' schedule, over 200 steps
    assert abs(a - b).mean() < 1e-5
    c = theirs(batch_size=3, generator=gen(8), num_inference_steps=200, output_type="np").images
    assert abs(a - c).max() > 0.1  # and a different seed gives different images


# --------------------------------------------------------------------- config
def test_config_round_trip_with_diffusers_both_ways(tmp_path):
    ours = DDPMScheduler(
        num_train_timesteps=250,
        beta_schedule="squaredcos_cap_v2",
        variance_type="fixed_large",
        prediction_type="v_prediction",
        clip_sample=True,
        timestep_spacing="trailing",
    )
    ours.save_pretrained(tmp_path / "ours")
    theirs = DiffusersDDPMScheduler.from_pretrained(tmp_path / "ours")
    for key in ("num_train_timesteps", "beta_schedule", "variance_type", "prediction_type", "clip_sample", "timestep_spacing"):
        assert theirs.config[key] == ours.config[key], key
    assert torch.allclose(theirs.alphas_cumprod.double(), ours.alphas_cumprod, atol=1e-6)

    theirs = DiffusersDDPMScheduler(num_train_timesteps=123, beta_start=2e-4, beta_end=0.03, clip_sample=False)
    theirs.save_pretrained(tmp_path / "theirs")
    back = DDPMScheduler.from_pretrained(tmp_path / "theirs")
    assert back.config.num_train_timesteps == 123 and back.config.beta_end == 0.03
    assert torch.allclose(back.alphas_cumprod.float(), theirs.alphas_cumprod, atol=1e-6)
    again = DDPMScheduler.from_config(back.config)
    assert again.config == back.config
    assert json.loads((tmp_path / "ours" / "scheduler_config.json").read_text())["_class_name"] == "DDPMScheduler"


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="variance_type"):
        DDPMScheduler(variance_type="learned_range")
    with pytest.raises(ValueError, match="thresholding"):
        DDPMScheduler.from_config({"thresholding": True})
    with pytest.raises(ValueError, match="unsupported scheduler config keys: foo"):
        DDPMScheduler.from_config({"foo": 1})
    with pytest.raises(FileNotFoundError):
        DDPMScheduler.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="read-only"):
        DDPMScheduler().config["num_train_timesteps"] = 3


def test_our_scheduler_survives_a_diffusers_pipelines_save_and_load(tmp_path):
    """The README's swap (`pipe.scheduler = ours`), then diffusers' `save_pretrained` and `from_pretrained`: the
    scheduler is written to scheduler/, comes back as our class, and the pipeline gives the same images."""
    pipe = DDPMPipeline(unet=tiny_unet(), scheduler=DiffusersDDPMScheduler(num_train_timesteps=20))
    pipe.scheduler = DDPMScheduler(num_train_timesteps=20, clip_sample=True)
    before = pipe(batch_size=2, num_inference_steps=20, generator=torch.Generator().manual_seed(0), output_type="np").images
    pipe.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "model_index.json").read_text())["scheduler"] == ["ddpm.scheduler", "DDPMScheduler"]
    assert (tmp_path / "saved" / "scheduler" / "scheduler_config.json").is_file()
    back = DDPMPipeline.from_pretrained(tmp_path / "saved")
    assert type(back.scheduler) is DDPMScheduler and back.scheduler.config.clip_sample is True
    after = back(batch_size=2, num_inference_steps=20, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert (before == after).all()
    theirs = DiffusersDDPMScheduler.from_pretrained(tmp_path / "saved", subfolder="scheduler")  # diffusers reads it too
    assert theirs.config.num_train_timesteps == 20 and theirs.config.clip_sample is True


def test_a_scheduler_copies_and_pickles_with_its_read_only_config():
    import copy
    import pickle

    s = DDPMScheduler(num_train_timesteps=20, clip_sample=True)
    for twin in (copy.deepcopy(s), copy.copy(s), pickle.loads(pickle.dumps(s))):
        assert dict(twin.config) == dict(s.config) and torch.equal(twin.alphas_cumprod, s.alphas_cumprod)
    with pytest.raises(TypeError, match="read-only"):
        s.config["clip_sample"] = False
