"""Classical optical flow (OpenCV DIS / Farneback) and the VBench flow proxies: dynamic degree, motion smoothness.

These are *weight-free proxies*. VBench computes dynamic degree with RAFT-things (20 iterations) and motion
smoothness with the AMT-S frame interpolator (``Vchitect/VBench: vbench/dynamic_degree.py``,
``vbench/motion_smoothness.py``). Here the decision rules and statistics are VBench's; only the flow / the
interpolator are classical.

Calibration of the dynamic-degree threshold
-------------------------------------------
VBench calls a pair "moving" when the mean of its top-5 % RAFT flow magnitudes exceeds
``6 * (min(H, W) / 256)`` px. Assuming RAFT reads a rigid pan at its true speed (its end-point error on such
motion is sub-pixel), a proxy threshold that classifies pans like RAFT is ``FLOW_GAIN[method] * 6 * (min(H, W) / 256)``, where the gain is the ratio of the
proxy's top-5 % statistic to the true speed, measured by :func:`calibrate_flow_gain` on synthetic pans of known
speed: 256x256 frames cut from Gaussian-smoothed noise textures (sigma 1, 2, 4 px), horizontal and diagonal
pans at 2 ... 12 px per frame (straddling the 6 px threshold), mean of statistic / true speed. Measured with
OpenCV 5.0: DIS (preset MEDIUM) 1.04, Farneback (pyr 0.5, 3 levels, win 15) 1.02: the top-5 % statistic of
a classical flow slightly *over*-reads a rigid pan (its largest errors are outliers above the true speed).
The same gain scales VBench's static-filter threshold (3 px at 256, top-2 %) in ``flicker.py``.
Limitations: pans are not real videos. The gain depends on texture and settings (anchors §4.1 saw Farneback
under-read a 480x832 diagonal pan by ~20 %), and classical flow is expected to under-read RAFT on small, fast,
non-rigid objects, which it smooths over. For paper numbers, recalibrate on a reference set labelled by RAFT, or
run the official VBench in its isolated environment.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from streamvid.eval.metrics.registry import per_video, to_gray_u8, to_uint8_thwc

FLOW_METHODS = ("dis", "farneback")
FLOW_GAIN = {"dis": 1.04, "farneback": 1.02}
"""Top-5 % flow statistic / true speed on synthetic pans (see the module docstring; pinned by a unit test)."""

VBENCH_DYNAMIC_PX = 6.0
"""VBench dynamic-degree threshold at min side 256 (``DynamicDegree.set_params``)."""


class FlowEstimator:
    """Dense flow between uint8 grey frames ``[H, W]`` -> float32 ``[H, W, 2]`` (dx, dy), frame a -> frame b."""

    def __init__(self, method: str = "dis"):
        if method not in FLOW_METHODS:
            raise ValueError(f"flow method must be one of {FLOW_METHODS}, got {method!r}")
        self.method = method
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
        if self._dis is not None:
            return self._dis.calc(a, b, None)
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    """``[H, W, 2]`` -> ``[H, W]`` Euclidean magnitude in px."""
    return np.sqrt(np.square(flow[..., 0]) + np.square(flow[..., 1]))


def top_fraction_mean(magnitude: np.ndarray, fraction: float) -> float:
    """Mean of the largest ``int(H * W * fraction)`` magnitudes (VBench ``get_score``; at least one pixel)."""
    flat = magnitude.reshape(-1)
    k = max(1, int(flat.size * fraction))
    return float(np.partition(flat, flat.size - k)[flat.size - k:].mean())


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward warp: ``out(x) = image(x + flow(x))`` (bilinear, border replicated).

    ``image`` ``[H, W]`` or ``[H, W, C]``; ``flow`` ``[H, W, 2]``. Returns ``(out, valid)``, ``valid`` ``[H, W]``
    bool: the sample point lies inside the frame.
    """
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    out = cv2.remap(image, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    valid = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return out, valid


def synthetic_pan(num_frames: int, height: int, width: int, dx: int, dy: int = 0, *,
                  texture_sigma: float = 2.0, seed: int = 0) -> torch.Tensor:
    """A rigid pan: uint8 ``[T, 3, H, W]`` whose content moves by (dx, dy) px per frame (integer, exact).

    Frames are windows of one Gaussian-smoothed noise texture; the window moves by (-dx, -dy) per frame so the
    true flow from frame t to t+1 is (dx, dy) everywhere (new content enters at the borders).
    """
    rng = np.random.default_rng(seed)
    pad_x, pad_y = abs(dx) * num_frames + 8, abs(dy) * num_frames + 8
    noise = rng.random((height + 2 * pad_y, width + 2 * pad_x, 3)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), texture_sigma) if texture_sigma > 0 else noise
    tex = (tex - tex.min()) / max(float(tex.max() - tex.min()), 1e-6)
    tex = np.round(tex * 255).astype(np.uint8)
    frames = [tex[pad_y - t * dy:pad_y - t * dy + height, pad_x - t * dx:pad_x - t * dx + width]
              for t in range(num_frames)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def calibrate_flow_gain(method: str = "dis", *, size: int = 256, speeds=(2, 4, 6, 8, 10, 12),
                        sigmas=(1.0, 2.0, 4.0), seed: int = 0) -> float:
    """Mean over synthetic pans of (top-5 % flow magnitude) / (true speed); see the module docstring."""
    est, ratios = FlowEstimator(method), []
    for i, sigma in enumerate(sigmas):
        for speed in speeds:
            for dy in (0, speed):  # horizontal and diagonal
                gray = to_gray_u8(synthetic_pan(2, size, size, speed, dy, texture_sigma=sigma, seed=seed + i))
                stat = top_fraction_mean(flow_magnitude(est(gray[0], gray[1])), 0.05)
                ratios.append(stat / float(np.hypot(speed, dy)))
    return float(np.mean(ratios))


# ---------------------------------------------------------------------------------------------------------
# dynamic degree (VBench vbench/dynamic_degree.py, RAFT replaced by classical flow)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DynamicDegreeResult:
    """Everything the VBench decision used, for inspection."""

    is_dynamic: bool
    pair_scores: list[float]
    """Top-5 % flow magnitude per consecutive subsampled pair, in px."""
    threshold: float
    """``gain * max(1, 8 / fps) * 6 * min(H, W) / 256`` px."""
    count_num: int
    """``round(4 * n / 16)`` with n = number of subsampled frames (Python's round, as VBench)."""
    interval: int
    """Frame stride ``max(1, round(fps / 8))``."""


def dynamic_degree_details(video, fps: float, *, method: str = "dis", gain: float | None = None,
                           ) -> DynamicDegreeResult:
    """VBench ``DynamicDegree.infer`` on one video ``[T, C, H, W]`` with classical flow.

    Subsample to ~8 fps (``interval = max(1, round(fps / 8))``), score each consecutive pair by the mean of its
    top-5 % flow magnitudes, and call the video dynamic when at least ``round(4 * n / 16)`` pairs exceed the
    threshold (VBench ``check_move``; note count_num = 0, i.e. n <= 2, makes any video dynamic, as in VBench).
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    gray = to_gray_u8(video)
    interval = max(1, round(fps / 8.0))
    gray = gray[::interval]
    n = len(gray)
    gain = FLOW_GAIN[method] if gain is None else gain
    threshold = gain * max(1.0, 8.0 / fps) * VBENCH_DYNAMIC_PX * (min(gray.shape[1:]) / 256.0)
    count_num = round(4 * (n / 16.0))
    est = FlowEstimator(method)
    scores = [top_fraction_mean(flow_magnitude(est(a, b)), 0.05) for a, b in zip(gray[:-1], gray[1:])]
    count, moving = 0, False
    for s in scores:  # the loop order of VBench's check_move, including its early return
        count += s > threshold
        if count >= count_num:
            moving = True
            break
    return DynamicDegreeResult(moving, scores, threshold, count_num, interval)


@per_video
def dynamic_degree(video, fps: float, *, method: str = "dis", gain: float | None = None) -> float:
    """1.0 if the video ``[T, C, H, W]`` is dynamic by the VBench rule (proxy flow), else 0.0.

    The VBench dimension is the mean of this over the prompt suite. Batches ``[B, T, C, H, W]`` -> ``[B]``.
    """
    return float(dynamic_degree_details(video, fps, method=method, gain=gain).is_dynamic)


# ---------------------------------------------------------------------------------------------------------
# motion smoothness (VBench vbench/motion_smoothness.py, AMT-S replaced by flow midpoint interpolation)
# ---------------------------------------------------------------------------------------------------------
def interpolate_midpoint(a: np.ndarray, b: np.ndarray, gray_a: np.ndarray, gray_b: np.ndarray,
                         est: FlowEstimator) -> np.ndarray:
    """Frame halfway between uint8 ``a`` and ``b`` ``[H, W, C]`` from bidirectional flow.

    ``mid(x) = (a(x - F_ab(x) / 2) + b(x - F_ba(x) / 2)) / 2`` (flow sampled at x: exact for a rigid pan).
    """
    fab, fba = est(gray_a, gray_b), est(gray_b, gray_a)
    wa, _ = warp(a.astype(np.float32), -0.5 * fab)
    wb, _ = warp(b.astype(np.float32), -0.5 * fba)
    mid = 0.5 * (wa + wb)
    return np.clip(np.rint(mid), 0, 255).astype(np.uint8).reshape(a.shape)


@per_video
def motion_smoothness(video, *, method: str = "dis") -> float:
    """VBench motion smoothness, proxy: ``(255 - MAE(real odd frames, interpolated odd frames)) / 255``.

    Keep the even frames of ``[T, C, H, W]`` (T >= 3), interpolate each odd frame from its two even neighbours,
    and average the uint8 absolute error over the odd frames (``MotionSmoothness.vfi_score``). 1.0 = perfectly
    predictable (linear) motion.
    """
    rgb, gray = to_uint8_thwc(video), to_gray_u8(video)
    if len(rgb) < 3:
        raise ValueError(f"motion_smoothness needs at least 3 frames, got {len(rgb)}")
    est = FlowEstimator(method)
    diffs = [np.mean(np.abs(rgb[i + 1].astype(np.float32)
                            - interpolate_midpoint(rgb[i], rgb[i + 2], gray[i], gray[i + 2], est)))
             for i in range(0, len(rgb) - 2, 2)]
    return (255.0 - float(np.mean(diffs))) / 255.0
