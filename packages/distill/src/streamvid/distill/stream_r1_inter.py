"""Stream-R1's Inter-Reliability weight as small pure functions (methods.md A.3.1, A.4, A.5), and the axis tables.

``W_inter = exp(beta * r_final)`` (A.4), one scalar per rollout, where ``r_final`` is the base reward (the mean of
the normalised rewards over the axes of ``reward_mode``) minus ``lambda * P``, ``P`` the balance penalty of A.5
(`BalancePenalty`). `streamvid.distill.stream_r1_weighting.StreamR1Weighting` composes these with the intra weight
of `streamvid.distill.stream_r1_intra`.

Axis names. In code an axis is named as the reward interface names it (`streamvid.core.rewards.base.AXES`:
``visual``, ``motion``, ``text``). The paper and the reference code call them VQ, MQ and TA; those names survive
only as config *values* of shipped YAMLs (``reward_mode: MQ``, ``reward_dims: [VQ, MQ, TA]``,
``spatial_reward_metrics``, methods.md A.8) and in the logged column names of A.9 (``reward_vq`` ...), and
`PAPER_NAME` is the one table between the two.

Deliberate differences from the reference code:

* **Every sample is weighted with its own rewards.** The reference scores batch element 0 and applies its
  weight to the whole batch (batch 1 per rank); here `inter_weight` is per sample, and
  `BalancePenalty.update_batch` feeds the samples of a micro-step to the history one after the other, each as
  if it were one reference micro-step.
* The balance-penalty statistics are computed in python float64 (the reference uses torch float32 tensors);
  the difference is round-off.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from streamvid.core.rewards.base import AXES

__all__ = [
    "AXES",
    "AXIS_OF",
    "PAPER_NAME",
    "REWARD_MODES",
    "BalancePenalty",
    "base_reward",
    "final_reward",
    "inter_weight",
    "normalise_rewards",
]

PAPER_NAME = {"visual": "VQ", "motion": "MQ", "text": "TA"}
"""Axis -> its name in the paper and the reference code (VideoAlign's visual quality, motion quality, text
alignment; methods.md A.3-A.6): the accepted config values of ``reward_dims`` / ``spatial_reward_metrics`` and
the single-axis ``reward_mode`` s (A.8), and the suffix of the logged ``reward_vq`` ... (A.9). Same order as
`AXES` (the reference's VQ, MQ, TA)."""

AXIS_OF = {paper: axis for axis, paper in PAPER_NAME.items()}
"""Paper name (a config value) -> axis; the inverse of `PAPER_NAME`."""

REWARD_MODES = (*AXIS_OF, "Overall", "BalancedOverall")
"""``reward_mode`` of methods.md A.4: one axis (``MQ`` is Reward Forcing's Re-DMD), the mean over
``reward_dims``, or that mean minus ``lambda * P`` (A.5)."""


def normalise_rewards(
    axes: Mapping[str, Tensor], norm: Mapping[str, tuple[float, float]] | None
) -> dict[str, Tensor]:
    """z-normalise raw rewards: ``r_m = (raw_m - mu_m) / sigma_m`` (methods.md A.3.1, ``use_norm=True``).

    Args:
        axes: axis -> raw reward ``[B]``.
        norm: axis -> ``(mu, sigma)`` for every key of ``axes`` (extra keys are ignored), or None for the
            identity (our VideoAlign adapter already returns normalised axes).

    Returns:
        axis -> ``[B]`` normalised reward (a new dict; the input is not modified).

    Raises:
        ValueError: a key of ``axes`` has no entry in ``norm``, or a sigma is not positive.
    """
    if norm is None:
        return dict(axes)
    missing = sorted(set(axes) - set(norm))
    if missing:
        raise ValueError(f"no (mu, sigma) for reward axes {missing} (norm has {sorted(norm)})")
    out = {}
    for name, raw in axes.items():
        mu, sigma = norm[name]
        if not sigma > 0:
            raise ValueError(f"sigma for reward axis '{name}' must be > 0, got {sigma}")
        out[name] = (raw - mu) / sigma
    return out


def base_reward(r: Mapping[str, Tensor], axes: Sequence[str]) -> Tensor:
    """Base scalar reward per sample (methods.md A.4 ``reward_mode``): the mean of ``r`` over ``axes``.

    A single-axis ``reward_mode`` (``MQ``: Reward Forcing's Re-DMD) is ``axes=["motion"]``; ``Overall`` and
    ``BalancedOverall`` average ``reward_dims`` (``BalancedOverall`` subtracts ``lambda * P`` afterwards,
    `final_reward`). `StreamR1Config.base_axes` resolves the config to ``axes``.

    Args:
        r: axis -> normalised reward ``[B]``.
        axes: the axes averaged (at least one).

    Returns:
        ``[B]`` base reward (a mean over one axis is that axis exactly).
    """
    if len(axes) == 0:
        raise ValueError("the base reward needs at least one axis")
    unknown = [a for a in axes if a not in r]
    if unknown:
        raise KeyError(f"rewards have no axes {unknown} (keys: {sorted(r)})")
    return torch.stack([r[a] for a in axes], dim=0).mean(dim=0)


class BalancePenalty:
    """Adaptive reward balancing, the "Balanced multi-dim penalty" (methods.md A.5).

    Keeps one history (a deque of python floats, maxlen ``window``) per axis (`AXES`: visual, motion, text, the
    reference's VQ, MQ, TA) and a call counter ``n``. Each `update` appends one sample's three normalised
    rewards (A.5 step 1) and returns the penalty ``P`` (steps 2-3): once ``n >= warmup`` and every history holds
    at least 4 entries, each history is split into an early part (the first ``max(1, len // 2)`` entries) and a
    recent part (the rest), ``delta_m = mean(recent_m) - mean(early_m)`` and ``P = std(delta_visual,
    delta_motion, delta_text)`` with the unbiased (N-1) std; otherwise ``P = 0``. The caller subtracts
    ``lambda * P`` (`final_reward`).

    **Batches.** The reference updates once per generator micro-step with the single rollout of its rank
    (batch element 0). With ``B`` samples per micro-step, `update_batch` calls `update` once per sample in
    batch order, so each sample gets the ``P`` it would have had as one reference micro-step and the window
    spans ``window`` *rollouts* (as in the reference with batch 1). State is per process and not
    synchronised across ranks, as in the reference; to share it, all-gather the rewards in rank order and
    feed the same sequence to every rank.

    Args:
        window: history length per axis (``reward_balance_window``, 50).
        warmup: calls before the penalty turns on (``reward_balance_warmup``, 50).
    """

    MIN_HISTORY = 4
    """Entries every history needs before the penalty is computed (methods.md A.5 step 2)."""

    def __init__(self, window: int = 50, warmup: int = 50) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self.window = int(window)
        self.warmup = int(warmup)
        self.n = 0
        self.history: dict[str, deque[float]] = {a: deque(maxlen=self.window) for a in AXES}

    @property
    def active(self) -> bool:
        """Whether the penalty is computed (``n >= warmup`` and every history has >= 4 entries)."""
        return self.n >= self.warmup and all(len(h) >= self.MIN_HISTORY for h in self.history.values())

    def penalty(self) -> float:
        """``P`` from the current histories without updating them (0.0 when not `active`)."""
        if not self.active:
            return 0.0
        deltas = []
        for a in AXES:
            values = list(self.history[a])
            split = max(1, len(values) // 2)
            early, recent = values[:split], values[split:]
            deltas.append(sum(recent) / len(recent) - sum(early) / len(early))
        mean = sum(deltas) / len(deltas)
        return math.sqrt(sum((d - mean) ** 2 for d in deltas) / (len(deltas) - 1))

    def update(self, visual: float | Tensor, motion: float | Tensor, text: float | Tensor) -> float:
        """Append one sample's normalised rewards, ``n += 1``, and return ``P`` (methods.md A.5 steps 1-3)."""
        for a, value in zip(AXES, (visual, motion, text), strict=True):
            self.history[a].append(float(value))
        self.n += 1
        return self.penalty()

    def update_batch(self, r: Mapping[str, Tensor], valid: Tensor | None = None) -> Tensor:
        """`update` once per valid sample, in batch order; the per-sample penalties ``[B]`` (float64, CPU).

        Args:
            r: axis -> ``[B]`` normalised rewards, for every axis of `AXES` (values are read; no autograd).
            valid: ``[B]`` bool; an invalid sample (a non-finite reward) is not fed to the history and gets
                ``P = 0``. None: all valid.
        """
        rows = [torch.as_tensor(r[a]).detach().reshape(-1).double().cpu().tolist() for a in AXES]
        if len({len(x) for x in rows}) != 1:
            raise ValueError(f"reward batches differ in size: {dict(zip(AXES, map(len, rows), strict=True))}")
        keep = [True] * len(rows[0]) if valid is None else torch.as_tensor(valid).reshape(-1).tolist()
        penalty = torch.zeros(len(rows[0]), dtype=torch.float64)
        for i, sample in enumerate(zip(*rows, strict=True)):
            if keep[i]:
                penalty[i] = self.update(*sample)
        return penalty

    def state_dict(self) -> dict[str, Any]:
        """Plain, picklable state for exact resume: window, warmup, n and the three histories (lists)."""
        return {
            "window": self.window,
            "warmup": self.warmup,
            "n": self.n,
            "history": {a: list(h) for a, h in self.history.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict` output (also one saved with the paper's history keys VQ / MQ / TA and a ``lam``,
        before the axes were renamed); raises ValueError if it was saved with another window or warm-up."""
        if int(state["window"]) != self.window or int(state["warmup"]) != self.warmup:
            raise ValueError(
                f"BalancePenalty state has window={state['window']}, warmup={state['warmup']}; this one has "
                f"window={self.window}, warmup={self.warmup}"
            )
        history = {AXIS_OF.get(k, k): v for k, v in state["history"].items()}
        self.n = int(state["n"])
        self.history = {a: deque((float(v) for v in history[a]), maxlen=self.window) for a in AXES}


def final_reward(base: Tensor, penalty: float | Tensor, lam: float) -> Tensor:
    """``r_final = base - lambda * P`` (methods.md A.4 / A.5 step 2); ``base [B]``, ``P`` scalar or ``[B]``."""
    if torch.is_tensor(penalty):
        penalty = penalty.to(device=base.device, dtype=base.dtype)
    return base - lam * penalty


def inter_weight(r_final: Tensor, beta: float) -> Tensor:
    """Inter-Reliability weight ``W_inter = exp(beta * r_final)`` per sample (methods.md A.4), detached.

    ``r_final [B]`` -> ``[B]``. Unlike the reference (batch element 0's weight for the whole batch), every
    sample gets its own weight. No normalisation across samples and no clipping, as in the reference.
    """
    return torch.exp(beta * r_final.detach())
