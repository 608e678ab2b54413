"""VBench temporal flickering and its static-video filter (``Vchitect/VBench: vbench/temporal_flickering.py``,
``vbench/cli/static_filter.py``).

The score is exact to VBench's formula: ``(255 - mean_t MAE(x_t, x_{t+1})) / 255`` with the MAE over all pixels
and channels of uint8 frames (``cal_score``). VBench evaluates it only on videos that pass its static filter
(RAFT-things); here the filter keeps VBench's rule and uses classical flow scaled by the calibrated gain
(``flow.FLOW_GAIN``), i.e. it is a proxy of the filter, not of the score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from streamvid.eval.metrics.flow import FLOW_GAIN, FlowEstimator, flow_magnitude, top_fraction_mean
from streamvid.eval.metrics.registry import as_video, per_video, to_gray_u8

VBENCH_STATIC_PX = 3.0
"""VBench static-filter threshold at min side 256 (``StaticFilter.set_params``)."""


@dataclass(frozen=True)
class StaticFilterResult:
    """Everything VBench's ``check_static`` used, for inspection."""

    is_static: bool
    pair_scores: list[float]
    """Top-2 % flow magnitude for the T-1 consecutive pairs, then (first, last) and (last, first), in px."""
    threshold: float
    """``gain * 3 * min(H, W) / 256`` px."""
    count_num: int
    """``round(2 * T / 16)`` (Python's round, as VBench)."""


def static_filter_details(video, *, method: str = "dis", gain: float | None = None) -> StaticFilterResult:
    """VBench ``StaticFilter.infer`` on one video ``[T, C, H, W]`` (T >= 2), with classical flow.

    Static iff at most ``count_num`` consecutive pairs exceed the threshold *and* both first<->last pairs stay
    below ``threshold * count_num * 2`` (VBench's rule, verbatim: with count_num = 0, i.e. T <= 4, any
    first-to-last motion rejects the video).
    """
    gray = to_gray_u8(video)
    if len(gray) < 2:
        raise ValueError(f"the static filter needs at least 2 frames, got {len(gray)}")
    gain = FLOW_GAIN[method] if gain is None else gain
    threshold = gain * VBENCH_STATIC_PX * (min(gray.shape[1:]) / 256.0)
    count_num = round(2 * (len(gray) / 16.0))
    est = FlowEstimator(method)
    firsts = list(gray[:-1]) + [gray[0], gray[-1]]
    seconds = list(gray[1:]) + [gray[-1], gray[0]]
    scores = [top_fraction_mean(flow_magnitude(est(a, b)), 0.02) for a, b in zip(firsts, seconds)]
    count, static = 0, True
    for s in scores[:-2]:
        count += s > threshold
        if count > count_num:
            static = False
            break
    if static and any(s > threshold * count_num * 2 for s in scores[-2:]):
        static = False
    return StaticFilterResult(static, scores, threshold, count_num)


@per_video
def is_static(video, *, method: str = "dis", gain: float | None = None) -> float:
    """1.0 if one video ``[T, C, H, W]`` passes the VBench static filter (proxy flow), else 0.0."""
    return float(static_filter_details(video, method=method, gain=gain).is_static)


def flicker_mae_curve(video) -> torch.Tensor:
    """Per-pair MAE in uint8 units, float64 ``[T-1]``: ``mean |x_{t+1} - x_t|`` over pixels and channels.

    uint8 input reproduces VBench bit for bit; float input in [0, 1] is scaled by 255 without rounding.
    """
    video = torch.as_tensor(video)
    x = video.double() if video.dtype == torch.uint8 else as_video(video).double() * 255.0
    if x.shape[0] < 2:
        raise ValueError(f"temporal flickering needs at least 2 frames, got {x.shape[0]}")
    return (x[1:] - x[:-1]).abs().mean(dim=(1, 2, 3))


@per_video
def temporal_flickering(video, *, static_filter: bool = True, method: str = "dis",
                        gain: float | None = None) -> float:
    """VBench temporal flickering of one video ``[T, C, H, W]``: ``(255 - mean_t MAE_t) / 255``, in [0, 1].

    1.0 for a perfectly static video. With ``static_filter`` (default, as VBench), a video that the
    optical-flow static filter rejects returns NaN: it is *not part of* the flickering set, and aggregates
    should use a NaN-aware mean and report how many videos were kept (VBench samples ~25-40 per prompt and
    keeps the first 5 static ones). ``static_filter=False`` scores any video.
    """
    if static_filter and not static_filter_details(video, method=method, gain=gain).is_static:
        return math.nan
    return (255.0 - float(np.mean(flicker_mae_curve(video).numpy()))) / 255.0
