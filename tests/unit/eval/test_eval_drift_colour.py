"""Brightness / colour drift: a ramp's magnitude and a known colour shift."""

import math

import pytest
import torch

from streamvid.eval.metrics.drift_colour import brightness_drift, colour_drift, luma_curve, mean_colour_curve


def grey_ramp(start: float, step: float, frames: int = 11) -> torch.Tensor:
    values = torch.tensor([start + step * t for t in range(frames)], dtype=torch.float32)
    return values.view(-1, 1, 1, 1).expand(frames, 3, 8, 8).clone()


def test_ramp_magnitude():
    ramp = grey_ramp(0.2, 0.05)  # 0.2 -> 0.7 over 11 frames
    assert brightness_drift(ramp) == pytest.approx(0.5, abs=1e-6)
    assert brightness_drift(grey_ramp(0.7, -0.05), signed=True) == pytest.approx(-0.5, abs=1e-6)
    # k edge frames: mean(last k) - mean(first k) = step * (T - k)
    assert brightness_drift(ramp, edge_frames=3) == pytest.approx(0.05 * (11 - 3), abs=1e-6)
    assert brightness_drift(torch.full((5, 3, 8, 8), 0.4)) == 0.0


def test_bt601_luma_and_colour_shift():
    video = torch.zeros(2, 3, 4, 4)
    video[0, 0] = 1.0  # pure red
    assert luma_curve(video).tolist() == pytest.approx([0.299, 0.0])
    video[0] = torch.tensor([0.2, 0.3, 0.4]).view(3, 1, 1)
    video[1] = torch.tensor([0.5, 0.3, 0.0]).view(3, 1, 1)
    assert mean_colour_curve(video)[1].tolist() == pytest.approx([0.5, 0.3, 0.0])
    assert colour_drift(video) == pytest.approx(math.hypot(0.3, 0.4), abs=1e-6)


def test_uint8_matches_float_and_batches():
    ramp = (grey_ramp(0.2, 0.05) * 255).round().to(torch.uint8)
    assert brightness_drift(ramp) == pytest.approx(brightness_drift(ramp.float() / 255), abs=1e-9)
    out = colour_drift(torch.stack([grey_ramp(0.2, 0.0), grey_ramp(0.2, 0.05)]))
    assert out.tolist() == pytest.approx([0.0, 0.5 * math.sqrt(3)], abs=1e-6)


def test_bad_edge_frames():
    with pytest.raises(ValueError, match="edge_frames"):
        brightness_drift(grey_ramp(0.2, 0.05, frames=3), edge_frames=4)
