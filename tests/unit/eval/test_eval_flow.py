"""Optical-flow helpers and the dynamic-degree / motion-smoothness proxies on videos with known motion."""

import numpy as np
import pytest
import torch

from streamvid.eval.metrics.flow import (
    FLOW_GAIN,
    FlowEstimator,
    calibrate_flow_gain,
    dynamic_degree,
    dynamic_degree_details,
    flow_magnitude,
    motion_smoothness,
    synthetic_pan,
    top_fraction_mean,
    warp,
)
from streamvid.eval.metrics.registry import to_gray_u8


@pytest.mark.parametrize("method", ["dis", "farneback"])
@pytest.mark.parametrize("dx,dy", [(3, 0), (2, 2), (-4, 1)])
def test_flow_of_constant_pan_equals_speed(method, dx, dy):
    gray = to_gray_u8(synthetic_pan(2, 96, 96, dx, dy))
    flow = FlowEstimator(method)(gray[0], gray[1])
    inner = flow[16:-16, 16:-16]
    assert np.median(inner[..., 0]) == pytest.approx(dx, abs=0.05)
    assert np.median(inner[..., 1]) == pytest.approx(dy, abs=0.05)
    assert top_fraction_mean(flow_magnitude(flow), 0.05) == pytest.approx(np.hypot(dx, dy), rel=0.1)


def test_pinned_gain_matches_a_fresh_calibration():
    # a subset of the documented grid (the full one takes ~2 s per method)
    assert calibrate_flow_gain("dis", speeds=(4, 8), sigmas=(2.0,)) == pytest.approx(FLOW_GAIN["dis"], abs=0.04)


def test_top_fraction_mean_is_vbench_statistic():
    mag = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert top_fraction_mean(mag, 0.05) == pytest.approx(np.mean([95, 96, 97, 98, 99]))


def test_warp_undoes_a_shift():
    img = np.arange(20 * 20, dtype=np.float32).reshape(20, 20)
    flow = np.zeros((20, 20, 2), np.float32)
    flow[..., 0] = 3.0
    out, valid = warp(img, flow)
    assert np.array_equal(out[:, :17], img[:, 3:])
    assert valid[:, :17].all() and not valid[:, 17:].any()


def test_dynamic_degree_static_and_pan(static_video):
    assert dynamic_degree(static_video, fps=8) == 0.0
    # threshold at 64 px: 1.04 * 6 * 64 / 256 = 1.56 px per pair
    assert dynamic_degree(synthetic_pan(16, 64, 64, 2, 0), fps=8) == 1.0
    assert dynamic_degree(synthetic_pan(16, 64, 64, 1, 0), fps=8) == 0.0


def test_dynamic_degree_fps_subsampling_and_threshold_factor():
    pan = synthetic_pan(16, 64, 64, 1, 0)
    at16 = dynamic_degree_details(pan, fps=16)  # interval 2: 8 frames, 2 px per kept pair
    assert (at16.interval, at16.count_num, at16.is_dynamic) == (2, 2, True)
    assert all(s == pytest.approx(2.0, rel=0.1) for s in at16.pair_scores)
    at4 = dynamic_degree_details(pan, fps=4)  # VBench: threshold * max(1, 8 / fps)
    assert at4.threshold == pytest.approx(2 * dynamic_degree_details(pan, fps=8).threshold)


@pytest.mark.parametrize("moving_pairs,expected", [(3, False), (4, True)])
def test_dynamic_degree_count_rule(moving_pairs, expected):
    # 17 frames -> count_num = round(4 * 17 / 16) = 4 moving pairs needed
    pan = synthetic_pan(moving_pairs + 1, 64, 64, 3, 0)
    video = torch.cat([pan, pan[-1:].repeat(16 - moving_pairs, 1, 1, 1)])
    details = dynamic_degree_details(video, fps=8)
    assert details.count_num == 4 and len(details.pair_scores) == 16
    assert details.is_dynamic is expected


def test_motion_smoothness_static_pan_and_jitter(static_video):
    assert motion_smoothness(static_video) == 1.0
    smooth = motion_smoothness(synthetic_pan(9, 64, 64, 2, 0))
    assert smooth > 0.99
    rng = np.random.default_rng(0)
    offsets = np.cumsum(rng.integers(-4, 5, size=9))  # same mean speed, random per-frame jumps
    big = synthetic_pan(1, 64, 160, 0, 0)[0]
    jitter = torch.stack([big[:, :, 48 + o:112 + o] for o in offsets])
    assert motion_smoothness(jitter) < smooth - 0.01


def test_batched_dynamic_degree(static_video):
    out = dynamic_degree(torch.stack([static_video, synthetic_pan(16, 64, 64, 2, 0)]), fps=8)
    assert out.tolist() == [0.0, 1.0]
