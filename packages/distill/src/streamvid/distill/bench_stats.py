"""Pure helpers of the distillation benchmarks (``bench/distill_step.py``): the step-rate window, tensor bytes,
the TTUR cycle ratio and the exit-step plan. In the package so the bench script and its tests share them."""

from __future__ import annotations

import torch

__all__ = ["exit_steps", "steps_per_second", "tensor_bytes", "ttur_cycle_ratio"]


def steps_per_second(times: dict[int, float], first: int, last: int) -> float:
    """(last - first) / (times[last] - times[first]); ``times[k]``: wall clock when optimiser step k-1 ended
    (``global_step`` == k). Raises KeyError when a step is missing, ValueError on a non-positive window."""
    if last <= first:
        raise ValueError(f"need last > first, got {first}..{last}")
    span = times[last] - times[first]
    if span <= 0:
        raise ValueError(f"non-positive time span {span} between steps {first} and {last}")
    return (last - first) / span


def tensor_bytes(tensors) -> int:
    """Bytes of the given tensors (numel x element size); non-tensors are ignored."""
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))


def ttur_cycle_ratio(gen_r1: float, gen_plain: float, critic: float, ratio: int = 5) -> float:
    """(gen_R1 + ratio critic) / (gen_plain + ratio critic): one TTUR cycle is one generator step plus
    ``ratio`` critic steps (the generator's optimiser step holds a critic micro-step too)."""
    return (gen_r1 + ratio * critic) / (gen_plain + ratio * critic)


def exit_steps(draws: int, num_steps: int) -> list[int]:
    """Exit step of each draw: 0, 1, ..., num_steps - 1, 0, ... (every rollout length equally often)."""
    return [d % num_steps for d in range(draws)]
