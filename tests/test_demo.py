"""The Space's logic (ddpm.demo) without a server."""

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline
from diffusers import DDPMScheduler as DiffusersDDPMScheduler
from helpers import tiny_unet
from PIL import Image

from ddpm import DDPMScheduler, demo
from ddpm.data import LabelledArrays, save_held_out
from ddpm.hub import ModelLoadError, load_pipeline, save_pipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    save_pipeline(path, tiny_unet(), DDPMScheduler(num_train_timesteps=30))
    return path


@pytest.fixture(scope="module")
def model(model_dir):
    return load_pipeline(str(model_dir))


def test_generate_streams_then_delivers_gif_gallery_and_zip(model, tmp_path):
    settings = demo.check_settings(model, 5, 4, "ddpm", 999, 0.0, True)
    assert settings.num_steps == 30  # ancestral always walks all T steps
    updates = list(demo.generate(model, settings, tmp_path, min_interval=0.0))
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
    # 2 x 2 images of 8 px with 1 px borders, upscaled x8 with nearest neighbour; the x0 grid 8 px beside it
    assert last.preview.size == (2 * (2 * 9 + 1) * 8 + 8, (2 * 9 + 1) * 8)


def test_frames_are_spread_evenly_in_log_snr():
    """With the linear schedule the picture forms late (SNR = 1 near t = 260 of 1000): evenly in log-SNR the gallery
    shows that part, where frames evenly in t would spend most of themselves on noise."""
    s = DDPMScheduler(num_train_timesteps=1000)
    times = list(range(1000, -1, -1))  # the ancestral walk: t = T ... 0
    picks = demo.log_snr_frames(s, times, 11)
    assert picks[0] == 0 and picks[-1] == 1000 and len(picks) == 11
    shown = [times[i] for i in picks]
    levels = np.array([demo.log_snr(s, t) for t in shown[:-1]])
    gaps = np.diff(levels)
    assert gaps.min() > 0.8 * gaps.mean() and gaps.max() < 1.25 * gaps.mean()  # even in log-SNR
    assert sum(t < 260 for t in shown) >= 6  # most frames where the picture forms ...
    assert sum(t < 260 for t in times[::100]) <= 3  # ... not so evenly in t
    few = [50, 40, 30, 20, 10, 0]
    assert demo.log_snr_frames(s, few, 11) == list(range(6))  # fewer frames than asked: all of them
    assert demo.frame_caption(s, 1000).startswith("t = 1000 · SNR 4.0") and demo.frame_caption(s, 0) == "t = 0 (x_0)"


def test_same_seed_same_images_as_diffusers_pipeline(model, model_dir, tmp_path):
    settings = demo.check_settings(model, 11, 4, "DDPM ancestral, all T steps (Algorithm 2)", 30, 0.0, False)
    final = list(demo.generate(model, settings, tmp_path))[-1]
    ours = np.asarray(Image.open(final.gallery[-1][0]))
    pipe = DDPMPipeline(unet=model.unet, scheduler=DiffusersDDPMScheduler.from_pretrained(model_dir, subfolder="scheduler"))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=4, generator=torch.Generator().manual_seed(11), num_inference_steps=30, output_type="pt").images
    expected = np.asarray(demo.grid(theirs * 2 - 1, nrow=2, scale=8))
    assert np.abs(ours.astype(int) - expected.astype(int)).max() <= 1
    again = list(demo.generate(model, settings, tmp_path / "again"))[-1]
    assert np.array_equal(np.asarray(Image.open(again.gallery[-1][0])), ours)


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
        demo.check_settings(model, *args, False)


def test_registry_caches_and_keeps_serving_after_a_bad_name(model_dir, tmp_path):
    registry = demo.ModelRegistry(str(model_dir), capacity=2)
    a = registry.load("")
    assert registry.load(str(model_dir)) is a  # cached
    with pytest.raises(ModelLoadError, match="is not a model folder"):
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
    with pytest.raises(ModelLoadError, match="could not be read .* may be corrupt"):
        load_pipeline(str(corrupt))
    with pytest.raises(ModelLoadError, match="not a valid Hub repo id"):
        load_pipeline("not a repo id!!")


def test_forward_view_shows_the_closed_form(model):
    x0 = demo.model_input(model, demo.held_out_image(model, "3", 0))
    assert x0.shape == (1, 1, 8, 8)
    picture, text = demo.forward_view(model, x0, 15, seed=2)
    abar = float(model.scheduler.alphas_cumprod[14])
    assert f"abar_t = {abar:.5f}" in text and f"sqrt(abar_t) = {abar**0.5:.4f}" in text
    same, _ = demo.forward_view(model, x0, 0)
    left, right = np.asarray(same)[:, : same.width // 2 - 4], np.asarray(same)[:, -(same.width // 2 - 4) :]
    assert np.array_equal(left, right)  # at t = 0, x_t is x_0
    strip = demo.forward_strip(model, x0, count=4)
    assert [c for _, c in strip] == ["t = 0", "t = 10", "t = 20", "t = 30"]
    with pytest.raises(ValueError, match="t must be between 0 and 30"):
        demo.forward_view(model, x0, 31)


def test_uploads_and_held_out_images(model, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt is not an image this app can read"):
        demo.open_upload(str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="upload an image first"):
        demo.open_upload(None)
    Image.new("RGBA", (40, 20), (255, 0, 0, 128)).save(tmp_path / "red.png")
    assert demo.open_upload(str(tmp_path / "red.png")).size == (40, 20)
    # a model without held_out.npz gets the digits' test split, by class
    assert demo.held_out_set(model).classes == tuple("0123456789")
    with pytest.raises(ValueError, match="between 0 and 35 of 7"):
        demo.held_out_image(model, "7", 36)
    with pytest.raises(ValueError, match="pick a class of this model's data: 0, 1, 2"):
        demo.held_out_image(model, "Dress", 0)


def test_a_model_folder_brings_its_own_held_out_images(model_dir, tmp_path):
    """held_out.npz beside the weights: the classes in the picker and the first images of the likelihood view."""
    folder = tmp_path / "with-held-out"
    shutil.copytree(model_dir, folder)
    rng = np.random.default_rng(0)
    labels = np.array([2, 0, 1, 0, 2, 1, 0])
    images = rng.integers(0, 256, (7, 8, 8)).astype(np.uint8)
    save_held_out(folder / "held_out.npz", LabelledArrays(images, labels, ("Coat", "Bag", "Shirt")))
    m = load_pipeline(str(folder))
    assert demo.held_out_set(m).classes == ("Coat", "Bag", "Shirt")
    assert np.array_equal(np.asarray(demo.held_out_image(m, "Coat", 2)), images[6])
    assert demo.held_out_order(labels).tolist() == [1, 2, 0, 3, 5, 4, 6]  # Coat, Bag, Shirt, Coat, Bag, Shirt, Coat
    batch = demo.held_out_batch(m, 3)
    assert torch.equal(batch[0], demo.model_input(m, Image.fromarray(images[1]))[0])
    (folder / "held_out.npz").write_bytes(b"PK\x03\x04 not really")
    demo._held_out_file.cache_clear()
    assert demo.held_out_set(load_pipeline(str(folder))).classes == tuple("0123456789")  # broken: the digits


def test_schedule_and_likelihood_views(model):
    fig = demo.schedule_figure(model)
    assert len(fig.axes) == 3
    report = demo.schedule_report(model)
    assert "T = 30" in report and "⚠️ x_T is not close to N(0, I)" in report
    calls = []
    fig, text = demo.likelihood_view(model, demo.held_out_batch(model, 2), progress=lambda i, n: calls.append((i, n)))
    assert calls[-1] == (30, 30) and "bits/dim" in text and len(fig.axes) == 2


def test_workdirs_are_bounded(tmp_path):
    dirs = demo.WorkDirs(tmp_path / "runs", keep=3)
    made = [dirs.new() for _ in range(6)]
    assert len(list((tmp_path / "runs").iterdir())) == 3 and made[-1].exists()


def test_bundled_models_are_named_by_what_they_are(model_dir):
    registry = demo.ModelRegistry()
    default = demo.describe(registry.load("pretrained/ddpm-fashion"))  # as a visitor types it, relative to the project
    assert default.startswith("**bundled Fashion-MNIST model (trained on its 60,000 training images)**")
    assert "1 channel(s) at 28x28 px; T = 1000" in default and "⚠️" not in default
    digits = demo.describe(registry.load("pretrained/ddpm-digits"))
    assert digits.startswith("**bundled digits model (scikit-learn's 8x8 digits") and "8x8 px; T = 1000" in digits
    article = demo.describe(registry.load(demo.display_name(demo.ARTICLE_T200_MODEL)))
    assert article.startswith("**bundled digits model with the article's T = 200**") and "T = 200," in article
    assert "⚠️ x_T is not close to N(0, I): sqrt(abar_T) = 0.364" in article
    other = demo.describe(registry.load(str(model_dir)))
    assert other.startswith(f"**`{model_dir}`**: UNet2DModel")  # any other folder by its path (no card: no data named)
    (model_dir / "README.md").write_text("A DDPM trained on **my cats** at 8x8.")
    assert demo.describe(demo.ModelRegistry().load(str(model_dir))).startswith(f"**`{model_dir}`, trained on my cats**")
    (model_dir / "README.md").unlink()
