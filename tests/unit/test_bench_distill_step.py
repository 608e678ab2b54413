"""The pure helpers of bench/distill_step.py (`streamvid.distill.bench_stats`): step-rate window, tensor bytes,
TTUR cycle ratio, exit-step plan."""

from __future__ import annotations

import pytest
import torch

from streamvid.distill import bench_stats as bench


def test_steps_per_second_uses_the_window_only():
    times = {0: 0.0, 1: 10.0, 2: 11.0, 5: 14.0}  # a slow first step outside the window
    assert bench.steps_per_second(times, 2, 5) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bench.steps_per_second(times, 5, 5)
    with pytest.raises(KeyError):
        bench.steps_per_second(times, 2, 4)


def test_tensor_bytes_counts_numel_times_element_size():
    assert bench.tensor_bytes([torch.zeros(3, 4), torch.zeros(5, dtype=torch.float64), None, 7]) == 48 + 40


def test_ttur_cycle_ratio_and_exit_plan():
    assert bench.ttur_cycle_ratio(2.0, 1.0, 1.0) == pytest.approx(7 / 6)
    assert bench.ttur_cycle_ratio(1.0, 1.0, 3.0) == 1.0
    assert bench.exit_steps(6, 4) == [0, 1, 2, 3, 0, 1]
