"""Sharpness as the variance of the Laplacian (Pech-Pacheco et al., ICPR 2000, "Diatom autofocusing in
brightfield microscopy"; the usual blur detector ``cv2.Laplacian(gray, CV_64F).var()``).

    sharpness = mean_t Var_x( L * Y_t ),  L = [[0, 1, 0], [1, -4, 1], [0, 1, 0]]  (cv2 ksize=1, reflect-101 border)

with Y_t the BT.601 grey frame in [0, 255] (float, not quantised). Unbounded above; 0 for a flat frame; a 1-px
black/white checkerboard gives exactly (4 * 255)^2 = 1,040,400. Depends on resolution and content, so compare
like with like (same prompts / sizes), e.g. across windows of one long video.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from streamvid.eval.metrics.drift_colour import BT601
from streamvid.eval.metrics.registry import as_video, per_video


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian of one grey image ``[H, W]`` (any float scale; use [0, 255])."""
    return float(cv2.Laplacian(np.asarray(gray, dtype=np.float64), cv2.CV_64F, ksize=1).var())


def sharpness_curve(video) -> torch.Tensor:
    """Per-frame Laplacian variance of ``[T, C, H, W]`` (grey in [0, 255]) -> float64 ``[T]``."""
    x = as_video(video).double().numpy()
    gray = x[:, 0] if x.shape[1] == 1 else np.tensordot(np.asarray(BT601), x, axes=([0], [1]))
    return torch.tensor([laplacian_variance(255.0 * g) for g in gray], dtype=torch.float64)


@per_video
def sharpness(video) -> float:
    """Mean over frames of the Laplacian variance of ``[T, C, H, W]`` (higher = sharper)."""
    return float(sharpness_curve(video).mean())
