"""Reward saliency: per-axis pixel gradient magnitudes ``|d axis / d pixel|`` (methods.md A.6 steps 1-2).

Stream-R1 takes ``g_m = d raw_logit_m / d P_in`` on the processor's normalised patch tensor and reduces it to
one L2 norm per 14x14x2 patch row, then views those rows in raster order although the Qwen2-VL processor
emits them in 2x2 merge-window order (the patch-order bug of A.6 step 2). Here the gradient is taken w.r.t.
the input pixels, through the adapter's own differentiable torch preprocessing (resize, normalise,
patchify), so the map is per pixel and in the video's own layout by construction; no patch-order
bookkeeping is left to the caller. Differences from the reference, on purpose:

- the gradient is of the adapter's *normalised* axis; for z-normalised axes that rescales the reference's
  raw-logit gradient by ``1 / sigma_m`` (a constant per axis);
- it is per pixel; pooling to patches or to a latent grid is the caller's choice (the reference's
  per-patch L2 over 1176 features is a coarser version of ``reduce="l2"``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from streamvid.core.rewards.base import RewardModel, check_reward_inputs

__all__ = ["REDUCTIONS", "saliency"]

REDUCTIONS = ("l2", "abs_sum")
"""How the channel gradient is reduced per pixel: L2 norm over C, or the sum of absolute values over C."""


def saliency(
    reward: RewardModel,
    video: Tensor,
    prompts: list[str],
    axes: list[str] | tuple[str, ...] | None = None,
    reduce: str = "l2",
) -> dict[str, Tensor]:
    """Per-axis pixel saliency of a differentiable reward.

    Because samples never interact inside a reward, the gradient of ``axis.sum()`` w.r.t. ``video`` holds
    each sample's own ``d axis_b / d video_b``; one backward pass per axis serves the whole batch.

    Args:
        reward: a reward whose ``differentiable`` is True.
        video: ``[B, T, C, H, W]`` float in [0, 1] (not modified; a detached copy is differentiated).
        prompts: ``B`` prompts.
        axes: axis names to compute (default: all of ``reward.axes``).
        reduce: ``"l2"`` (default): ``sqrt(sum_c g_c^2)``; ``"abs_sum"``: ``sum_c |g_c|``.

    Returns:
        axis name -> ``[B, T, H, W]`` float32, non-negative, detached.

    Raises:
        TypeError: the reward is not differentiable (e.g. runs under no_grad).
        ValueError: an unknown axis or reduction.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}; got '{reduce}'")
    name = type(reward).__name__
    if not getattr(reward, "differentiable", False):
        raise TypeError(
            f"saliency needs a differentiable reward; {name} has differentiable=False "
            "(it scores under no_grad or through non-differentiable preprocessing)"
        )
    check_reward_inputs(video, prompts)
    wanted = tuple(reward.axes) if axes is None else tuple(axes)
    unknown = [a for a in wanted if a not in reward.axes]
    if unknown:
        raise ValueError(f"{name} has no axes {unknown}; its axes are {tuple(reward.axes)}")
    pixels = video.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = reward(pixels, prompts)
        if not out.differentiable:
            raise TypeError(f"saliency needs a differentiable reward; {name} returned differentiable=False")
        maps: dict[str, Tensor] = {}
        for i, axis in enumerate(wanted):
            target = out.axes[axis]
            if not target.requires_grad:
                raise TypeError(f"{name} axis '{axis}' carries no autograd graph back to the pixels")
            (grad,) = torch.autograd.grad(
                target.sum(), pixels, retain_graph=i < len(wanted) - 1, allow_unused=True
            )
            grad = torch.zeros_like(pixels) if grad is None else grad
            grad = grad.float()
            maps[axis] = grad.norm(dim=2) if reduce == "l2" else grad.abs().sum(dim=2)
    return maps
