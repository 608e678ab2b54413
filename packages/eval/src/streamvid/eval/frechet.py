"""Fréchet distance between two feature sets (FID / FVD style) on pluggable features.

For Gaussians fitted to the two sets (Dowson & Landau 1982; Heusel et al. 2017, FID):

    d^2 = ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^{1/2})

The trace term is computed without a general matrix square root: S_a S_b has the same eigenvalues as the
symmetric PSD matrix S_a^{1/2} S_b S_a^{1/2}, so ``Tr((S_a S_b)^{1/2}) = sum_i sqrt(lambda_i)`` with
``lambda = eigvalsh(S_a^{1/2} S_b S_a^{1/2})`` clipped at 0 (float64). This is real and stable where
``scipy.linalg.sqrtm`` (pytorch-fid, StyleGAN-V FVD) can return complex parts on singular covariances and
has changed values across scipy versions (anchors §3.8).

The estimate is biased upward for finite samples (the bias grows like dim / n): compare only numbers computed
with the same sample counts, and expect warnings when n is below the feature dimension (singular covariance)
or below ``min_samples``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from streamvid.eval.metrics.registry import as_video


def _as_features(x, name: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: features must be [N, D], got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 samples to estimate a covariance, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return arr


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """``[N, D]`` -> ``(mu [D], sigma [D, D])`` in float64 (unbiased covariance, ddof = 1)."""
    f = _as_features(features, "features")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """``Tr((sigma_a sigma_b)^{1/2})`` for PSD ``[D, D]`` matrices via one symmetric eigendecomposition."""
    ra = _psd_sqrt(np.asarray(sigma_a, dtype=np.float64))
    m = ra @ np.asarray(sigma_b, dtype=np.float64) @ ra
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())


def frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """Fréchet distance d^2 between N(mu_a, sigma_a) and N(mu_b, sigma_b) (>= 0; tiny negatives clipped)."""
    mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
    sigma_a, sigma_b = np.atleast_2d(np.asarray(sigma_a, np.float64)), np.atleast_2d(np.asarray(sigma_b, np.float64))
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != (mu_a.size, mu_a.size):
        raise ValueError(f"shape mismatch: mu {mu_a.shape} vs {mu_b.shape}, sigma {sigma_a.shape} vs {sigma_b.shape}")
    diff = mu_a - mu_b
    d2 = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt_product(sigma_a, sigma_b)
    return float(max(d2, 0.0))


def frechet_distance(features_a, features_b, *, min_samples: int = 100) -> float:
    """Fréchet distance between two feature sets ``[N_a, D]`` and ``[N_b, D]`` (tensors or arrays).

    Warns (``UserWarning``) when a set has no more samples than dimensions (singular covariance) or fewer than
    ``min_samples`` (unstable estimate).
    """
    fa, fb = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feature dims differ: {fa.shape[1]} vs {fb.shape[1]}")
    dim = fa.shape[1]
    for name, n in (("features_a", fa.shape[0]), ("features_b", fb.shape[0])):
        if n <= dim:
            warnings.warn(f"frechet_distance: {name} has {n} samples <= feature dim {dim}: the covariance is "
                          "singular and the distance is strongly biased", stacklevel=2)
        elif n < min_samples:
            warnings.warn(f"frechet_distance: {name} has {n} samples < min_samples={min_samples}: the estimate "
                          "is unstable (FVD uses 2048)", stacklevel=2)
    return frechet_distance_from_stats(*gaussian_stats(fa), *gaussian_stats(fb))


def pixel_stats_features(videos: torch.Tensor) -> torch.Tensor:
    """Weight-free diagnostic features ``[B, T, C, H, W]`` -> ``[B, 3C]``: per-channel mean, spatial std and
    mean absolute temporal difference. A weak baseline feature; learned features (I3D, the shapes reward
    trunk) plug in through `feature_fn`."""
    x = torch.stack([as_video(v) for v in videos]).double()
    mean = x.mean(dim=(1, 3, 4))
    std = x.std(dim=(3, 4)).mean(dim=1)
    tdiff = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(1, 3, 4)) if x.shape[1] > 1 else torch.zeros_like(mean)
    return torch.cat([mean, std, tdiff], dim=1)


def shapes_reward_features(path: str | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Feature extractor for the shapes world: the learned shapes reward's trunk, ``[b, T, 3, H, W]`` -> ``[b, 128]``.

    ``path`` is a checkpoint directory (None: the shipped one). The trunk never sees the prompt, so the
    features describe the videos alone, as Fréchet distance between video sets needs.
    """
    from streamvid.core.rewards import build_reward

    reward = build_reward("shapes_learned", path=path)
    return lambda videos: reward.features(videos.float())


def extract_features(videos: torch.Tensor | Sequence[torch.Tensor],
                     feature_fn: Callable[[torch.Tensor], torch.Tensor], *, batch_size: int = 16) -> torch.Tensor:
    """Run ``feature_fn`` (``[b, T, C, H, W]`` -> ``[b, D]``) over videos in batches -> float64 ``[N, D]``."""
    n = len(videos)
    chunks = []
    for i in range(0, n, batch_size):
        batch = videos[i:i + batch_size]
        batch = batch if isinstance(batch, torch.Tensor) else torch.stack(list(batch))
        with torch.no_grad():
            chunks.append(torch.as_tensor(feature_fn(batch)).detach().cpu().double().reshape(len(batch), -1))
    return torch.cat(chunks)


def video_frechet_distance(videos_a, videos_b, feature_fn: Callable[[torch.Tensor], torch.Tensor] = pixel_stats_features,
                           *, batch_size: int = 16, min_samples: int = 100) -> float:
    """Fréchet distance between two sets of videos (``[N, T, C, H, W]`` or lists of ``[T, C, H, W]``) on the
    features of ``feature_fn``."""
    return frechet_distance(extract_features(videos_a, feature_fn, batch_size=batch_size),
                            extract_features(videos_b, feature_fn, batch_size=batch_size), min_samples=min_samples)
