"""Flow-matching training pieces: noise levels per frame, the loss, and an EMA of the weights.

Conventions (`streamvid.core.schedule`): x_t = (1 - sigma) x0 + sigma eps, the model predicts v = eps - x0.

* `frame_noise_levels`: one logit-normal, shifted level per clip, or with probability ``p_chunk`` one per
  chunk of ``chunk_frames`` frames (diffusion forcing: clean-ish chunks next to noisy ones teach a causal model
  to continue its context);
* `flow_matching_loss`: mean squared error of the predicted flow against eps - x0 (rectified flow / SD3 with
  uniform weighting in sigma's logit-normal density);
* `flow_distillation_loss`: the same regression with a teacher's (guided) flow at the same x_t as the target:
  E[v | x_t, prompt] instead of one sample of it, a lower-variance target that exposes what the prompt changes;
* `EMA`: an exponential moving average of parameters with the warm-up decay ``min(decay, (1 + k) / (10 + k))``
  at update k (so early averages do not drag in the random initialisation).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from streamvid.core.schedule import logit_normal_sigmas
from streamvid.core.score_model import Condition, ScoreModel, add_frame_noise

__all__ = ["EMA", "flow_distillation_loss", "flow_matching_loss", "frame_noise_levels"]


def frame_noise_levels(
    batch: int,
    frames: int,
    chunk_frames: int,
    shift: float,
    p_chunk: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``[B, F]`` noise levels: per clip, or (probability ``p_chunk`` per sample) per chunk of frames.

    Each level is ``shift_sigma(sigmoid(N(0, 1)), shift)`` (`schedule.logit_normal_sigmas`).
    """
    if chunk_frames < 1 or frames % chunk_frames:
        raise ValueError(f"chunk_frames={chunk_frames} must divide the {frames} frames")
    chunks = frames // chunk_frames
    per_chunk = logit_normal_sigmas(batch * chunks, shift, generator).view(batch, chunks)
    per_clip = logit_normal_sigmas(batch, shift, generator)[:, None].expand(batch, chunks)
    use_chunk = torch.rand(batch, 1, generator=generator) < p_chunk
    return torch.where(use_chunk, per_chunk, per_clip).repeat_interleave(chunk_frames, dim=1)


def flow_matching_loss(
    score: ScoreModel,
    x0: torch.Tensor,
    cond: Condition,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    **model_kwargs,
) -> torch.Tensor:
    """``mean |v_pred(x_t, sigma) - (eps - x0)|^2`` over every element, x_t = (1 - sigma) x0 + sigma eps.

    ``x0``, ``noise`` ``[B, C, F, H, W]``; ``sigma`` ``[B, F]`` (or ``[B]`` / float); scalar float32 loss.
    """
    x_t = add_frame_noise(x0, noise, sigma)
    v = score.flow(x_t, sigma, cond, **model_kwargs)
    return F.mse_loss(v.float(), (noise - x0).float())


def flow_distillation_loss(
    student: ScoreModel,
    teacher: ScoreModel,
    x0: torch.Tensor,
    cond: Condition,
    uncond: Condition,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    guidance: float = 0.0,
    teacher_kwargs: dict | None = None,
    **student_kwargs,
) -> torch.Tensor:
    """``mean |v_student(x_t) - v_teacher(x_t)|^2`` with the teacher guided as ``c + g (c - u)`` (A.2.2).

    x_t = (1 - sigma) x0 + sigma eps from data; the teacher runs without gradient (``teacher_kwargs`` go to it,
    ``student_kwargs`` to the student, e.g. ``block_causal=``). Shapes as `flow_matching_loss`.
    """
    x_t = add_frame_noise(x0, noise, sigma)
    with torch.no_grad():
        target = teacher.flow(x_t, sigma, cond, uncond, guidance, **(teacher_kwargs or {}))
    v = student.flow(x_t, sigma, cond, **student_kwargs)
    return F.mse_loss(v.float(), target.float())


class EMA(torch.nn.Module):
    """Exponential moving average of a model's parameters (buffers are copied).

    ``update(model)`` at update k sets ``ema = d * ema + (1 - d) * param`` with ``d = min(decay, (1 + k) /
    (10 + k))`` (``warmup=False``: ``d = decay``, the constant decay of Self-Forcing's generator EMA, A.2.4).
    ``module`` is the averaged copy (frozen, ``requires_grad=False``), used for sampling and
    saved with `state_dict` (so checkpoints resume the average and its step).
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.995, warmup: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        self.module = copy.deepcopy(model).requires_grad_(False).eval()
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        k = int(self.num_updates)
        d = min(self.decay, (1 + k) / (10 + k)) if self.warmup else self.decay
        for ema_p, p in zip(self.module.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach().to(ema_p.dtype), 1 - d)
        for ema_b, b in zip(self.module.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)
        self.num_updates += 1
