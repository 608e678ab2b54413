"""Sliding-window drift: a brightness ramp's drift and slope by formula, clip-to-clip consistency."""

import cv2
import numpy as np
import pytest
import torch

from streamvid.eval.drift import clip_consistency, sliding_windows, windowed_curve
from streamvid.eval.metrics.drift_colour import luma_curve


def mean_luma(frames):
    return float(luma_curve(frames).mean())


def test_brightness_ramp_drift_equals_formula():
    rate, frames, window = 0.01, 40, 8  # luma_t = 0.8 - 0.01 t
    video = torch.tensor([0.8 - rate * t for t in range(frames)]).view(-1, 1, 1, 1).expand(-1, 3, 4, 4)
    res = windowed_curve(video, mean_luma, window=window, fps=8.0, higher_is_better=True)
    assert res.starts == [0, 8, 16, 24, 32]
    k = torch.arange(5, dtype=torch.float64)
    # m_k = 0.8 - rate * (8k + 3.5); degradation_k = m_0 - m_k = rate * 8 k
    assert res.values.tolist() == pytest.approx((0.8 - rate * (8 * k + 3.5)).tolist(), abs=1e-6)
    assert res.degradation.tolist() == pytest.approx((rate * 8 * k).tolist(), abs=1e-6)
    assert res.drift == pytest.approx(rate * (5 - 1) * window, abs=1e-6)  # ramp magnitude over the window span
    assert res.max_drift == pytest.approx(res.drift)
    assert res.relative_drift == pytest.approx(res.drift / (0.8 - rate * 3.5), rel=1e-5)
    assert res.slope == pytest.approx(-rate * 8.0, rel=1e-5)  # per second at 8 fps
    assert res.times == [0.0, 1.0, 2.0, 3.0, 4.0]
    # lower-is-better flips the sign of the degradation
    assert windowed_curve(video, mean_luma, window=8, higher_is_better=False).drift == pytest.approx(-res.drift)


def test_registry_metric_blur_ramp(texture):
    img = texture(32, 32, sigma=1.0).permute(1, 2, 0).numpy()
    frames = [img if s == 0 else cv2.GaussianBlur(img, (0, 0), s) for s in np.repeat([0, 0.8, 1.6, 2.4], 4)]
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    res = windowed_curve(video, "sharpness", window_seconds=0.5, fps=8.0)  # 4-frame windows
    assert res.window == 4 and len(res.starts) == 4 and res.higher_is_better
    assert (res.degradation.diff() > 0).all() and res.drift > 0 and res.slope < 0


def test_window_validation():
    assert sliding_windows(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    with pytest.raises(ValueError, match="fewer than one window"):
        sliding_windows(3, 4)
    with pytest.raises(ValueError, match="exactly one"):
        windowed_curve(torch.zeros(8, 3, 4, 4), mean_luma, higher_is_better=True)
    with pytest.raises(ValueError, match="higher_is_better"):
        windowed_curve(torch.zeros(8, 3, 4, 4), mean_luma, window=4)


def test_clip_consistency(static_video, texture):
    score, per_clip = clip_consistency(static_video, window=4)
    assert score == pytest.approx(1.0) and per_clip.shape == (3,)
    assert clip_consistency(torch.full((8, 3, 8, 8), 0.3), window=4)[0] == pytest.approx(1.0)  # flat frames
    unrelated = torch.stack([texture(64, 64, seed=s) for s in range(4)]).repeat_interleave(4, dim=0)
    assert clip_consistency(unrelated, window=4)[0] < 0.2
