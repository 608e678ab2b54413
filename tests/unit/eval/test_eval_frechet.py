"""Fréchet distance: zero on identical sets, the Gaussian closed form, stability and sample-count warnings."""

import warnings

import numpy as np
import pytest
import torch

from streamvid.eval.frechet import (
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    pixel_stats_features,
    trace_sqrt_product,
    video_frechet_distance,
)


def test_identical_sets_are_zero():
    feats = np.random.default_rng(0).normal(size=(300, 8))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-9)


def test_closed_form_for_known_gaussians():
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    # diagonal: d^2 = |mu_a - mu_b|^2 + sum (sqrt(var_a) - sqrt(var_b))^2 = 5 + 1 + 1 + 0
    assert frechet_distance_from_stats(mu_a, np.diag(var_a), mu_b, np.diag(var_b)) == pytest.approx(7.0)
    rng = np.random.default_rng(1)
    a = mu_a + rng.normal(size=(40_000, 3)) * np.sqrt(var_a)
    b = mu_b + rng.normal(size=(40_000, 3)) * np.sqrt(var_b)
    assert frechet_distance(a, b) == pytest.approx(7.0, rel=0.02)


def test_trace_term_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    sa, sb = x @ x.T + 0.1 * np.eye(6), y @ y.T + 0.1 * np.eye(6)
    assert trace_sqrt_product(sa, sb) == pytest.approx(np.trace(linalg.sqrtm(sa @ sb)).real, rel=1e-8)


def test_singular_covariance_is_finite_and_shift_invariant():
    rng = np.random.default_rng(3)
    a = np.concatenate([rng.normal(size=(50, 2)), np.zeros((50, 3))], axis=1)  # rank 2 in 5 dims
    b = np.concatenate([rng.normal(size=(50, 2)) + 1.0, np.zeros((50, 3))], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = frechet_distance(a, b)
        assert np.isfinite(d) and d > 0
        assert frechet_distance(a + 10.0, b + 10.0) == pytest.approx(d, rel=1e-9)
    mu, sigma = gaussian_stats(a)
    assert mu.shape == (5,) and sigma.shape == (5, 5)


def test_sample_count_warnings():
    rng = np.random.default_rng(4)
    with pytest.warns(UserWarning, match="feature dim"):
        frechet_distance(rng.normal(size=(8, 16)), rng.normal(size=(200, 16)))
    with pytest.warns(UserWarning, match="min_samples"):
        frechet_distance(rng.normal(size=(40, 4)), rng.normal(size=(200, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frechet_distance(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)))
    with pytest.raises(ValueError, match="feature dims"):
        frechet_distance(rng.normal(size=(10, 4)), rng.normal(size=(10, 5)))


def test_video_sets_with_pluggable_features():
    g = torch.Generator().manual_seed(0)
    videos = torch.rand(120, 4, 3, 8, 8, generator=g) * 0.5
    assert video_frechet_distance(videos, videos.clone(), batch_size=32) == pytest.approx(0.0, abs=1e-9)
    brighter = video_frechet_distance(videos, videos + 0.3)
    assert brighter == pytest.approx(3 * 0.3**2, rel=1e-6)  # only the 3 mean-colour features shift by 0.3
    calls = []

    def spy(batch):
        calls.append(batch.shape[0])
        return pixel_stats_features(batch)

    video_frechet_distance(list(videos), list(videos), feature_fn=spy, batch_size=50)
    assert calls == [50, 50, 20, 50, 50, 20]


def test_shapes_reward_features_separate_clean_from_blurred():
    """On the learned shapes reward's trunk, clean vs blurred sets are further apart than two clean sets."""
    from streamvid.core.world import ShapesDataset, WorldConfig
    from streamvid.core.world.corrupt import gaussian_blur
    from streamvid.eval.frechet import shapes_reward_features, video_frechet_distance

    data = ShapesDataset(WorldConfig(), split="val", size=300)
    videos = torch.stack([data[i]["video"] for i in range(300)])
    a, b = videos[:150], videos[150:]  # more samples than the 128 feature dims: a stable covariance
    blurred = torch.stack([gaussian_blur(v, 2.0) for v in b])
    features = shapes_reward_features()
    same = video_frechet_distance(a, b, features)
    shifted = video_frechet_distance(a, blurred, features)
    assert shifted > 3 * same
