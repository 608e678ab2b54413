"""Flow warping error with occlusion masking (temporal consistency; not a VBench dimension).

Definition (Lai et al., ECCV 2018, "Learning Blind Video Temporal Consistency", Eq. 6-7; their
``evaluate_WarpError.py``): for each consecutive pair,

    E_t = sum_x M_t(x) * || V_t(x) - V_{t+1}(x + F_{t->t+1}(x)) ||_2^2  /  sum_x M_t(x),

with V in [0, 1] RGB (the squared norm sums the channels, so E is in [0, 3]) and ``E_warp = mean_t E_t``.
The mask M keeps pixels that are (a) not occluded by the forward-backward consistency check of Sundaram et al.
(ECCV 2010), also used by Lai et al.:

    occluded  <=>  |F_f + F_b_w|^2 > 0.01 * (|F_f|^2 + |F_b_w|^2) + 0.5,   F_b_w(x) = F_b(x + F_f(x)),

and (b) whose flow target lies inside the frame (content that enters at the border has no source).
Lai et al. estimate flow on the *input* video of a video-processing method; for generated videos there is none,
so the flow is estimated on the video itself (OpenCV DIS by default). Deviation: when a pair has no valid pixel
(e.g. a hard cut) the unmasked error is used instead of Lai's 0, so cuts are penalised, not rewarded.
"""

from __future__ import annotations

import numpy as np
import torch

from streamvid.eval.metrics.flow import FlowEstimator, warp
from streamvid.eval.metrics.registry import as_video, per_video, to_gray_u8


def consistency_mask(forward: np.ndarray, backward: np.ndarray, *, alpha1: float = 0.01,
                     alpha2: float = 0.5) -> np.ndarray:
    """Bool ``[H, W]``: True where forward ``[H, W, 2]`` (t -> t+1) and backward (t+1 -> t) flows agree
    and the forward target is inside the frame (Sundaram et al. 2010 check, thresholds alpha1, alpha2)."""
    back_w, inside = warp(backward, forward)
    total = forward + back_w
    lhs = np.square(total).sum(-1)
    rhs = alpha1 * (np.square(forward).sum(-1) + np.square(back_w).sum(-1)) + alpha2
    return (lhs <= rhs) & inside


def warping_error_curve(video, *, method: str = "dis", occlusion: bool = True) -> torch.Tensor:
    """Per-pair warping error ``E_t`` for one video ``[T, C, H, W]`` -> float64 ``[T-1]`` (see module doc).

    ``occlusion=False`` keeps every in-frame pixel (no forward-backward check).
    """
    rgb = as_video(video).permute(0, 2, 3, 1).numpy()  # [T, H, W, C] float32 in [0, 1]
    gray = to_gray_u8(video)
    if len(rgb) < 2:
        raise ValueError(f"warping error needs at least 2 frames, got {len(rgb)}")
    est, errors = FlowEstimator(method), []
    for t in range(len(rgb) - 1):
        fwd = est(gray[t], gray[t + 1])
        warped, inside = warp(np.ascontiguousarray(rgb[t + 1]), fwd)
        mask = consistency_mask(fwd, est(gray[t + 1], gray[t])) if occlusion else inside
        sq = np.square(rgb[t] - warped.reshape(rgb[t].shape)).sum(-1)  # [H, W], summed over channels
        errors.append(float(sq[mask].mean()) if mask.any() else float(sq.mean()))
    return torch.tensor(errors, dtype=torch.float64)


@per_video
def warping_error(video, *, method: str = "dis", occlusion: bool = True) -> float:
    """Mean occlusion-masked warping error ``E_warp`` of ``[T, C, H, W]`` in [0, 3] (lower is better; ~0 for a
    static or rigidly panning video). Batches ``[B, T, C, H, W]`` -> ``[B]``."""
    return float(warping_error_curve(video, method=method, occlusion=occlusion).mean())
