"""Long-video drift: a metric over sliding windows, its degradation from the first window, and clip-to-clip
consistency (VBench-Long style, anchors §3.4).

For windows k = 0 .. K-1 of ``window`` frames starting every ``stride`` frames (a partial tail is dropped so
every window has the same length), m_k is the metric on window k and s = +1 if higher is better, else -1:

    degradation_k  = s * (m_0 - m_k)              (> 0: window k is worse than the first window)
    drift          = degradation_{K-1}            (last window vs first window, in metric units)
    max_drift      = max_k degradation_k
    relative_drift = drift / |m_0|
    slope          = least-squares d m_k / d t    (t = window start in seconds if fps is given, else frames)

Clip-to-clip consistency follows VBench-Long's slow-fast idea (first frame of each clip) with VBench's subject-
consistency formula applied across clips: ``mean_{k>=1} max(0, (cos(f_{k-1}, f_k) + cos(f_0, f_k)) / 2)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from streamvid.eval.metrics.registry import Metric, as_video, build


@dataclass(frozen=True)
class DriftResult:
    """Per-window curve and its drift statistics (see the module docstring for the formulas)."""

    starts: list[int]
    """First frame of each window."""
    values: torch.Tensor
    """float64 ``[K]``: the metric per window."""
    window: int
    stride: int
    fps: float | None
    higher_is_better: bool
    degradation: torch.Tensor
    """float64 ``[K]``: ``s * (m_0 - m_k)``."""
    drift: float
    max_drift: float
    relative_drift: float
    slope: float
    """Signed metric units per second (fps given) or per frame; nan with a single window."""

    @property
    def times(self) -> list[float]:
        """Window start times in seconds (or frames when fps is None)."""
        return [s / self.fps if self.fps else float(s) for s in self.starts]


def sliding_windows(num_frames: int, window: int, stride: int | None = None) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` of full windows over ``num_frames``; stride defaults to ``window``."""
    stride = window if stride is None else stride
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    if num_frames < window:
        raise ValueError(f"video has {num_frames} frames, fewer than one window of {window}")
    return [(s, s + window) for s in range(0, num_frames - window + 1, stride)]


def _resolve_window(window: int | None, window_seconds: float | None, fps: float | None) -> int:
    if (window is None) == (window_seconds is None):
        raise ValueError("give exactly one of window= (frames) or window_seconds= (needs fps)")
    if window is not None:
        return int(window)
    if not fps:
        raise ValueError("window_seconds needs fps")
    return max(1, round(window_seconds * fps))


def windowed_curve(video, metric: str | Metric | Callable[[torch.Tensor], float], *, window: int | None = None,
                   window_seconds: float | None = None, stride: int | None = None, fps: float | None = None,
                   higher_is_better: bool | None = None) -> DriftResult:
    """Evaluate ``metric`` on sliding windows of one video ``[T, C, H, W]`` and compute its drift.

    ``metric`` is a registry name, a built :class:`Metric` (its direction comes from its spec, and fps is
    forwarded when declared) or a callable ``frames -> float`` (then ``higher_is_better`` is required).
    """
    video = torch.as_tensor(video)
    if video.ndim != 4:
        raise ValueError(f"windowed_curve takes one video [T, C, H, W], got shape {tuple(video.shape)}")
    if isinstance(metric, str):
        metric = build(metric)
    if isinstance(metric, Metric):
        hib = metric.spec.higher_is_better if higher_is_better is None else higher_is_better
        call = (lambda v: metric(v, fps=fps)) if "fps" in metric.spec.inputs else metric
    else:
        if higher_is_better is None:
            raise ValueError("a plain callable metric needs higher_is_better=")
        hib, call = higher_is_better, metric
    win = _resolve_window(window, window_seconds, fps)
    spans = sliding_windows(video.shape[0], win, stride)
    values = torch.tensor([float(call(video[a:b])) for a, b in spans], dtype=torch.float64)
    sign = 1.0 if hib else -1.0
    degradation = sign * (values[0] - values)
    starts = [a for a, _ in spans]
    t = np.asarray(starts, dtype=np.float64) / (fps if fps else 1.0)
    slope = float(np.polyfit(t, values.numpy(), 1)[0]) if len(spans) > 1 else float("nan")
    m0 = float(values[0])
    return DriftResult(
        starts=starts, values=values, window=win, stride=spans[1][0] - spans[0][0] if len(spans) > 1 else win,
        fps=fps, higher_is_better=hib, degradation=degradation, drift=float(degradation[-1]),
        max_drift=float(degradation.max()), relative_drift=float(degradation[-1]) / abs(m0) if m0 else float("nan"),
        slope=slope,
    )


def thumbnail_features(frames: torch.Tensor, size: int = 16) -> torch.Tensor:
    """Weight-free clip features: ``[K, C, H, W]`` -> ``[K, C*size*size]`` area-downsampled and zero-centred per
    row, so cosine similarity is the Pearson correlation of thumbnails. Swap in DINO / CLIP features for
    VBench-Long parity."""
    x = F.adaptive_avg_pool2d(as_video(frames).double(), size).flatten(1)
    return x - x.mean(dim=1, keepdim=True)


def _cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Row-wise cosine; two (near-)zero rows, e.g. two flat frames' centred thumbnails, count as identical."""
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a * b).sum(1) / (na * nb).clamp_min(eps * eps)
    return torch.where((na < eps) & (nb < eps), torch.ones_like(cos), cos)


def clip_consistency(video, *, window: int | None = None, window_seconds: float | None = None,
                     stride: int | None = None, fps: float | None = None,
                     feature_fn: Callable[[torch.Tensor], torch.Tensor] = thumbnail_features,
                     ) -> tuple[float, torch.Tensor]:
    """Clip-to-clip consistency of one video ``[T, C, H, W]`` over sliding windows.

    Features of each window's first frame (``feature_fn``: ``[K, C, H, W]`` -> ``[K, D]``); returns
    ``(score, per_clip)`` with ``per_clip[k-1] = max(0, (cos(f_{k-1}, f_k) + cos(f_0, f_k)) / 2)`` for
    k >= 1 and score their mean (1.0 = every clip looks like its predecessor and the first clip).
    """
    video = torch.as_tensor(video)
    spans = sliding_windows(video.shape[0], _resolve_window(window, window_seconds, fps), stride)
    if len(spans) < 2:
        raise ValueError(f"clip consistency needs at least 2 windows, got {len(spans)}")
    feats = torch.as_tensor(feature_fn(video[[a for a, _ in spans]])).double()
    prev = _cosine(feats[:-1], feats[1:])
    first = _cosine(feats[:1].expand_as(feats[1:]), feats[1:])
    per_clip = ((prev + first) / 2).clamp_min(0.0)
    return float(per_clip.mean()), per_clip
