"""Colour and brightness drift within one video: how far the last frames moved from the first ones.

Weight-free diagnostics for streaming / long rollouts, where autoregressive error accumulation shows up as a
slow exposure or colour cast (anchors §4.2). Per-frame curves are exposed for ``streamvid.eval.drift``.

    luma_t          = mean_x (0.299 R + 0.587 G + 0.114 B)            (ITU-R BT.601, values in [0, 1])
    colour_t        = mean_x (R, G, B)
    brightness_drift = | mean(luma[-k:]) - mean(luma[:k]) |            (k = edge_frames)
    colour_drift     = || mean(colour[-k:]) - mean(colour[:k]) ||_2

For a linear ramp luma_t = a + r * t over T frames and k = 1, brightness_drift = |r| * (T - 1), i.e. the ramp's
full magnitude; larger k trades that exactness for robustness to per-frame noise.
"""

from __future__ import annotations

import torch

from streamvid.eval.metrics.registry import as_video, per_video

BT601 = (0.299, 0.587, 0.114)


def mean_colour_curve(video) -> torch.Tensor:
    """Per-frame mean colour of ``[T, C, H, W]`` -> float64 ``[T, C]`` in [0, 1]."""
    return as_video(video).double().mean(dim=(2, 3))


def luma_curve(video) -> torch.Tensor:
    """Per-frame mean BT.601 luma of ``[T, C, H, W]`` -> float64 ``[T]`` in [0, 1] (grey video: its mean)."""
    colour = mean_colour_curve(video)
    if colour.shape[1] == 1:
        return colour[:, 0]
    return colour @ torch.tensor(BT601, dtype=torch.float64)


def _edge_means(curve: torch.Tensor, edge_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not 1 <= edge_frames <= len(curve):
        raise ValueError(f"edge_frames must be in [1, T={len(curve)}], got {edge_frames}")
    return curve[:edge_frames].mean(0), curve[-edge_frames:].mean(0)


@per_video
def brightness_drift(video, *, edge_frames: int = 1, signed: bool = False) -> float:
    """``mean(luma[-k:]) - mean(luma[:k])`` of ``[T, C, H, W]``; absolute value unless ``signed``."""
    first, last = _edge_means(luma_curve(video), edge_frames)
    delta = float(last - first)
    return delta if signed else abs(delta)


@per_video
def colour_drift(video, *, edge_frames: int = 1) -> float:
    """L2 distance between the mean RGB of the last k and the first k frames of ``[T, C, H, W]``."""
    first, last = _edge_means(mean_colour_curve(video), edge_frames)
    return float(torch.linalg.vector_norm(last - first))
