"""Euler ODE sampling of a flow-matching score model, with classifier-free guidance (teacher sampling, ODE pairs).

The probability-flow ODE of flow matching (x_t = (1 - sigma) x0 + sigma eps, v = eps - x0) is
dx/dsigma = v(x, sigma); one Euler step from sigma_i to sigma_{i+1} is

    x <- x + (sigma_{i+1} - sigma_i) * v(x, sigma_i)                        (sigma decreasing)

on the grid `schedule.euler_grid(num_steps, shift)`. Guidance follows methods.md A.2.2, v = c + g (c - u)
(g = standard CFG scale - 1; the one convention of the package, `score_model.cfg_combine`). Two modes:

* ``chunk_frames=None``: all frames are denoised together (a bidirectional teacher);
* ``chunk_frames=n``: chunk by chunk, each chunk from pure noise while the frames before it are the clean
  frames already generated (sigma 0), as a streaming student sees its history (pass ``block_causal=`` for a
  causal model). Frames after the current chunk are not shown to the model.

`euler_solve` can record the trajectory at chosen grid indices: ODE pairs for the few-step student are
``(x at the few-step levels, final x0)`` (Self-Forcing's ODE initialisation, methods.md A.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from streamvid.core.schedule import euler_grid
from streamvid.core.score_model import Condition, ScoreModel

__all__ = ["EulerResult", "euler_solve"]


@dataclass
class EulerResult:
    """Output of `euler_solve`.

    Attributes:
        x0: ``[B, C, F, H, W]`` the solution at sigma 0.
        grid: ``[N + 1]`` the noise levels used (descending, 1 -> 0).
        trajectory: ``{grid index: [B, C, F, H, W]}`` the state *entering* step i (at sigma ``grid[i]``), for
            the recorded indices; in chunked mode each chunk's frames at that level (earlier frames clean).
    """

    x0: torch.Tensor
    grid: torch.Tensor
    trajectory: dict[int, torch.Tensor]


@torch.no_grad()
def euler_solve(
    score: ScoreModel,
    noise: torch.Tensor,
    cond: Condition,
    uncond: Condition | None = None,
    guidance: float = 0.0,
    num_steps: int = 20,
    shift: float = 3.0,
    chunk_frames: int | None = None,
    record: Sequence[int] = (),
    **model_kwargs,
) -> EulerResult:
    """Solve the flow ODE from ``noise`` ``[B, C, F, H, W]`` (sigma 1) to sigma 0.

    Args:
        score: the flow model (`ScoreModel`; its wrapped model sees diffusers-layout latents).
        noise: ``[B, C, F, H, W]`` the starting noise.
        cond / uncond / guidance: the prompt, the null prompt and g of ``c + g (c - u)`` (0: no guidance).
        num_steps / shift: the Euler grid (`schedule.euler_grid`).
        chunk_frames: denoise chunk by chunk on clean context (see the module docstring); None: jointly.
        record: grid indices whose states to keep in `EulerResult.trajectory`.
        model_kwargs: passed to the model (e.g. ``block_causal=BlockCausal(n)``).
    """
    grid = euler_grid(num_steps, shift)
    frames = noise.shape[2]
    n = chunk_frames or frames
    if frames % n:
        raise ValueError(f"{frames} frames is not a multiple of chunk_frames={n}")
    bad = [i for i in record if not 0 <= i <= num_steps]
    if bad:
        raise ValueError(f"record indices {bad} are outside the grid's 0..{num_steps}")
    keep = set(record)
    x = noise.clone()
    trajectory = {i: torch.empty_like(noise) for i in keep}
    for start in range(0, frames, n):
        stop = start + n
        for i in range(num_steps + 1):
            if i in keep:
                trajectory[i][:, :, start:stop] = x[:, :, start:stop]
            if i == num_steps:
                break
            sigma = torch.zeros(noise.shape[0], stop, device=noise.device)
            sigma[:, start:stop] = grid[i]
            v = score.flow(x[:, :, :stop], sigma, cond, uncond, guidance, **model_kwargs)
            x[:, :, start:stop] += (grid[i + 1] - grid[i]) * v[:, :, start:stop]
    return EulerResult(x, grid, trajectory)
