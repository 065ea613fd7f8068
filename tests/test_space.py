"""The Space's logic (ddpm.space) without a server."""

import json
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline
from diffusers import DDPMScheduler as DiffusersDDPMScheduler
from helpers import hub_env, tiny_unet
from PIL import Image

from ddpm import DDPMScheduler, space
from ddpm.data import LabelledArrays, save_held_out
from ddpm.hub import ModelLoadError, load_pipeline, save_pipeline
from ddpm.sampling import sample
from ddpm.space.limits import Cost, Limits
from ddpm.visualize import grid


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    save_pipeline(path, tiny_unet(), DDPMScheduler(num_train_timesteps=30))
    return path


@pytest.fixture(scope="module")
def model(model_dir):
    return load_pipeline(str(model_dir))


def test_generate_streams_then_delivers_gif_gallery_and_zip(model, tmp_path):
    settings = space.check_settings(model, 5, 4, "ddpm", 999, 0.0, True)
    assert settings.num_steps == 30  # ancestral always walks all T steps
    updates = list(space.generate(model, settings, tmp_path, min_interval=0.0))
    assert updates[0].step == 0 and updates[0].status.startswith("step 0 of 30 · t = 30")
    assert all(not u.done for u in updates[:-1]) and updates[-1].done
    last = updates[-1]
    gif = Image.open(last.gif)
    assert gif.format == "GIF" and gif.n_frames == 31 and gif.info.get("loop") == 0
    snr_30 = float(model.scheduler.snr()[29])
    assert [c for _, c in last.gallery][0] == f"t = 30 · SNR {snr_30:.3g}" and [c for _, c in last.gallery][-1] == "t = 0 (x_0)"
    assert all(Path(p).suffix == ".png" for p, _ in last.gallery)
    with zipfile.ZipFile(last.download) as z:
        assert "trajectory.gif" in z.namelist() and "frames/t=0000.png" in z.namelist()
    # 2 x 2 images of 8 px with 1 px borders, upscaled x16 (about 128 px each) with nearest neighbour; x0 beside it,
    # each half labelled below (x_t, predicted x_0) in an 18 px band
    assert last.preview.size == (2 * (2 * 9 + 1) * 16 + 8, (2 * 9 + 1) * 16 + 18)
    labels = np.asarray(last.preview)[(2 * 9 + 1) * 16 :]
    assert labels.min() == 0 and labels.max() == 255  # black text on a white band


def test_frames_are_spread_evenly_in_log_snr_where_the_picture_forms():
    """With the linear schedule the picture forms late (SNR = 1 near t = 260 of 1000): evenly in log-SNR above
    SNR e^-2 the gallery shows that part, where frames evenly in t would spend most of themselves on noise; of the
    noise, only x_T is shown."""
    s = DDPMScheduler(num_train_timesteps=1000)
    times = list(range(1000, -1, -1))  # the ancestral walk: t = T ... 0
    picks = space.log_snr_frames(s, times, 11)
    assert picks[0] == 0 and picks[-1] == 1000 and len(picks) == 11
    shown = [times[i] for i in picks]
    levels = np.array([space.log_snr(s, t) for t in shown[1:-1]])
    assert levels.min() >= space.frames.PICTURE_LOG_SNR - 0.05  # after x_T, no frame of look-alike noise
    gaps = np.diff(levels)
    assert gaps.min() > 0.8 * gaps.mean() and gaps.max() < 1.25 * gaps.mean()  # even in log-SNR
    assert sum(t < 260 for t in shown) >= 7  # most frames where the picture forms ...
    assert sum(t < 260 for t in times[::100]) <= 3  # ... not so evenly in t
    few = [50, 40, 30, 20, 10, 0]
    assert space.log_snr_frames(s, few, 11) == list(range(6))  # fewer frames than asked: all of them
    assert space.frame_caption(s, 1000).startswith("t = 1000 · SNR 4.0") and space.frame_caption(s, 0) == "t = 0 (x_0)"


@pytest.mark.parametrize("clip", list(space.CLIP_LABELS))
def test_same_seed_same_images_as_diffusers_pipeline(model, model_dir, tmp_path, clip):
    """Clipped (the Space's default, whatever the model's saved config says) or as the article writes it: the same
    images as diffusers' DDPMPipeline with that clip_sample."""
    settings = space.check_settings(model, 11, 4, "DDPM ancestral, all T steps (Algorithm 2)", 30, 0.0, False, clip=clip)
    assert settings.clip is space.CLIP_LABELS[clip] and model.scheduler.config.clip_sample is False  # as saved
    final = list(space.generate(model, settings, tmp_path))[-1]
    assert final.status.endswith("x̂0 clipped)" if settings.clip else "x̂0 not clipped)")
    ours = np.asarray(Image.open(final.gallery[-1][0]))
    theirs_scheduler = DiffusersDDPMScheduler.from_pretrained(model_dir, subfolder="scheduler", clip_sample=settings.clip)
    pipe = DDPMPipeline(unet=model.unet, scheduler=theirs_scheduler)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=4, generator=torch.Generator().manual_seed(11), num_inference_steps=30, output_type="pt").images
    expected = np.asarray(grid(theirs * 2 - 1, nrow=2, scale=space.picture_scale(8, 4)))
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1
    again = list(space.generate(model, settings, tmp_path / "again"))[-1]
    assert np.array_equal(np.asarray(Image.open(again.gallery[-1][0])), ours)


def test_the_default_sampler_is_dpm_solver_and_shows_its_images(model, tmp_path):
    """The Generate tab's default sampler is DPM-Solver++ 2M; a run of it through the Space shows exactly what
    `sample(..., sampler="dpm2m")` gives for that seed, and its status names it."""
    from ddpm.space.handlers import FAST_LABEL

    settings = space.check_settings(model, 5, 4, FAST_LABEL, 12, 0.0, False)
    assert settings.sampler == space.FAST_SAMPLER == "dpm2m"
    final = list(space.generate(model, settings, tmp_path))[-1]
    assert final.status.startswith("done: 12 steps for 4 image(s)") and "(DPM-Solver++ 2M, seed 5, fp32" in final.status
    g = torch.Generator().manual_seed(5)
    x = sample(model.unet, model.scheduler, 4, sampler="dpm2m", num_inference_steps=12, generator=g, clip_sample=True)
    expected = np.asarray(grid(x, nrow=2, scale=space.picture_scale(8, 4)))
    assert np.abs(np.asarray(Image.open(final.gallery[-1][0])).astype(int) - expected.astype(int)).max() <= 1
    ddim = space.check_settings(model, 5, 4, "ddim", 12, 0.0, False)
    assert not np.array_equal(np.asarray(Image.open(list(space.generate(model, ddim, tmp_path / "d"))[-1].gallery[-1][0])),
                              np.asarray(Image.open(final.gallery[-1][0])))  # fmt: skip


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 17, "ddpm", 10, 0.0), "number of images must be between 1 and 16"),
        ((0, 4, "ddim", 31, 0.0), "steps must be between 1 and 30"),
        ((0, 4, "ddim", 0, 0.0), "steps must be between 1 and 30"),
        ((0, 4, "ddim", 10, 1.5), "eta must be between 0 and 1"),
        ((-1, 4, "ddim", 10, 0.0), "seed must be between 0 and"),
        ((0, 4, "euler", 10, 0.0), "unknown sampler 'euler'"),
        ((0, "four", "ddim", 10, 0.0), "must be whole numbers"),
    ],
)
def test_bad_settings_are_one_line_errors(model, args, message):
    with pytest.raises(ValueError, match=message):
        space.check_settings(model, *args, False)


def test_clipping_is_on_by_default_and_a_named_choice_away():
    model_free = space.Settings(0, 1, "ddpm", 30, 0.0, False)
    assert model_free.clip is True


def test_unknown_clipping_is_a_one_line_error(model):
    with pytest.raises(ValueError, match="unknown clipping 'sometimes': choose one of clip x̂0 to"):
        space.check_settings(model, 0, 4, "ddim", 10, 0.0, False, clip="sometimes")
    with pytest.raises(ValueError, match="unknown clipping"):
        space.check_settings(model, 0, 4, "ddim", 10, 0.0, False, clip=1)
    assert space.check_settings(model, 0, 4, "ddim", 10, 0.0, False, clip=False).clip is False


def test_registry_caches_and_keeps_serving_after_a_bad_name(model_dir, tmp_path):
    registry = space.ModelRegistry(str(model_dir))
    a = registry.load("")
    assert registry.load(str(model_dir)) is a  # cached
    with pytest.raises(ModelLoadError, match="is not a model folder, a bundled model or a Hub repo id"):
        registry.load(str(tmp_path / "missing"))
    (tmp_path / "notddpm").mkdir()
    with pytest.raises(ModelLoadError, match="not a DDPM in the diffusers layout"):
        registry.load(str(tmp_path / "notddpm"))
    assert registry.load(None) is a


def test_load_errors_for_pickles_and_corrupt_weights(model_dir, tmp_path):
    import shutil

    pickled = tmp_path / "pickled"
    shutil.copytree(model_dir, pickled)
    (pickled / "unet" / "diffusion_pytorch_model.safetensors").rename(pickled / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="only pickle weights"):
        load_pipeline(str(pickled))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(model_dir, corrupt)
    (corrupt / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match="could not be read: the file may be corrupt") as e:
        load_pipeline(str(corrupt))
    assert "safetensors" not in str(e.value) and "Error" not in str(e.value)  # no inner message, no cache path
    with pytest.raises(ModelLoadError, match="not a valid Hub repo id"):
        load_pipeline("not a repo id!!")


def test_forward_view_shows_the_closed_form(model):
    x0 = space.model_input(model, space.held_out_image(model, "3", 0))
    assert x0.shape == (1, 1, 8, 8)
    picture, text = space.forward_view(model, x0, 15, seed=2)
    abar = float(model.scheduler.alphas_cumprod[14])
    assert f"ᾱ_t = {abar:.5f}" in text and f"√ᾱ_t = {abar**0.5:.4f}" in text
    same, _ = space.forward_view(model, x0, 0)
    left, right = np.asarray(same)[:, : same.width // 2 - 4], np.asarray(same)[:, -(same.width // 2 - 4) :]
    assert np.array_equal(left, right)  # at t = 0, x_t is x_0
    strip = space.forward_strip(model, x0, count=4)  # t = 0, then evenly in log-SNR where the picture goes, and T
    ts = [int(c.split(" ")[2]) for _, c in strip]
    assert ts[0] == 0 and ts[-1] == 30 and ts == sorted(ts) and len(ts) == 4
    assert strip[0][1] == "t = 0 (x_0)" and strip[-1][1] == space.frame_caption(model.scheduler, 30)
    snr = [space.log_snr(model.scheduler, t) for t in ts[1:]]
    assert np.allclose(np.diff(snr[:-1]), np.diff(snr[:-1]).mean(), rtol=0.3) or len(snr) < 3  # even steps in log-SNR
    with pytest.raises(ValueError, match="t must be between 0 and 30"):
        space.forward_view(model, x0, 31)


def test_algorithm_1_on_one_picture_shows_the_networks_own_eps_and_the_schedulers_x0(model):
    """The objective view's eps_theta is the network's output for that x_t, x̂0 is the scheduler's predict_x0 of
    it, and the loss curve over all t with one eps per image averages to the training loss on the same images and
    noises (scheduler.loss at each t)."""
    from ddpm.space.objective import loss_curve, objective_parts

    x0 = space.held_out_batch(model, 3)
    parts = objective_parts(model, x0, 12, seed=4)
    index = torch.full((3,), 11)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))
    x_t = model.scheduler.q_sample(x0, index, eps)
    with torch.no_grad():
        eps_theta = model.unet(x_t, index).sample
    assert torch.equal(parts["eps"], eps) and torch.allclose(parts["x_t"], x_t)
    assert torch.allclose(parts["eps_theta"], eps_theta, atol=1e-6)
    assert torch.allclose(parts["x0_hat"], model.scheduler.predict_x0(eps_theta, x_t, index), atol=1e-5)
    ts, eps_err, _ = loss_curve(model, x0, seed=4, count=1000)  # every t of T = 30
    assert list(ts) == list(range(1, 31))
    with torch.no_grad():
        losses = [float(model.scheduler.loss(model.unet, x0, t=torch.full((3,), t - 1), noise=eps)) for t in ts]
    assert np.allclose(eps_err, losses, rtol=1e-5) and abs(eps_err.mean() - np.mean(losses)) < 1e-6
    picture, text = space.objective_view(model, x0, 12, seed=4)
    assert picture.width > 5 * picture.height > 0 and f"= **{float((eps - eps_theta)[:1].pow(2).mean()):.4f}**" in text
    with pytest.raises(ValueError, match="t must be between 1 and 30"):
        space.objective_view(model, x0, 0)


def test_the_objective_reads_a_v_prediction_model_as_eps(model_dir, tmp_path):
    """A v-prediction model's output is read as eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t (eps_loss_weights'
    conversion), so its error is on the same scale as an eps model's."""
    s = DDPMScheduler(num_train_timesteps=30, prediction_type="v_prediction")
    save_pipeline(tmp_path / "v", tiny_unet(), s)
    m = load_pipeline(str(tmp_path / "v"))
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    parts = objective_parts_of(m, x0)
    index = torch.full((2,), 19)
    with torch.no_grad():
        v = m.unet(parts["x_t"], index).sample
    abar = float(s.alphas_cumprod[19])
    assert torch.allclose(parts["eps_theta"], abar**0.5 * v + (1 - abar) ** 0.5 * parts["x_t"], atol=1e-5)


def test_the_objective_takes_the_visitors_drawing_as_x0(tmp_path):
    """The Training objective tab's x_0 can be the drawing tab's canvas: a stroke gives the six pictures and the
    curve; an empty canvas one line, the views unchanged."""
    from PIL import ImageDraw

    from ddpm.space.handlers import DRAWN, Handlers

    handlers = Handlers(None, str(tmp_path / "runs"))
    canvas = Image.new("RGB", (280, 280))
    ImageDraw.Draw(canvas).line([(140, 40), (140, 240)], fill="white", width=20)
    shown = handlers.objective(handlers.name, DRAWN, None, 0, None, 300, 0, {"composite": canvas}, curve=False)
    assert shown["picture"].width > 5 * shown["picture"].height and "t = 300" in shown["text"]
    with pytest.warns(UserWarning, match="the canvas is empty"):  # the refusal's toast (gr.Warning, off a server)
        empty = handlers.objective(handlers.name, DRAWN, None, 0, None, 300, 0, {"composite": Image.new("RGB", (280, 280))})
    assert list(empty) == ["text"] and "draw something first" in empty["text"]


def objective_parts_of(model, x0):
    from ddpm.space.objective import objective_parts

    return objective_parts(model, x0, 20, seed=1)


def test_uploads_and_held_out_images(model, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt is not an image this app can read"):
        space.open_upload(str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="upload an image first"):
        space.open_upload(None)
    Image.new("RGBA", (40, 20), (255, 0, 0, 128)).save(tmp_path / "red.png")
    assert space.open_upload(str(tmp_path / "red.png")).size == (40, 20)
    # a model without held_out.npz gets the digits' test split, by class
    assert space.held_out_set(model).classes == tuple("0123456789")
    with pytest.raises(ValueError, match="between 0 and 35 of 7"):
        space.held_out_image(model, "7", 36)
    with pytest.raises(ValueError, match="pick a class of this model's data: 0, 1, 2"):
        space.held_out_image(model, "Dress", 0)


def test_a_model_folder_brings_its_own_held_out_images(model_dir, tmp_path):
    """held_out.npz beside the weights: the classes in the picker and the first images of the likelihood view."""
    folder = tmp_path / "with-held-out"
    shutil.copytree(model_dir, folder)
    rng = np.random.default_rng(0)
    labels = np.array([2, 0, 1, 0, 2, 1, 0])
    images = rng.integers(0, 256, (7, 8, 8)).astype(np.uint8)
    save_held_out(folder / "held_out.npz", LabelledArrays(images, labels, ("Coat", "Bag", "Shirt")))
    m = load_pipeline(str(folder))
    assert space.held_out_set(m).classes == ("Coat", "Bag", "Shirt")
    assert np.array_equal(np.asarray(space.held_out_image(m, "Coat", 2)), images[6])
    assert space.held_out_order(labels).tolist() == [1, 2, 0, 3, 5, 4, 6]  # Coat, Bag, Shirt, Coat, Bag, Shirt, Coat
    batch = space.held_out_batch(m, 3)
    assert torch.equal(batch[0], space.model_input(m, Image.fromarray(images[1]))[0])
    (folder / "held_out.npz").write_bytes(b"PK\x03\x04 not really")
    space.inputs._held_out_file.cache_clear()
    assert space.held_out_set(load_pipeline(str(folder))).classes == tuple("0123456789")  # broken: the digits


def test_schedule_and_likelihood_views(model):
    fig = space.schedule_figure(model)
    assert len(fig.axes) == 3
    report = space.schedule_report(model)
    assert "T = 30" in report and "⚠️ x_T is not close to N(0, I)" in report
    *progress, (fig, text) = space.likelihood_view(model, space.held_out_batch(model, 2), every_s=0)
    assert [line for _, line in progress][-1] == "computing the bound: 30 of 30 timesteps done (t = 0)"
    assert all(chart is None for chart, _ in progress) and "bits/dim" in text and len(fig.axes) == 2


def test_a_stopped_likelihood_makes_no_more_network_calls(model):
    calls = []
    hook = model.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        steps = space.likelihood_view(model, space.held_out_batch(model, 2), every_s=0)
        next(steps), next(steps)
        steps.close()  # what Gradio's cancel amounts to: no further next()
        assert len(calls) == 2
    finally:
        hook.remove()


def test_workdirs_are_bounded_per_client_and_in_all(tmp_path):
    dirs = space.WorkDirs(tmp_path / "runs", keep=5, per_owner=2)

    def run(owner: str) -> Path:
        path = dirs.new(owner)
        dirs.finished(path)  # made: from now on it may go
        return path

    alice = run("10.0.0.1")
    made = [run("10.0.0.2") for _ in range(6)]  # one visitor's many quick runs
    assert alice.exists() and [p.exists() for p in made] == [False] * 4 + [True] * 2  # theirs go, not alice's
    others = [run(f"10.0.1.{i}") for i in range(4)]
    assert len(list((tmp_path / "runs").iterdir())) == 5 and not alice.exists() and all(p.exists() for p in others)
    assert "10.0.0" not in str(made[-1])  # a hash of the address names the folder, not the address
    going = dirs.new("10.0.2.1")  # a run still being made is never removed, however many come after it
    later = [run("10.0.2.1") for _ in range(3)]
    assert going.exists() and [p.exists() for p in later] == [False, True, True]


def test_bundled_models_are_named_by_what_they_are(model_dir):
    registry = space.ModelRegistry()
    default = space.describe(registry.load("pretrained/ddpm-fashion"))  # as a visitor types it, relative to the project
    assert default.startswith("**bundled Fashion-MNIST model (trained on its 60,000 training images)**")
    assert "x_t (grey, 28x28 px) and its t and predicts the noise ε in it; T = 1000 noising steps" in default
    assert "⚠️" not in default
    digits = space.describe(registry.load("pretrained/ddpm-digits"))
    assert digits.startswith("**bundled digits model (scikit-learn's 8x8 digits") and "8x8 px) and its t" in digits
    article = space.describe(registry.load(space.display_name(space.ARTICLE_T200_MODEL)))
    assert article.startswith("**bundled digits model with a short schedule, T = 200**") and "T = 200 noising" in article
    assert "⚠️ x_T is not close to N(0, I): sqrt(abar_T) = 0.364" in article
    other = space.describe(registry.load(str(model_dir)))
    # any other folder by its path (no card: no data named)
    assert other.startswith(f"**`{model_dir}`**: a UNet (diffusers' `UNet2DModel`")
    (model_dir / "README.md").write_text("A DDPM trained on **my cats** at 8x8.")
    assert space.describe(space.ModelRegistry().load(str(model_dir))).startswith(f"**`{model_dir}`, trained on my cats**")
    (model_dir / "README.md").write_text("trained on **![a](http://example.com/x.png) <img src=y>**")  # a hostile card
    text = space.describe(space.ModelRegistry().load(str(model_dir)))
    assert r"trained on \!\[a\]\(http://example\.com/x\.png\) \<img src=y\>" in text  # shown as text, not rendered
    (model_dir / "README.md").unlink()


# --------------------------------------------------------------------- a Space facing the internet
def test_visitors_load_bundled_models_and_hub_ids_never_the_servers_folders(model_dir, tmp_path, monkeypatch):
    registry = space.ModelRegistry(space.BUNDLED_MODEL, allow_local=False, folders=(str(model_dir),))
    replies = {}
    for name in ["/etc", "/nonexistent", ".", "/proc/self", "../pretrained/ddpm-digits", "~", "a" * 10_000, str(tmp_path)]:
        with pytest.raises(ModelLoadError) as e:
            registry.load(name)
        replies[name] = str(e.value)
    assert replies["/etc"].replace("/etc", "X") == replies["/nonexistent"].replace("/nonexistent", "X")  # nothing to tell apart
    assert "is not a bundled model or a Hub repo id (user/name)" in replies["/proc/self"]
    assert replies["a" * 10_000] == "a model name has at most 200 characters (a Hub repo id is user/name)"
    for reply in replies.values():
        assert str(space.ROOT) not in reply and str(os.getpid()) not in reply and "\n" not in reply
    with pytest.raises(ModelLoadError, match="is not a bundled model or a Hub repo id"):
        registry.load(space.DIGITS_MODEL)  # its install path: a visitor cannot confirm where the Space lives
    assert registry.load("pretrained/ddpm-digits").unet.config.sample_size == 8  # bundled: by its name
    assert registry.load(str(model_dir)).scheduler.num_train_timesteps == 30  # the operator's folder
    # a repo id that happens to be a folder in the server's working directory still goes to the Hub
    monkeypatch.chdir(tmp_path)
    shutil.copytree(model_dir, tmp_path / "alice" / "model")
    with pytest.raises(ModelLoadError, match="alice/model is not cached and the Hub cannot be reached"):
        registry.load("alice/model")


def test_models_over_budget_are_refused_from_their_configs(model_dir, tmp_path):
    small = Limits(max_resolution=4)
    with pytest.raises(ModelLoadError, match="is not served here: it makes 8 px images; this Space serves up to 4 px"):
        space.ModelRegistry(str(model_dir), limits=small).load(str(model_dir))
    endless = tmp_path / "endless"
    shutil.copytree(model_dir, endless)
    config = json.loads((endless / "scheduler" / "scheduler_config.json").read_text())
    (endless / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, "num_train_timesteps": 2_000_000}))
    (endless / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not read")  # never opened: refused first
    with pytest.raises(ModelLoadError, match="T = 2000000 steps; this Space serves T from 2 to 4000"):
        space.ModelRegistry(str(model_dir)).load(str(endless))
    # trained_betas is the schedule: its length is T, whatever num_train_timesteps says; T = 1 has no process to show
    for betas, T in (([0.01] * 50_000, 50000), ([0.5], 1)):
        (endless / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, "trained_betas": betas}))
        with pytest.raises(ModelLoadError, match=f"its schedule has T = {T} steps; this Space serves T from 2 to 4000"):
            space.ModelRegistry(str(model_dir)).load(str(endless))
    with pytest.raises(ModelLoadError, match=r"its weights are \d+ MB; this Space serves models up to 0 MB"):
        space.ModelRegistry(str(model_dir), limits=Limits(max_weights_mb=1e-4)).load(str(model_dir))
    with pytest.raises(ModelLoadError, match=r"one step on one image costs 0\.0 GFLOP; this Space serves up to 1e-06 GFLOP"):
        space.ModelRegistry(str(model_dir), limits=Limits(max_gflop_per_step=1e-6)).load(str(model_dir))


def test_a_request_is_refused_only_far_beyond_the_limit(model_dir):
    m = space.ModelRegistry(str(model_dir)).load("")
    assert m.cost.per_image > 0 and m.cost.fixed >= 0  # measured on this machine when the model loaded
    m.cost = Cost(fixed=0.1, per_image=0.2)  # known numbers: the arithmetic below is exact
    limits = Limits(max_request_s=2.7 + 1e-9)  # 4 images x all 30 steps take 27 s: 10x the limit, not more
    assert space.check_settings(m, 0, 4, "ddpm", 30, 0, False, limits=limits).num_images == 4  # runs; stops at 2.7 s
    with pytest.raises(ValueError, match=r"^5 image\(s\) x 30 steps would take about 33 s here, far over this Space's "
                                         r"2\.7 s a request: 1 image finishes up to 9 steps within it \(use fewer images, "
                                         r"or a sampler with fewer steps\)$"):  # fmt: skip
        space.check_settings(m, 0, 5, "ddpm", 30, 0, False, limits=limits)  # ancestral: no steps slider to name
    assert space.check_settings(m, 0, 16, "ddim", 8, 0, False, limits=limits).num_steps == 8  # 26.4 s
    with pytest.raises(ValueError, match=r"16 image\(s\) x 9 steps .* \(use fewer images or fewer steps\)$"):
        space.check_settings(m, 0, 16, "ddim", 9, 0, False, limits=limits)
    with pytest.raises(ValueError, match=r"5 image\(s\) x 30 steps .* \(use fewer images\)$"):  # the bound: T calls
        space.likelihood_view(m, space.held_out_batch(m, 5), limits=limits)
    one = space.check_settings(m, 0, 1, "ddpm", 30, 0, False)
    space.check_work(m, one, Limits(max_request_s=0.15 + 1e-9), start=5)  # a drawing from t = 5: 5 calls, 1.5 s
    with pytest.raises(ValueError, match=r"1 image\(s\) x 6 steps"):
        space.check_work(m, one, Limits(max_request_s=0.15 + 1e-9), start=6)


def test_the_price_keeps_the_fastest_measurement_and_learns_from_runs(model_dir):
    cost = Cost(fixed=0.1, per_image=0.2)
    assert cost.best(Cost(fixed=0.05, per_image=0.3)) == cost  # 1.2 s against 1.6 s for 1 and 4 images: kept whole
    assert cost.best(Cost(fixed=0.2, per_image=0.1)) == Cost(fixed=0.2, per_image=0.1)  # 0.9 s: the faster, whole
    assert cost.learned(4, 10, 4.5) == pytest.approx(Cost(fixed=0.05, per_image=0.1))  # 9 s predicted, 4.5 s taken
    assert cost.learned(4, 10, 20.0) == cost and cost.learned(4, 0, 1.0) == cost  # slower, or no call: no change
    m = space.ModelRegistry(str(model_dir)).load("")
    quiet = m.cost
    slow = Cost(fixed=quiet.fixed * 50, per_image=quiet.per_image * 50)  # as timed while other work held the cores
    m.cost = slow
    assert space.cost_of(m) is slow  # timed a moment ago: not again
    m.timed["fp32"] -= space.settings.REMEASURE_S + 1
    assert space.cost_of(m).seconds(16, 1) < slow.seconds(16, 1) / 5  # timed again, now quiet: the fastest kept
    m.cost = slow
    settings = space.check_settings(m, 0, 2, "ddim", 5, 0, False)
    list(space.generate(m, settings, model_dir.parent / "learn"))
    assert m.cost.seconds(2, 5) < slow.seconds(2, 5)  # a real run was faster than the price: the price learned it
    bf16 = space.cost_of(m, "bf16")  # timed apart: a CPU's bf16 is slower than fp32 for few images, faster for many
    assert bf16 is not m.cost and bf16.per_image > 0 and space.cost_of(m, "bf16") is bf16


class SlowNetwork(torch.nn.Module):
    """A network whose every call takes `seconds` (sleeping, so threads take turns on an honest clock): eps = x."""

    def __init__(self, seconds: float, sample_size: int = 8):
        super().__init__()
        self.seconds, self.calls, self.batches = seconds, 0, []
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = type("Config", (), {"sample_size": sample_size, "in_channels": 1})()

    def forward(self, x, t):
        import time

        self.calls += 1
        self.batches.append(x.shape[0])
        time.sleep(self.seconds)
        return x * 1.0


def test_the_network_is_shared_in_turns_so_a_long_run_never_holds_it():
    """A long run (200 calls) holds the network when a visitor's 10-step run asks for it: the lock is taken per
    call, in the order asked (`Turns`), so the short run finishes after about 20 calls in all, not after the long
    run's 200. Waiters get their turns in the order they asked, and an idle check never jumps the queue."""
    import threading
    import time

    net = SlowNetwork(0.005)
    long_run, short_run = space.Serialized(net), space.Serialized(net)
    x, finished = torch.zeros(1, 1, 8, 8), {}

    def run(network, n, name):
        for _ in range(n):
            network(x, torch.tensor(5))
        finished[name] = net.calls

    first = threading.Thread(target=run, args=(long_run, 200, "long"))
    first.start()
    while net.calls < 5:
        time.sleep(0.001)
    run(short_run, 10, "short")
    first.join()
    assert finished["short"] <= 40, finished  # 10 of its own, about as many of the long run's between them
    assert short_run.waited > 0 and short_run.calls == 10 and long_run.calls == 200

    turns, order = space.runtime.Turns(), []
    turns.acquire()
    waiters = []
    for i in range(5):
        waiters.append(threading.Thread(target=lambda i=i: (turns.acquire(), order.append(i), turns.release())))
        waiters[-1].start()
        while turns._issued < i + 2:  # this one waits before the next asks
            time.sleep(0.001)
    assert not turns.acquire(blocking=False)  # held, and asked for: not idle
    turns.release()
    for w in waiters:
        w.join()
    assert order == [0, 1, 2, 3, 4] and turns.acquire(blocking=False)
    turns.release()


def test_a_step_of_many_images_is_split_into_turns_with_the_same_result(model):
    """A heavy model's 16 images would hold the network for a minute in one call: with max_batch the step runs
    as several turns (one call counted), with the network's own result."""
    x, t = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor(7)
    with torch.no_grad():
        whole = model.unet(x, t).sample
        split = space.Serialized(model.unet, max_batch=2)
        assert torch.allclose(split(x, t), whole, atol=1e-5) and split.calls == 1
    net = SlowNetwork(0.0)
    space.Serialized(net, max_batch=2)(x, torch.full((5,), 7))  # one timestep per image: split alike
    assert net.batches == [2, 2, 1]


def test_a_heavy_network_is_priced_from_one_call_and_loads_priced_in_both_precisions(model_dir, caplog):
    """Timing 20 image-steps of a 46 GFLOP model took 73 s on 2 cores: a network whose first call is slow is
    priced from that call. A model loads priced in fp32 and bf16 (bf16 ran 3x slower on that model), and its
    arrival example is sized to its price."""
    from ddpm.space.limits import HEAVY_CALL_S, measure_cost

    net = SlowNetwork(HEAVY_CALL_S + 0.1)
    cost = measure_cost(net)
    assert net.calls == 1 and cost.fixed == 0 and cost.per_image >= HEAVY_CALL_S + 0.1
    light = SlowNetwork(0.0)
    measure_cost(light, repeats=3)
    assert light.calls == 1 + 3 + 1 + 3 and light.batches[-1] == 4  # warm-up and best of 3, at batch 1 and 4
    with caplog.at_level("INFO", logger="ddpm.space"):
        m = space.ModelRegistry(str(model_dir)).load("")
    assert m.cost is not None and m.cost_bf16 is not None
    assert re.search(r"one step of one image takes [\d.]+ ms in fp32, [\d.]+ ms in bf16 here \(timed in", caplog.text)


HEAVY_UNET = {  # 175 k parameters; attention over every pixel, one channel a head: at 96 px 45.9 GFLOP a step
    "sample_size": 64, "in_channels": 1, "out_channels": 1, "layers_per_block": 1, "block_out_channels": [32],
    "down_block_types": ["AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D"], "attention_head_dim": 1,
    "norm_num_groups": 8,
}  # fmt: skip


def test_a_heavy_model_loads_in_its_turns_and_never_holds_the_network(tmp_path, monkeypatch):
    """Issue 33's tiny model that held the CPU for 20 minutes per load, at 64 px (9.7 GFLOP, about 1.3 s a call on
    2 cores): its load times one call a precision and runs an arrival example sized to EXAMPLE_SECONDS, while
    another visitor's run on the default model takes a turn between each of its calls; a request of 3 of its
    images runs each step as turns of the images that fit in TURN_S. (The example's target is 4 s here, not 10.)"""
    import threading

    from diffusers import UNet2DModel

    from ddpm.space.handlers import Handlers

    EXAMPLE_SECONDS = 4.0
    monkeypatch.setattr("ddpm.space.handlers.EXAMPLE_SECONDS", EXAMPLE_SECONDS)

    save_pipeline(tmp_path / "heavy", UNet2DModel.from_config(HEAVY_UNET), DDPMScheduler(num_train_timesteps=1000))
    handlers = Handlers(None, str(tmp_path / "runs"), allow_local=True)
    default = handlers.registry.load("")
    order = []  # which network ran, call by call, and on how many images
    default.unet.register_forward_hook(lambda m, args, out: order.append(("default", args[0].shape[0])))
    loaded = {}

    def load():
        loaded["outputs"] = handlers.load_model(str(tmp_path / "heavy"), handlers.registry.default)

    loading = threading.Thread(target=load)
    loading.start()
    while str(tmp_path / "heavy") not in handlers.registry:
        time.sleep(0.05)  # its timing is done: the arrival example runs now
    heavy = handlers.registry.load(str(tmp_path / "heavy"))
    cost, bf16 = heavy.cost, heavy.cost_bf16  # as loaded (the example's run teaches its precision's after)
    heavy.unet.register_forward_hook(lambda m, args, out: order.append(("heavy", args[0].shape[0])))
    visitor = space.check_settings(default, 1, 4, "ddim", 10, 0.0, False)
    list(space.generate(default, visitor, tmp_path / "visitor"))
    loading.join()
    ours = [i for i, (who, _) in enumerate(order) if who == "default"]
    between = [who for who, _ in order[ours[0] : ours[-1]]].count("heavy")
    assert len(ours) == 10 and between <= len(ours), order  # one heavy call at most between two of the visitor's
    assert cost.fixed == 0 and bf16.fixed == 0  # priced from one call a precision: it is heavy here
    precision = space.PRECISION_LABELS[space.default_precision()]
    steps = min(50, max(1, (cost if precision == "fp32" else bf16).steps_that_fit(1, EXAMPLE_SECONDS)))
    example = loaded["outputs"]["status"]
    assert example.startswith(f"An example, made when this model loaded: DPM-Solver++ 2M, {steps} steps, 1 image(s)") or (
        "stopped at step" in example
    ), example
    order.clear()
    three = space.check_settings(heavy, 0, 3, "ddim", 1, 0.0, False)
    size = space.turn_size(heavy)  # as the run sees it when it starts (it learns from the run after)
    *_, done = space.generate(heavy, three, tmp_path / "three", limit_s=60)
    assert done.step == 1 and [n for who, n in order if who == "heavy"] == [min(size, 3 - i) for i in range(0, 3, size)]


def test_a_run_at_the_limit_stops_and_keeps_what_it_made(model, tmp_path, monkeypatch):
    """The limit is checked at every step (here a clock that is over after 7 network calls): the run stops there,
    and its last update has the GIF, gallery and scrubber up to x_t at that step, and says where and why."""

    class SevenCalls(space.RunClock):
        def over(self) -> bool:
            return self.network.calls >= 7

    monkeypatch.setattr("ddpm.space.stream.RunClock", SevenCalls)
    calls = []
    hook = model.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        settings = space.check_settings(model, 3, 4, "ddpm", 30, 0.0, False)
        *_, last = space.generate(model, settings, tmp_path, limit_s=1.0)
    finally:
        hook.remove()
    caption = space.frame_caption(model.scheduler, 23)
    assert len(calls) == 7 and last.done and last.step == 7
    assert last.status.startswith(f"stopped at step 7 of 30 ({caption}) after ")
    assert "this Space's limit for one request" in last.status and last.status.endswith("a sampler with fewer steps.")
    assert last.gallery[-1][1] == caption and last.scrub[-1][1] == caption and Path(last.download).is_file()
    assert Image.open(last.gif).n_frames == len(last.scrub) >= 2  # x_T ... x_23
    frames = list(sample_frames(model, 3, 4))
    expected = grid(frames[7].sample, nrow=2, scale=space.picture_scale(8, 4))
    assert np.array_equal(np.asarray(last.preview), np.asarray(expected))  # x_t at step 7 of the same walk


def sample_frames(model, seed, n):
    from ddpm.sampling import trajectory

    return trajectory(model.unet, model.scheduler, n, generator=torch.Generator().manual_seed(seed), clip_sample=True)


def test_the_disk_budget_removes_the_oldest_first_and_keeps_what_is_in_use(tmp_path):
    import time

    runs, cache = tmp_path / "runs", tmp_path / "cache"
    now = time.time()

    def entry(root: Path, name: str, kb: int, age_s: float) -> Path:
        path = root / name
        path.mkdir(parents=True)
        (path / "f.bin").write_bytes(b"x" * kb * 1024)
        for p in (path / "f.bin", path):
            os.utime(p, (now - age_s, now - age_s))
        return path

    example = entry(runs, space.WorkDirs.EXAMPLES, 100, 9000)  # the arrival example: counted, never removed
    old = [entry(runs, f"run-{i}", 100, 600 - i) for i in range(4)]  # run-0 the oldest
    going = entry(runs, "run-busy", 100, 900)  # a run still being made
    cached = [entry(cache, f"{i:064x}", 50, 500 - i) for i in range(4)]
    fresh = entry(cache, "f" * 64, 50, 1)  # just sent to a browser
    budget = space.DiskBudget([runs, cache], max_bytes=600 * 1024, max_age_s=3600)
    left = budget.prune(busy={going})
    gone = [not p.exists() for p in [*old, *cached]]
    assert example.exists() and going.exists() and fresh.exists()
    assert gone == [True, True, True, False, False, False, False, False], gone  # the oldest runs first, to the budget
    assert left == 550 * 1024
    space.DiskBudget([runs, cache], max_bytes=10**9, max_age_s=450).prune()  # the age limit, whatever the size
    assert not any(p.exists() for p in [old[3], going, *cached]) and fresh.exists() and example.exists()


def test_a_config_that_the_weights_do_not_cover_is_refused(model_dir, tmp_path):
    """A config of many parameters beside a few kB of weights (the missing ones were served uninitialised: NaN images)."""
    fake = tmp_path / "fake"
    shutil.copytree(model_dir, fake)
    config = json.loads((fake / "unet" / "config.json").read_text())
    levels = len(config["block_out_channels"])
    (fake / "unet" / "config.json").write_text(json.dumps({**config, "block_out_channels": [1024] * levels}))
    (fake / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 9000)
    with pytest.raises(ModelLoadError, match=r"its config makes \d+\.\d M parameters but its weights file \(8\.8 kB\) "
                                             r"holds at most 0\.00 M: the weights do not match the config"):  # fmt: skip
        space.ModelRegistry(str(model_dir)).load(str(fake))


def test_the_model_cache_is_bounded_by_memory(model_dir, tmp_path):
    """Kept: the default and the model just asked for; others go, least recently used first, past the budget."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(model_dir, a)
    shutil.copytree(model_dir, b)
    one = space.parameter_bytes(load_pipeline(str(model_dir))) / 2**20
    registry = space.ModelRegistry(str(model_dir), limits=Limits(model_cache_mb=2.5 * one))
    registry.load("")
    registry.load(str(a))
    assert str(a) in registry
    registry.load(str(b))
    assert str(a) not in registry and str(b) in registry and str(model_dir) in registry
    assert sum(space.parameter_bytes(m) for m in registry._models.values()) <= 2.5 * one * 2**20


def test_uploads_are_checked_before_decoding(tmp_path):
    Image.new("1", (5000, 4000)).save(tmp_path / "huge.png")  # a few kB on disk, 20 megapixels decoded
    with pytest.raises(ValueError, match="huge.png is 5000x4000 pixels: upload an image of at most 4096x4096"):
        space.open_upload(str(tmp_path / "huge.png"))
    Image.new("L", (100, 100)).save(tmp_path / "ok.png")
    assert space.open_upload(str(tmp_path / "ok.png")).size == (100, 100)
    with pytest.raises(ValueError, match="is 100x100 pixels: upload an image of at most 50x50"):
        space.open_upload(str(tmp_path / "ok.png"), max_pixels=2500)
    # an .ico holds PNGs that Pillow decodes while opening it, before any size is known: the format is not read
    Image.new("L", (256, 256)).save(tmp_path / "icon.ico", sizes=[(256, 256)])
    assert Image.open(tmp_path / "icon.ico").format == "ICO"
    with pytest.raises(ValueError, match="icon.ico is not an image this app can read: upload a PNG, JPEG, GIF or WebP"):
        space.open_upload(str(tmp_path / "icon.ico"))


def test_work_folders_are_removed_with_their_process_and_their_names_hold_no_pid(tmp_path):
    stale = tmp_path / f"{space.WorkDirs.PREFIX}abc"
    (tmp_path / f"{space.WorkDirs.PREFIX}abc.pid").write_text("999999999")  # a pid that does not run
    orphan = tmp_path / f"{space.WorkDirs.PREFIX}def"  # no pid file at all
    live = tmp_path / f"{space.WorkDirs.PREFIX}ghi"
    (tmp_path / f"{space.WorkDirs.PREFIX}ghi.pid").write_text(str(os.getpid()))
    for folder in (stale, orphan, live):
        folder.mkdir()
    space.WorkDirs.remove_stale(tmp_path)
    assert not stale.exists() and not orphan.exists() and live.exists()
    assert not (tmp_path / f"{space.WorkDirs.PREFIX}abc.pid").exists()
    dirs = space.WorkDirs()
    try:
        assert str(os.getpid()) not in str(dirs.new()) and Path(f"{dirs.root}.pid").read_text() == str(os.getpid())
    finally:
        shutil.rmtree(dirs.root)
        Path(f"{dirs.root}.pid").unlink()


def test_a_hub_model_over_budget_is_refused_before_its_weights_are_downloaded(model_dir, tmp_path):
    """The real huggingface_hub client against the Hub fixture on 127.0.0.1: configs and a HEAD for the weights'
    size are all that is fetched of a model the Space refuses; one within budget is then downloaded and served."""
    import subprocess
    import sys

    from hub_server import FakeHub, Repo

    files = {str(p.relative_to(model_dir)): p.read_bytes() for p in Path(model_dir).rglob("*") if p.is_file()}
    script = (
        "import sys; from ddpm import space; from ddpm.hub import ModelLoadError; from ddpm.space.limits import Limits\n"
        "r = space.ModelRegistry(space.BUNDLED_MODEL, limits=Limits(max_resolution=int(sys.argv[1])), allow_local=False)\n"
        "try:\n    print('LOADED', r.load('alice/ddpm').unet.config.sample_size)\n"
        "except ModelLoadError as e:\n    print('REFUSED', e)\n"
    )
    with FakeHub() as hub:
        hub.repos["alice/ddpm"] = Repo(files=files, commits=["1" * 40])
        env = hub_env(hub, tmp_path)
        refused = subprocess.run([sys.executable, "-c", script, "4"], env=env, capture_output=True, text=True, timeout=120)
        assert "REFUSED alice/ddpm is not served here: it makes 8 px images" in refused.stdout, refused.stderr[-2000:]
        weights = [(m, p) for m, p in hub.requests if p.endswith(".safetensors")]
        assert weights and all(m == "HEAD" for m, _ in weights)  # its size was asked, its bytes never
        served = subprocess.run([sys.executable, "-c", script, "64"], env=env, capture_output=True, text=True, timeout=120)
        assert "LOADED 8" in served.stdout, served.stderr[-2000:]
        assert any(m == "GET" and p.endswith("/unet/diffusion_pytorch_model.safetensors") for m, p in hub.requests)


def test_hub_side_files_are_bounded_before_download_and_the_hub_cache_is_pruned(model_dir, tmp_path):
    """A card, configs or held-out images larger than the app reads are refused from the Hub's file listing (never
    downloaded); Hub models on disk stay within DDPM_HUB_CACHE_MB, least recently used deleted first."""
    import subprocess
    import sys

    from hub_server import FakeHub, Repo

    files = {str(p.relative_to(model_dir)): p.read_bytes() for p in Path(model_dir).rglob("*") if p.is_file()}
    one = sum(map(len, files.values()))
    script = (
        "import sys; from ddpm import space; from ddpm.hub import ModelLoadError; from ddpm.space.limits import Limits\n"
        "limits = Limits(hub_cache_mb=float(sys.argv[1]), model_cache_mb=0.001)  # memory: the default and the last\n"
        "r = space.ModelRegistry(space.BUNDLED_MODEL, limits=limits, allow_local=False)\n"
        "for name in sys.argv[2:]:\n"
        "    try:\n        r.load(name); print('LOADED', name)\n"
        "    except ModelLoadError as e:\n        print('REFUSED', e)\n"
    )
    configs = {f"extra/{i:03d}/config.json": b"{}" for i in range(400)}
    huge = json.loads(files["unet/config.json"]) | {"sample_size": 4096}  # refused once its configs are read
    too_large = {**files, "unet/config.json": json.dumps(huge).encode(), "README.md": b"x" * 400_000}
    with FakeHub() as hub:
        hub.repos["bob/big-card"] = Repo(files={**files, "README.md": b"x" * 600_000}, commits=["1" * 40])
        hub.repos["eve/configs"] = Repo(files={**files, **configs}, commits=["4" * 40])
        for name in ("alice/a", "alice/b", "alice/c"):
            hub.repos[name] = Repo(files=files, commits=["2" * 40])
        for name in ("mallory/a", "mallory/b", "mallory/c"):
            hub.repos[name] = Repo(files=too_large, commits=["5" * 40])
        env = hub_env(hub, tmp_path)
        cap_mb = 1.5 * one / 2**20  # room for one model, not two
        refused = ["bob/big-card", "eve/configs", "mallory/a", "mallory/b", "mallory/c"]
        args = [sys.executable, "-c", script, str(cap_mb), *refused, "alice/a", "alice/b", "alice/c", *refused[2:]]
        out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
        assert "REFUSED bob/big-card: its README.md is 0.6 MB; this app reads at most 0.50 MB" in out.stdout, out.stderr[-2000:]
        assert "REFUSED eve/configs has 403 config and card files; this app reads at most 16" in out.stdout
        assert out.stdout.count("REFUSED mallory/") == 6 and "it makes 4096 px images" in out.stdout
        for repo in ("bob/big-card", "eve/configs"):  # nothing of them downloaded
            assert not any(p.startswith(f"/{repo}/resolve/") for _, p in hub.requests)
        assert any(p.startswith("/mallory/a/resolve/") for _, p in hub.requests)  # their side files were
        assert out.stdout.count("LOADED alice/") == 3
    cached = [p for p in (tmp_path / "hf" / "hub").glob("models--*") if any(p.rglob("*.safetensors"))]
    assert [p.name for p in cached] == ["models--alice--c"]  # the last one used; the others were deleted
    on_disk = [f for f in (tmp_path / "hf" / "hub").rglob("*") if f.is_file() and not f.is_symlink()]  # blobs, not links
    assert sum(f.stat().st_size for f in on_disk) <= cap_mb * 2**20


CIFAR10_UNET = {  # google/ddpm-cifar10-32's unet/config.json (Ho et al.'s CIFAR-10 model): 35.7 M parameters
    "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": None, "block_out_channels": [128, 256, 256, 256],
    "center_input_sample": False, "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32, "out_channels": 3, "sample_size": 32,
    "time_embedding_type": "positional", "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}  # fmt: skip


def test_google_ddpm_cifar10_loads_with_the_default_budget_and_gets_what_fits(tmp_path):
    """Its 12.4 GFLOP a step was refused by the old 2 GFLOP cap though a few images with DDIM take seconds here.
    Its exact config with random weights, from the Hub fixture, under the default limits: it loads, the Space says
    what fits, refuses 16 x 1000 steps with what would fit, and serves a few images with DDIM."""
    import subprocess
    import sys

    from diffusers import UNet2DModel
    from hub_server import FakeHub, Repo

    save_pipeline(tmp_path / "cifar", UNet2DModel.from_config(CIFAR10_UNET), DDPMScheduler(num_train_timesteps=1000))
    files = {str(p.relative_to(tmp_path / "cifar")): p.read_bytes() for p in (tmp_path / "cifar").rglob("*") if p.is_file()}
    script = (
        "from ddpm import space; from ddpm.space.limits import Limits\n"
        "limits = Limits()  # the defaults\n"
        "m = space.ModelRegistry(space.BUNDLED_MODEL, limits=limits, allow_local=False).load('google/ddpm-cifar10-32')\n"
        "print('NOTE', space.budget_note(m, limits))\n"
        "try:\n    space.check_settings(m, 0, 16, 'ddpm', 1000, 0, False, limits=limits)\n"
        "except ValueError as e:\n    print('REFUSED', e)\n"
        "s = space.check_settings(m, 0, 2, 'ddim', 50, 0, False, limits=limits)\n"
        "s = space.check_settings(m, 0, 2, 'ddim', 3, 0, False, limits=limits)\n"
        "import tempfile; print('DONE', list(space.generate(m, s, tempfile.mkdtemp()))[-1].status)\n"
    )
    with FakeHub() as hub:
        hub.repos["google/ddpm-cifar10-32"] = Repo(files=files, commits=["3" * 40])
        env = hub_env(hub, tmp_path)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert "DONE done: 3 steps for 2 image(s)" in out.stdout, out.stdout + out.stderr[-2000:]
    note = next(line for line in out.stdout.splitlines() if line.startswith("NOTE"))
    assert re.search(
        r"all 1000 steps of the paper's own sampler \(Algorithm 2\) about \d+ s for 16 images \((1 image gets \d+ steps "
        r"in|[1-3] finish within the limit)\)\. A run stops after 60 s, this Space's limit for one request, and keeps",
        note,
    ), note  # on 2 cores: at most a few images with all the steps
    fast = r"\*\*: 50 steps of a fast sampler \(DPM-Solver\+\+ 2M or DDIM\) take about \d+ s for 16 images"
    fast += r"( \(([2-9]|1[0-6]) finish within the limit\))?;"
    assert re.search(fast, note), note  # a few to all 16 images, 50 steps
    assert re.search(
        r"REFUSED 16 image\(s\) x 1000 steps would take about \d+ s here, far over this Space's 60 s a request: "
        r"(1 image finishes up to \d+ steps|[1-3] image\(s\) at 1000 steps finish) within it \(use fewer images, or a "
        r"sampler with fewer steps\)",
        out.stdout,
    ), out.stdout


# --------------------------------------------------------------------- your drawing through q and p_theta
def final_tensor(update) -> np.ndarray:
    return np.asarray(update.preview).astype(int)


def test_a_drawing_is_noised_to_t_and_brought_back(model, tmp_path):
    drawing = Image.new("L", (280, 280))
    drawing.paste(255, (60, 40, 220, 240))  # a white block on the black canvas
    settings = space.check_settings(model, 4, 1, "ddpm", 30, 0, False)
    first = list(space.from_drawing(model, drawing, 12, settings, tmp_path / "a", min_interval=0.0))
    again = list(space.from_drawing(model, drawing, 12, settings, tmp_path / "b", min_interval=0.0))
    assert first[-1].status.startswith("done: 12 steps") and first[0].status.startswith("step 0 of 12 · t = 12")
    assert np.array_equal(final_tensor(first[-1]), final_tensor(again[-1]))  # same seed, same result
    assert [c for _, c in first[-1].gallery][0].startswith("t = 12 · SNR")
    x0 = space.model_input(model, drawing)
    input_picture = np.asarray(grid(x0, scale=space.picture_scale(8, 1)))
    shown = final_tensor(first[-1])
    height, width = input_picture.shape[:2]  # input | x_t | result, side by side, each labelled below
    assert np.array_equal(shown[:height, :width], input_picture) and shown.shape[0] == height + 18
    (zero,) = space.from_drawing(model, drawing, 0, settings, tmp_path / "c")
    assert np.array_equal(np.asarray(zero.preview), input_picture)  # t = 0: the input itself


def test_a_drawing_from_t_equal_T_is_generates_image_for_that_seed(tmp_path):
    m = load_pipeline(str(save_pipeline(tmp_path / "m", tiny_unet(), DDPMScheduler(num_train_timesteps=1000))))
    settings = space.check_settings(m, 9, 1, "ddim", 10, 0, False)
    drawing = Image.new("L", (28, 28))
    drawing.paste(255, (8, 4, 20, 24))
    drawn = list(space.from_drawing(m, drawing, 1000, settings, tmp_path / "d"))[-1]
    plain = list(space.generate(m, settings, tmp_path / "g"))[-1]
    ours, theirs = final_tensor(drawn)[: plain.preview.height, -plain.preview.width :], final_tensor(plain)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).mean() < 3  # x_T differs only by sqrt(abar_T) x_0 = 0.006 x_0: the same image


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "P", "I;16", "LA"])
def test_any_image_mode_can_be_drawn_or_uploaded(model, mode, tmp_path):
    a = np.zeros((40, 30, 4), dtype=np.uint8)
    a[10:30, 5:25] = 255
    image = Image.fromarray(a, "RGBA") if mode in ("RGBA", "LA") else Image.fromarray(a[..., :3], "RGB")
    image = image.convert(mode) if mode != "I;16" else Image.fromarray(a[..., 0].astype(np.uint16) * 257)
    x0 = space.model_input(model, space.drawing_image(image))
    assert x0.shape == (1, 1, 8, 8) and x0.max() > 0 and x0.min() == -1  # strokes bright, canvas black


def test_empty_or_missing_drawings_get_one_line(model):
    with pytest.raises(ValueError, match="draw something first"):
        space.drawing_image(None)
    with pytest.raises(ValueError, match="the canvas is empty"):
        space.drawing_image(Image.new("RGBA", (280, 280)))  # transparent: nothing drawn
    with pytest.raises(ValueError, match="the canvas is empty"):
        space.drawing_image(Image.new("L", (280, 280), 255))
    assert "keeps your drawing and cleans it up" in space.strength_note(model, 1)
    assert "**t = 0**" in space.strength_note(model, 0)
    with pytest.raises(ValueError, match="t must be between 0 and 30"):
        space.strength_note(model, 31)
    big = space.strength_note(load_pipeline(space.BUNDLED_MODEL), 1000)
    assert "forgets your drawing" in big and "SNR = ᾱ_t / (1 − ᾱ_t) = 4.0" in big


# --------------------------------------------------------------------- the device
def test_the_device_is_cuda_when_present_else_the_cpu_and_an_operator_can_force_it(monkeypatch, model_dir):
    assert space.pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("DDPM_DEVICE", "cpu")
    assert space.pick_device().type == "cpu"
    registry = space.ModelRegistry(str(model_dir))
    assert next(registry.load("").unet.parameters()).device.type == "cpu"  # moved there once, when it loaded
    assert "On this machine (cpu) one step of one image takes about" in space.budget_note(registry.load(""), Limits())
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="DDPM_DEVICE=cuda but no CUDA device is visible here: use auto or cpu"):
            space.pick_device("cuda")
    with pytest.raises(ValueError, match="DDPM_DEVICE='tpu9' is not a device: use auto, cpu or cuda"):
        space.pick_device("tpu9")


def test_off_zerogpu_the_gpu_wrapper_changes_nothing():
    """Hugging Face's `spaces.GPU` attaches a ZeroGPU device per call; anywhere else (SPACES_ZERO_GPU unset, as
    here) it must hand back the very function, generators included."""
    import spaces  # noqa: F401 - installed with the requirements: the wrapper is real, not skipped

    def steps(n):
        yield from range(n)

    assert os.environ.get("SPACES_ZERO_GPU") is None
    assert space.on_gpu(steps, lambda n: 10) is steps and list(space.on_gpu(steps)(3)) == [0, 1, 2]


def test_a_client_is_the_address_the_nearest_trusted_proxy_reports(monkeypatch, caplog):
    """Off a Space no proxy is trusted (X-Forwarded-For is whatever the client says); on one, Hugging Face's proxy
    appends the visitor's address; behind more, DDPM_PROXY_HOPS counts them from the right. The client's own
    entries (further left) never count; several headers are one list."""
    from ddpm.space.guards import client_of, forwarded_client, proxy_hops

    monkeypatch.delenv("DDPM_PROXY_HOPS", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert proxy_hops() == 0 and forwarded_client("6.6.6.6") is None
    scope = {"headers": [(b"x-forwarded-for", b"6.6.6.6")], "client": ("127.0.0.1", 5000)}
    assert client_of(scope) == "127.0.0.1"  # the header is ignored: anyone can send it
    monkeypatch.setenv("SPACE_ID", "someone/ddpm-space")
    assert proxy_hops() == 1 and forwarded_client("6.6.6.6, 93.184.216.34") == "93.184.216.34"
    headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"7.7.7.7, 93.184.216.35")]
    two = {"headers": headers, "client": ("10.1.2.3", 1)}
    assert client_of(two) == "93.184.216.35"  # two headers: one list, the last entry the proxy's
    monkeypatch.setenv("DDPM_PROXY_HOPS", "2")  # behind two proxies that each append
    assert forwarded_client("6.6.6.6, 93.184.216.36, 172.16.0.1") == "93.184.216.36"
    assert forwarded_client("93.184.216.37") == "93.184.216.37"  # met one proxy only: its entry
    with caplog.at_level("INFO", logger="ddpm.space"):
        forwarded_client("6.6.6.6, 10.0.0.9, 172.16.0.1")  # the entry taken is private: a proxy more than counted
    assert "entry -2, taken as the client, is a private address" in caplog.text and "10.0.0.9" not in caplog.text
    monkeypatch.setenv("DDPM_PROXY_HOPS", "two")
    with pytest.raises(ValueError, match="DDPM_PROXY_HOPS='two' is not a whole number"):
        proxy_hops()
