"""Occlusion-masked warping error: ~0 on static video and rigid pans, large on unpredictable frames."""

import numpy as np
import pytest
import torch

from streamvid.eval.metrics.flow import synthetic_pan
from streamvid.eval.metrics.warping import consistency_mask, warping_error, warping_error_curve


def test_static_video_has_zero_error(static_video):
    assert warping_error(static_video) == 0.0


@pytest.mark.parametrize("occlusion", [True, False])
def test_pan_is_small_after_warping(occlusion):
    pan = synthetic_pan(6, 64, 64, 2, 1)
    x = pan.double() / 255
    unwarped = (x[1:] - x[:-1]).square().sum(1).mean().item()  # same error without motion compensation
    err = warping_error(pan, occlusion=occlusion)
    assert err < 1e-4
    assert err < unwarped / 100


def test_consistency_mask_on_known_flows():
    fwd = np.zeros((16, 16, 2), np.float32)
    fwd[..., 0] = 3.0
    mask = consistency_mask(fwd, -fwd)
    assert mask[:, :13].all() and not mask[:, 13:].any()  # only out-of-frame targets are masked
    # backward flow that disagrees: |3|^2 = 9 > 0.01 * 9 + 0.5 -> occluded everywhere
    assert not consistency_mask(fwd, np.zeros_like(fwd)).any()


def test_unpredictable_frame_raises_error(static_video, texture):
    video = static_video[:3].clone()
    video[1] = texture(64, 64, seed=7)  # unrelated content in the middle
    curve = warping_error_curve(video)
    assert curve.shape == (2,)
    assert (curve > 1e-3).all()
    assert warping_error(video) == pytest.approx(curve.mean().item())


def test_batch_and_float_input(static_video):
    pan = synthetic_pan(4, 64, 64, 2, 0)
    out = warping_error(torch.stack([static_video[:4], pan]).float() / 255)
    assert out.shape == (2,) and out[0] == 0.0 and out[1] < 1e-4
