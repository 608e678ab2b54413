"""The pure helpers of bench/distill_step.py (step-rate window, tensor bytes, TTUR cycle ratio, exit-step plan)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).resolve().parents[2] / "bench" / "distill_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_distill_step", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_steps_per_second_uses_the_window_only(bench):
    times = {0: 0.0, 1: 10.0, 2: 11.0, 5: 14.0}  # a slow first step outside the window
    assert bench.steps_per_second(times, 2, 5) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bench.steps_per_second(times, 5, 5)
    with pytest.raises(KeyError):
        bench.steps_per_second(times, 2, 4)


def test_tensor_bytes_counts_numel_times_element_size(bench):
    assert bench.tensor_bytes([torch.zeros(3, 4), torch.zeros(5, dtype=torch.float64), None, 7]) == 48 + 40


def test_ttur_cycle_ratio_and_exit_plan(bench):
    assert bench.ttur_cycle_ratio(2.0, 1.0, 1.0) == pytest.approx(7 / 6)
    assert bench.ttur_cycle_ratio(1.0, 1.0, 3.0) == 1.0
    assert bench.exit_steps(6, 4) == [0, 1, 2, 3, 0, 1]
