"""The quality metric the benchmarks report (the benchmarks themselves are run, not asserted)."""

import numpy as np
import pytest
import torch

from benchmarks.quality import bootstrap_fd, frechet_distance, through_model_path, to_metric


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20_000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.5])
    assert frechet_distance(a, a + shift) == pytest.approx((shift**2).sum(), rel=1e-6)
    # N(0, I) vs N(0, 4I) in 3-d: 3 * (1 + 4 - 2 * 2) = 3
    assert frechet_distance(a, 2 * rng.normal(size=(20_000, 3))) == pytest.approx(3.0, rel=0.05)
    assert frechet_distance(a, a + shift) == pytest.approx(frechet_distance(a + shift, a), rel=1e-9)


def test_metric_path():
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    assert to_metric(x).shape == (5, 1, 8, 8)
    real, labels = through_model_path("test", 16)
    assert real.shape == (360, 1, 8, 8) and len(labels) == 360 and real.min() >= -1 and real.max() <= 1


def test_bootstrap_fd_spread_is_the_sampling_noise():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(5000, 2))
    shift = np.array([1.0, 0.0])
    small, large = rng.normal(size=(200, 2)) + shift, rng.normal(size=(5000, 2)) + shift
    b_small, b_large = bootstrap_fd(small, ref, 100, seed=0), bootstrap_fd(large, ref, 100, seed=0)
    assert np.array_equal(b_small, bootstrap_fd(small, ref, 100, seed=0))  # seeded: the same resamples
    assert b_large.mean() == pytest.approx(1.0, abs=0.1)
    # the sd of FD(n samples) falls like 1/sqrt(n): 25x the samples, about a fifth of the spread
    assert 3 < b_small.std() / b_large.std() < 8


def test_the_blow_up_check_flags_broken_pictures_and_no_real_image():
    """Blown up: values far outside [-1, 1] before the clamp, or a flat picture (uniform, all white, all black); none
    of Fashion-MNIST's 10,000 test images nor of the digits' test split counts, each kind of broken picture does."""
    from benchmarks.failures import failures
    from benchmarks.fashion import split_tensor

    real, _ = split_tensor("test")
    assert failures(real) == {"blown": 0, "flat": 0, "any": 0}
    digits, _ = through_model_path("test", 8)
    assert failures(digits)["any"] == 0
    speckled = real[:1].clone()
    speckled[0, 0, 3, 3] = 4.0
    white, black, grey = torch.ones(1, 1, 28, 28), -torch.ones(1, 1, 28, 28), torch.full((1, 1, 28, 28), 0.2)
    counts = failures(torch.cat([speckled, white, black, grey, real[:4]]))
    assert counts == {"blown": 1, "flat": 3, "any": 4}
