"""Is it copying? The training set's ideal denoiser checked against its equation and shown to copy, the nearest-image
search against a brute-force one, and the Space's view on the bundled digits model (its 1,437 training images ship
with scikit-learn)."""

import pytest
import torch

from ddpm import space
from ddpm.data import digits_arrays
from ddpm.hub import load_pipeline
from ddpm.ideal import CHUNK, IdealDenoiser, ideal_x0, nearest
from ddpm.sampling import sample


@pytest.fixture(scope="module")
def digits():
    return load_pipeline(space.DIGITS_MODEL)


def small_set(n: int = 12) -> torch.Tensor:
    images, _ = digits_arrays("train")
    return torch.from_numpy(images[:n])[:, None]  # [n, 1, 8, 8] uint8


def test_the_ideal_denoiser_is_its_equation(digits):
    """x̂0*(x_t, t) = sum_i softmax_i(-||x_t - sqrt(abar_t) x_i||^2 / (2 (1 - abar_t))) x_i, written out image by image."""
    train = small_set()
    x_i = train.double() / 127.5 - 1
    x_t = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t in (10, 300, 999):
        abar = float(digits.scheduler.alphas_cumprod[t])
        logits = torch.stack([-((x_t - abar**0.5 * x).flatten(1) ** 2).sum(1) / (2 * (1 - abar)) for x in x_i], dim=1)
        expected = torch.einsum("bn,nchw->bchw", torch.softmax(logits, dim=1), x_i)
        y = x_i.float().flatten(1)
        got = ideal_x0(x_t.float(), abar, y, (y * y).sum(1))
        assert torch.allclose(got.double(), expected, atol=1e-4), t
    eps = IdealDenoiser(train, digits.scheduler)(x_t.float(), torch.tensor(300))  # answers as the UNet: eps
    abar = float(digits.scheduler.alphas_cumprod[300])
    assert torch.allclose(digits.scheduler.predict_x0(eps, x_t.float(), 300), ideal_x0(x_t.float(), abar, y, (y * y).sum(1)),
                          atol=1e-4)  # fmt: skip


def test_the_ideal_denoiser_only_returns_training_images(digits):
    """Through the Space's samplers from noise, every sample of the ideal denoiser is one of its 12 training images."""
    train = small_set()
    for sampler in ("dpm2m", "ddim"):
        x = sample(IdealDenoiser(train, digits.scheduler), digits.scheduler, 6, sampler=sampler, num_inference_steps=30,
                   generator=torch.Generator().manual_seed(1))  # fmt: skip
        _, dist = nearest(x, train, 1)
        assert dist.max() < 1e-3, (sampler, dist)
    ours = sample(digits.unet, digits.scheduler, 6, sampler="dpm2m", generator=torch.Generator().manual_seed(1))
    assert nearest(ours, train, 1)[1].min() > 0.05  # the network's are not these 12 images


def test_the_nearest_images_are_the_brute_force_ones():
    """Exact, in chunks: the same indices and distances as torch.cdist over the whole set (more images than a chunk)."""
    g = torch.Generator().manual_seed(3)
    train = torch.randint(0, 256, (CHUNK + 1500, 1, 6, 6), generator=g, dtype=torch.uint8)
    x = torch.rand(5, 1, 6, 6, generator=g) * 2 - 1
    x[0] = train[CHUNK + 7].float() / 127.5 - 1  # one query is a training image of the second chunk
    index, dist = nearest(x, train, 3)
    d = torch.cdist(x.flatten(1).double(), (train.double() / 127.5 - 1).flatten(1))
    brute_d, brute_i = d.topk(3, dim=1, largest=False)
    assert torch.equal(index, brute_i) and index[0, 0] == CHUNK + 7
    # float32's ||x||^2 - 2 x.y + ||y||^2 leaves ~1e-8 at a zero distance, 1e-4 after the square root
    assert torch.allclose(dist.double(), brute_d / 36**0.5 / 2, atol=5e-4) and dist[0, 0] < 5e-4


def test_the_copies_view_compares_samples_ideal_and_held_out_images(digits):
    picture, text = space.copies_view(digits, 0, 2, 20)
    assert picture.width > 3 * picture.height  # three blocks side by side, each 2 rows of 4 pictures
    assert "Nearest training image (of 1,437)" in text and "the ideal denoiser's 0.000" in text
    ours, real = (float(text.split(label)[1].split()[0].strip("*,.")) for label in ("samples ", "test images "))
    assert ours > 0.02 and real > 0.02
    train = space.training_set(digits)  # a run's own images, e.g. training images themselves: copies, at 0
    picture, text = space.copies_view(digits, 0, 8, 20, samples=train[:3].float() / 127.5 - 1)
    assert "**your run's images 0.000**" in text and picture.height < 4 * (8 * 12 + 18)  # 3 rows, not 8
    with pytest.raises(ValueError, match="pick 1 to 8 images and 1 to 100 steps"):
        space.copies_view(digits, 0, 9, 20)
    with pytest.raises(ValueError, match="whole numbers"):
        space.copies_view(digits, "a", 2, 20)


def test_a_model_without_its_training_images_here_says_so(tmp_path):
    """A folder whose card names no data set this machine has: the view says so in one line, and names nothing else."""
    from helpers import tiny_unet

    from ddpm.hub import save_pipeline
    from ddpm.scheduler import DDPMScheduler

    model = load_pipeline(str(save_pipeline(tmp_path / "m", tiny_unet(), DDPMScheduler(num_train_timesteps=100))))
    assert space.training_set(model) is None
    (tmp_path / "m" / "README.md").write_text("A DDPM trained on **my cats** at 8x8.")
    assert space.training_set(model) is None
    with pytest.raises(ValueError, match="^this model's training images are not on this Space, so there is nothing"):
        space.copies_view(model, 0, 2, 10)
    (tmp_path / "m" / "README.md").write_text("A DDPM trained on **digits** at 8x8.")
    assert tuple(space.training_set(model).shape) == (1437, 1, 8, 8)


# --------------------------------------------------------------------- which sampler: all of them from one x_T
def test_every_sampler_row_starts_from_the_same_x_T(digits):
    from ddpm.sampling import trajectory
    from ddpm.space.samplers import plan

    rows = plan(1000, 20, 0.5)
    assert [key for _, key, _ in rows] == ["ancestral", "respaced-20", "ddim-20", "ddim-20 eta 0.5", "dpm2m-20"]
    firsts = [next(trajectory(digits.unet, digits.scheduler, 2, generator=torch.Generator().manual_seed(4), **kw)).sample
              for _, _, kw in rows]  # fmt: skip
    assert all(torch.equal(firsts[0], x) for x in firsts[1:])
    assert [key for _, key, _ in plan(1000, 20, 0.0)] == ["ancestral", "respaced-20", "ddim-20", "dpm2m-20"]


def test_the_samplers_view_counts_calls_and_shows_eta_1_is_respaced(digits, monkeypatch):
    picture, text = space.samplers_view(digits, 3, 2, 10, 1.0)
    assert picture.height > 5 * 2 * 18 and picture.width > picture.height  # five rows, x_0 then three x̂0 each
    lines = [line for line in text.splitlines() if line.startswith("| ") and "sampler" not in line]
    assert [int(line.split(" | ")[1]) for line in lines] == [1000, 10, 10, 10, 10]  # network calls of each row
    same = float(text.split("end on the same pictures, max |difference| ")[1].rstrip("."))
    assert same < 1e-4  # the same steps: equal but for float rounding

    class AfterTheFirstRow(space.RunClock):  # a request whose limit is spent by the 1000 ancestral steps
        def over(self) -> bool:
            return self.network.calls >= 1000

    monkeypatch.setattr("ddpm.space.samplers.RunClock", AfterTheFirstRow)
    one_row, partial = space.samplers_view(digits, 3, 1, 10, 0.0)
    assert one_row.height < picture.height / 3 and partial.count("not run: the request's 60 s were spent") == 3
    with pytest.raises(ValueError, match="pick a seed up to .*, 1 to 4 images, 1 to 1000 steps, eta 0 to 1"):
        space.samplers_view(digits, 0, 2, 10, 1.5)


def test_each_row_beside_the_fashion_fd_the_card_measured():
    from ddpm.space.samplers import card_scores

    model = load_pipeline(space.BUNDLED_MODEL)
    scores, card = card_scores(model), (model.path / "README.md").read_text()
    assert {"ancestral", "respaced-50", "ddim-50", "ddim-50 eta 1", "dpm2m-50", "ddim-50 unclipped"} <= set(scores)
    assert all(f"| {key} | " in card and f" | {fd} | " in card for key, fd in scores.items())
    assert scores["ddim-50 eta 1"] == scores["respaced-50"]  # the same pictures, the same score
