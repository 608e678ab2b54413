"""Few-step flow-matching timestep schedules (Self-Forcing's warped denoising list).

Everything that needs a timestep grid (the sampler, DMD's score timesteps, ODE-pair snapshots) takes it from
the 1000-entry table of `diffusers.FlowMatchEulerDiscreteScheduler(shift)`: sigma(s) = shift*s / (1 + (shift-1)*s)
for s = 1, 0.999, ..., 0.001 and t = 1000 * sigma. A listed step k is "warped" to `table[1000 - k]`, so with
shift 5 the list [1000, 750, 500, 250] becomes [1000, 937.5, 833.33, 625] (methods.md A.2.1).

Flow-matching conventions used throughout: x_t = (1 - sigma) x0 + sigma * noise, the model predicts the flow
v = noise - x0, hence x0 = x_t - sigma * v.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import FlowMatchEulerDiscreteScheduler


def shift_sigma(s: float | torch.Tensor, shift: float) -> float | torch.Tensor:
    """The flow-matching timestep shift, sigma = shift * s / (1 + (shift - 1) * s), for s in [0, 1].

    The one definition of the shift: `shifted_timestep_table` (through diffusers), the training noise levels
    (`logit_normal_sigmas`) and the Euler ODE grid (`euler_grid`) all follow it.
    """
    return shift * s / (1 + (shift - 1) * s)


def euler_grid(num_steps: int, shift: float) -> torch.Tensor:
    """Noise levels ``[num_steps + 1]`` of an Euler ODE solve from sigma 1 to 0: `shift_sigma` of the uniform
    grid s = 1, 1 - 1/N, ..., 0. With N a multiple of 4 and the sampler's shift it contains the warped
    few-step levels (``s`` = 1, 0.75, 0.5, 0.25 are its entries 0, N/4, N/2, 3N/4), which is what ODE pairs
    for the few-step student need: its regression targets lie on the same grid as DMD (methods.md A.2.1)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return shift_sigma(torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64), shift).float()


def logit_normal_sigmas(
    n: int, shift: float = 1.0, generator: torch.Generator | None = None, mean: float = 0.0, std: float = 1.0
) -> torch.Tensor:
    """``[n]`` training noise levels: s = sigmoid(N(mean, std^2)) (logit-normal, SD3), then `shift_sigma`."""
    s = torch.sigmoid(mean + std * torch.randn(n, generator=generator))
    return shift_sigma(s, shift)


def shifted_timestep_table(shift: float, num_train_timesteps: int = 1000) -> torch.Tensor:
    """`[num_train_timesteps]` float32 timesteps, descending from 1000, as the diffusers scheduler builds them."""
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=shift)
    return scheduler.timesteps.clone()


def warped_timesteps(
    denoising_steps: Sequence[int], shift: float, num_train_timesteps: int = 1000, warp: bool = True
) -> torch.Tensor:
    """Map the listed steps through the shifted table (`warp=True`) or use them as they are."""
    steps = torch.tensor(list(denoising_steps), dtype=torch.long)
    if (steps <= 0).any() or (steps > num_train_timesteps).any():
        raise ValueError(f"denoising steps must lie in (0, {num_train_timesteps}], got {list(denoising_steps)}")
    if not warp:
        return steps.float()
    table = shifted_timestep_table(shift, num_train_timesteps)
    return table[num_train_timesteps - steps]


@dataclass(frozen=True)
class FewStepSchedule:
    """The per-chunk denoising timesteps of a few-step student, with sigma = t / num_train_timesteps."""

    timesteps: torch.Tensor  # [S] descending, in [0, num_train_timesteps]
    num_train_timesteps: int = 1000

    @classmethod
    def from_steps(cls, denoising_steps: Sequence[int] = (1000, 750, 500, 250), shift: float = 5.0, warp: bool = True):
        return cls(warped_timesteps(denoising_steps, shift, warp=warp))

    def sigma(self, t: float | torch.Tensor) -> float | torch.Tensor:
        return t / self.num_train_timesteps

    def __len__(self) -> int:
        return len(self.timesteps)


def flow_to_x0(x_t: torch.Tensor, flow: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """x0 = x_t - sigma * v   (flow matching with v = noise - x0)."""
    return x_t - sigma * flow


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """x_t = (1 - sigma) * x0 + sigma * noise."""
    return (1 - sigma) * x0 + sigma * noise
