import pytest
import torch
from diffusers import DDPMPipeline
from diffusers import DDPMScheduler as DiffusersDDPMScheduler
from helpers import DEVICES, tiny_unet

from ddpm import DDPMScheduler
from ddpm.sampling import sample, sampling_timesteps, trajectory


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def test_trajectory_frames_run_from_x_T_to_x_0(unet):
    s = DDPMScheduler(num_train_timesteps=20)
    frames = list(trajectory(unet, s, 2, generator=gen()))
    assert len(frames) == 21
    assert [f.t for f in frames] == list(range(20, -1, -1))  # t = T ... 0
    assert frames[0].pred_original_sample is None and frames[0].sample.shape == (2, 1, 8, 8)
    assert all(f.pred_original_sample.shape == (2, 1, 8, 8) for f in frames[1:])
    assert torch.equal(frames[-1].sample, sample(unet, s, 2, generator=gen()))


def test_ancestral_sampler_equals_diffusers_pipeline(unet):
    """Our whole sampling loop with seed s gives DDPMPipeline's images for seed s (diffusers' scheduler)."""
    pipe = DDPMPipeline(unet=unet, scheduler=DiffusersDDPMScheduler(num_train_timesteps=200, clip_sample=False))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=4, generator=gen(3), num_inference_steps=200, output_type="pt").images
    ours = sample(unet, DDPMScheduler(num_train_timesteps=200), 4, generator=gen(3))
    ours = (ours / 2 + 0.5).clamp(0, 1)  # output_type="pt" keeps NCHW
    assert abs(ours - theirs).max() < 1e-3


def test_respaced_with_N_equal_T_is_the_full_sampler(unet):
    s = DDPMScheduler(num_train_timesteps=30)
    full = sample(unet, s, 2, generator=gen(1))
    respaced = sample(unet, s, 2, sampler="respaced", num_inference_steps=30, generator=gen(1))
    assert torch.allclose(full, respaced, atol=1e-6)
    fewer = sample(unet, s, 2, sampler="respaced", num_inference_steps=10, generator=gen(1))
    assert not torch.allclose(full, fewer, atol=1e-3)


def test_sampling_timesteps_start_at_T_minus_1_and_end_at_0():
    assert sampling_timesteps(1000, 1000) == list(range(999, -1, -1))
    ts = sampling_timesteps(1000, 50)
    assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 0 and all(a > b for a, b in zip(ts, ts[1:], strict=False))
    with pytest.raises(ValueError, match="between 1 and 1000"):
        sampling_timesteps(1000, 0)


def test_ddim_eta0_is_deterministic_and_eta1_is_respaced_ddpm(unet):
    s = DDPMScheduler(num_train_timesteps=100)
    g = gen(4)
    a = sample(unet, s, 2, sampler="ddim", num_inference_steps=10, eta=0.0, generator=g)
    after_noise = gen(4)
    torch.randn(2, 1, 8, 8, generator=after_noise)
    assert torch.equal(g.get_state(), after_noise.get_state())  # only the initial noise was drawn
    b = sample(unet, s, 2, sampler="ddim", num_inference_steps=10, eta=0.0, generator=gen(4))
    assert torch.equal(a, b)
    ddim1 = sample(unet, s, 2, sampler="ddim", num_inference_steps=10, eta=1.0, generator=gen(4))
    resp = sample(unet, s, 2, sampler="respaced", num_inference_steps=10, generator=gen(4))
    assert torch.allclose(ddim1, resp, atol=1e-4)


def test_ddim_eta0_step_is_the_formula():
    s = DDPMScheduler(num_train_timesteps=100)
    x, eps = (
        torch.randn(1, 1, 4, 4, generator=gen(), dtype=torch.float64),
        torch.randn(1, 1, 4, 4, generator=gen(1), dtype=torch.float64),
    )
    t, prev = 80, 40
    a, ap = s.alphas_cumprod[t], s.alphas_cumprod[prev]
    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    expected = ap.sqrt() * x0 + (1 - ap).sqrt() * eps
    assert torch.allclose(s.ddim_step(eps, t, x, prev).prev_sample, expected)


def test_dpm2m_is_ddim_at_its_first_step_and_second_order_after():
    """`dpm_solver_2m_step`'s docstring, term by term: with no previous x0_hat it is DDIM (eta 0); given one it
    moves along D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_last, r = h_last / h, in the half log-SNR lambda."""
    s = DDPMScheduler(num_train_timesteps=100)
    x, eps = (torch.randn(1, 1, 4, 4, generator=gen(i), dtype=torch.float64) for i in (0, 1))
    t_last, t, prev = 90, 60, 30
    assert torch.allclose(s.dpm_solver_2m_step(eps, t, x, prev).prev_sample, s.ddim_step(eps, t, x, prev).prev_sample)
    a = s.alphas_cumprod
    lam = {k: 0.5 * torch.log(a[k] / (1 - a[k])) for k in (t_last, t, prev)}
    x0 = (x - (1 - a[t]).sqrt() * eps) / a[t].sqrt()
    x0_last = torch.randn(1, 1, 4, 4, generator=gen(2), dtype=torch.float64)
    r = (lam[t] - lam[t_last]) / (lam[prev] - lam[t])
    d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_last
    expected = ((1 - a[prev]) / (1 - a[t])).sqrt() * x - a[prev].sqrt() * (torch.exp(lam[t] - lam[prev]) - 1) * d
    got = s.dpm_solver_2m_step(eps, t, x, prev, last=(x0_last, t_last))
    assert torch.allclose(got.prev_sample, expected) and torch.allclose(got.pred_original_sample, x0)
    into_x0 = s.dpm_solver_2m_step(eps, 0, x, -1, last=(x0_last, 30))  # h is infinite: first order, x_0 = x0_hat
    assert torch.allclose(into_x0.prev_sample, into_x0.pred_original_sample)


def test_bad_arguments():
    unet = tiny_unet()
    s = DDPMScheduler(num_train_timesteps=10)
    with pytest.raises(ValueError, match="unknown sampler"):
        next(trajectory(unet, s, 1, sampler="euler"))
    with pytest.raises(ValueError, match="eta"):
        next(trajectory(unet, s, 1, sampler="ddim", eta=2.0))


def test_bf16_runs_the_network_in_bfloat16_and_keeps_the_sample_in_float32(unet):
    s = DDPMScheduler(num_train_timesteps=20)
    seen = []
    hook = unet.conv_in.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        fp32 = sample(unet, s, 4, sampler="ddim", num_inference_steps=10, generator=gen(1))
        bf16 = sample(unet, s, 4, sampler="ddim", num_inference_steps=10, generator=gen(1), precision="bf16")
    finally:
        hook.remove()
    assert seen[:10] == [torch.float32] * 10 and seen[10:] == [torch.bfloat16] * 10
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    assert (bf16 - fp32).abs().mean() < 0.05  # bfloat16 keeps 8 bits of mantissa: close, not equal
    with pytest.raises(ValueError, match="unknown precision 'fp8': use one of fp32, bf16"):
        sample(unet, s, 1, precision="fp8")


class WildNetwork(torch.nn.Module):
    """An eps_theta that is badly wrong: large values of changing sign (a network that has not learnt the data)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(25.0))

    def forward(self, x, t):
        return self.scale * torch.sin(3.0 * x + 0.01 * t.float())


WALKS = [("ddpm", None, 0.0), ("respaced", 10, 0.0), ("ddim", 10, 0.0), ("ddim", 10, 1.0), ("dpm2m", 10, 0.0)]


@pytest.mark.parametrize(("sampler", "steps", "eta"), WALKS)
def test_clipped_samplers_never_leave_the_data_range(sampler, steps, eta):
    """With x̂0 clipped every sampler's x_0 lies in [-1, 1], however wrong the network; the article's unclipped step
    (the same walk, clip_sample=False) leaves that range with this network, so the check can fail."""
    s = DDPMScheduler(num_train_timesteps=50)
    run = dict(sampler=sampler, num_inference_steps=steps, eta=eta, shape=(4, 1, 6, 6))
    clipped = sample(WildNetwork(), s, generator=gen(1), clip_sample=True, **run)
    assert clipped.abs().max() <= 1.0
    frames = list(trajectory(WildNetwork(), s, generator=gen(1), clip_sample=True, **run))
    assert all(f.pred_original_sample.abs().max() <= 1.0 for f in frames[1:])
    assert sample(WildNetwork(), s, generator=gen(1), clip_sample=False, **run).abs().max() > 1.5


def test_clip_sample_none_keeps_the_schedulers_own_setting(unet):
    on = DDPMScheduler(num_train_timesteps=30, clip_sample=True)
    run = dict(sampler="ddim", num_inference_steps=5, shape=(2, 1, 6, 6))
    assert torch.equal(
        sample(WildNetwork(), on, generator=gen(2), **run), sample(WildNetwork(), on, generator=gen(2), clip_sample=True, **run)
    )
    off = on.with_clip_sample(False)
    assert off.config.clip_sample is False and on.config.clip_sample is True  # a copy: the loaded scheduler is untouched
    assert on.with_clip_sample(True) is on
    assert {k: v for k, v in off.config.items() if k != "clip_sample"} == {
        k: v for k, v in on.config.items() if k != "clip_sample"
    }


@pytest.mark.parametrize("device", DEVICES)
def test_sampling_runs_where_the_network_is_and_repeats_per_device(device):
    """The sampler follows the network's device; the same seed gives the same images on that device (the initial
    noise comes from the CPU generator, so every device starts from the same x_T), and x̂0 clipping holds there."""
    net = tiny_unet(seed=3).to(device)
    s = DDPMScheduler(num_train_timesteps=40)
    run = dict(sampler="ddim", num_inference_steps=8, eta=1.0, clip_sample=True)
    a = sample(net, s, 3, generator=gen(5), **run)
    assert a.device.type == device and a.abs().max() <= 1.0
    assert torch.equal(a, sample(net, s, 3, generator=gen(5), **run))
    first = next(iter(trajectory(net, s, 3, generator=gen(5), **run))).sample
    assert torch.equal(first.cpu(), next(iter(trajectory(net.cpu(), s, 3, generator=gen(5), **run))).sample)
