"""Laplacian variance: exact on a checkerboard, zero on flat frames, lower after blurring."""

import cv2
import numpy as np
import pytest
import torch

from streamvid.eval.metrics.sharpness import laplacian_variance, sharpness, sharpness_curve


def test_checkerboard_exact_value():
    board = (np.indices((32, 32)).sum(0) % 2).astype(np.float32)
    video = torch.from_numpy(board).expand(2, 3, 32, 32).clone()
    # every pixel: +-4 * 255, mean 0 -> variance (4 * 255)^2
    assert sharpness(video) == pytest.approx((4 * 255) ** 2, rel=1e-6)


def test_flat_is_zero():
    assert sharpness(torch.full((3, 3, 16, 16), 0.5)) == pytest.approx(0.0, abs=1e-9)


def test_blur_lowers_sharpness(texture):
    img = texture(64, 64, sigma=1.0).permute(1, 2, 0).numpy()
    values = []
    for sigma in (0.0, 1.0, 2.0, 4.0):
        frame = img if sigma == 0 else cv2.GaussianBlur(img, (0, 0), sigma)
        values.append(sharpness(torch.from_numpy(frame).permute(2, 0, 1)[None]))
    assert values == sorted(values, reverse=True) and values[-1] < values[0] / 10


def test_curve_and_grey_input(texture):
    frame = texture(32, 32)[:1]  # one channel
    curve = sharpness_curve(torch.stack([frame, frame]))
    assert curve.shape == (2,)
    assert curve[0] == pytest.approx(laplacian_variance(frame[0].double().numpy()))
