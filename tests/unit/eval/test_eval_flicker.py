"""VBench temporal flickering: exact formula on static / flickering videos, optical-flow static filter."""

import math

import cv2
import numpy as np
import pytest
import torch

from streamvid.eval.metrics.flicker import (
    flicker_mae_curve,
    is_static,
    static_filter_details,
    temporal_flickering,
)
from streamvid.eval.metrics.flow import FLOW_GAIN, synthetic_pan


def vbench_cal_score(video_u8: torch.Tensor) -> float:
    """VBench vbench/temporal_flickering.py cal_score, verbatim, on [T, 3, H, W] uint8 frames."""
    frames = [np.ascontiguousarray(f.permute(1, 2, 0).numpy()) for f in video_u8]
    maes = [np.mean(cv2.absdiff(np.array(a, dtype=np.float32), np.array(b, dtype=np.float32)))
            for a, b in zip(frames[:-1], frames[1:])]
    return (255.0 - np.mean(np.array(maes)).item()) / 255.0


def test_static_video_scores_one_and_passes_filter(static_video):
    assert temporal_flickering(static_video) == 1.0
    assert is_static(static_video) == 1.0


def test_alternating_brightness_drops_by_hand_computed_amount(static_video):
    video = static_video.clone()
    video[1::2] += 20  # texture lies in [40, 200]: no clipping, every pair differs by exactly 20 grey levels
    expected = (255.0 - 20.0) / 255.0
    assert temporal_flickering(video, static_filter=False) == pytest.approx(expected, abs=1e-12)
    # a global brightness flicker is not motion: the DIS-based static filter keeps the video
    assert static_filter_details(video).is_static
    assert temporal_flickering(video) == pytest.approx(expected, abs=1e-12)
    assert temporal_flickering(video) == pytest.approx(vbench_cal_score(video), abs=1e-7)  # VBench: float32 mean


def test_single_flash_averages_over_pairs(static_video):
    video = static_video[:9].clone()
    video[4] += 30  # two of the eight pairs differ by 30: mean MAE = 60 / 8
    assert temporal_flickering(video, static_filter=False) == pytest.approx((255 - 7.5) / 255, abs=1e-12)
    assert flicker_mae_curve(video).tolist() == [0, 0, 0, 30, 30, 0, 0, 0]


def test_float_input_matches_uint8(static_video):
    video = static_video.clone()
    video[::3] += 13
    assert temporal_flickering(video.float() / 255, static_filter=False) == pytest.approx(
        temporal_flickering(video, static_filter=False), abs=1e-7)  # float32 / 255 round-off


def test_moving_video_rejected_by_static_filter_returns_nan():
    pan = synthetic_pan(16, 64, 64, 3, 0)
    details = static_filter_details(pan)
    assert not details.is_static
    assert details.count_num == 2  # round(2 * 16 / 16)
    assert details.threshold == pytest.approx(FLOW_GAIN["dis"] * 3.0 * 64 / 256)
    assert len(details.pair_scores) == 15 + 2  # consecutive pairs + (first, last) + (last, first)
    assert math.isnan(temporal_flickering(pan))
    assert temporal_flickering(pan, static_filter=False) == pytest.approx(vbench_cal_score(pan), abs=1e-7)


def test_batch_returns_per_video_tensor(static_video):
    flick = static_video.clone()
    flick[1::2] += 20
    out = temporal_flickering(torch.stack([static_video, flick]))
    assert out.shape == (2,)
    assert out.tolist() == pytest.approx([1.0, 235 / 255])
