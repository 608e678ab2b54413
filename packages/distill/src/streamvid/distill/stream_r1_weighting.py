"""`StreamR1Weighting`: Stream-R1's loss weights of one rollout batch, composed once (methods.md A.4-A.7).

The generator loss of Stream-R1 (A.7) is ``L = 0.5 * W_inter * mean(W_intra * (x - sg(x - grad))^2)``
(`streamvid.distill.dmd.dmd_loss`). This object turns a batch's raw reward axes and per-axis saliency maps into
those two weights with the config's flags, holding the one piece of state, the `BalancePenalty` (A.5), saved
with the training checkpoint (`state_dict` / `load_state_dict`). `DMDModule`, ``bench/distill_step.py`` and
``notebooks/stream_r1_weights.ipynb`` call this same object; the reward forward and the saliency backward
stay with the caller (they need the reward model and the pixels).

Pipeline (shipped config, A.8)::

    r = normalise_rewards(raw, norm)                                   # A.3.1, axis -> [B]
    valid = every axis of r finite                                     # [B]
    P = penalty.update_batch(r, valid)                                 # A.5 (BalancedOverall only)
    W_inter = exp(beta * (mean_axes r - lambda * P)), 1 where invalid  # A.4, [B]
    S = fuse_saliency(stack_saliency(maps), fusion_weights(stack_rewards(r), T))      # A.6 steps 1-3
    W_intra = intra_weight(pool_frames_to_latent(S, F, h, w, "rms"), ...)[:, :, None]  # A.6 steps 4-7
    W_intra = 1 where invalid                                          # [B, F, 1, h, w]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from streamvid.distill import stream_r1_intra as intra
from streamvid.distill.dmd_config import StreamR1Config
from streamvid.distill.stream_r1_inter import (
    PAPER_NAME,
    BalancePenalty,
    base_reward,
    final_reward,
    inter_weight,
    normalise_rewards,
)

__all__ = ["StreamR1Weighting", "WeightOutput"]


@dataclass
class WeightOutput:
    """The Stream-R1 weights of one rollout batch (all detached, float32, on the CPU).

    Attributes:
        inter: ``[B]`` ``W_inter = exp(beta r_final)`` (A.4), 1 for an invalid sample; None when
            ``reward_weighting`` is off (the loss is then unweighted, exactly plain DMD).
        intra: ``[B, F, 1, h, w]`` ``W_intra`` on the latent grid, mean 1 per sample (A.6), 1 for an invalid
            sample; None when ``spatial_reward`` is off or no saliency maps were given.
        valid: ``[B]`` bool, the samples whose rewards are all finite (the others keep weight 1).
        logs: the scalars of A.9 (``reward_vq`` ..., ``reward_weight``, ``reward_balance_penalty``,
            ``spatial_weight_*``, ``temporal_sal_weight_*``).
        per_sample: ``reward_final``, ``reward_weight`` and ``reward_vq`` ... as lists of ``B`` floats (empty
            when ``reward_weighting`` is off).
    """

    inter: Tensor | None
    intra: Tensor | None
    valid: Tensor
    logs: dict[str, float] = field(default_factory=dict)
    per_sample: dict[str, list[float]] = field(default_factory=dict)


class StreamR1Weighting:
    """Stream-R1's inter and intra weights from reward axes and saliency maps (see the module docstring).

    Args:
        cfg: the ``stream_r1`` section of the stage config (methods.md A.4-A.6 flags).

    Attributes:
        penalty: the `BalancePenalty` (A.5), advanced once per valid sample by each call while
            ``cfg.uses_balance``.
    """

    def __init__(self, cfg: StreamR1Config) -> None:
        self.cfg = cfg
        self.penalty = BalancePenalty(cfg.reward_balance_window, cfg.reward_balance_warmup)

    @property
    def saliency_axes(self) -> tuple[str, ...]:
        """The axes whose saliency maps `__call__` reads (when ``spatial_reward``), in fusion order."""
        return self.cfg.saliency_axes

    def state_dict(self) -> dict[str, Any]:
        """The balance penalty's state (plain data, for the training checkpoint)."""
        return self.penalty.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.penalty.load_state_dict(state)

    def __call__(
        self,
        axes: Mapping[str, Tensor],
        saliency_maps: Mapping[str, Tensor] | None,
        latent_shape: Sequence[int],
    ) -> WeightOutput:
        """The weights of one batch.

        Args:
            axes: axis -> raw reward ``[B]`` (a `RewardOutput.axes`; normalised here with ``reward_norm``).
            saliency_maps: axis -> ``[B, T, H, W]`` per-pixel saliency for `saliency_axes`
                (`streamvid.core.rewards.saliency.saliency`), or None (no intra weight).
            latent_shape: the rollout's ``[B, F, C, h, w]``; the intra weight is on its ``(F, h, w)`` grid.

        Returns:
            `WeightOutput`. Advances `penalty` by the valid samples, in batch order (A.5).
        """
        cfg, logs = self.cfg, {}
        r = normalise_rewards({k: v.detach().double().cpu() for k, v in axes.items()}, cfg.norm)
        valid = torch.stack([torch.isfinite(r[a]) for a in PAPER_NAME if a in r]).all(0)
        for axis, paper in PAPER_NAME.items():
            if axis in r:
                logs[f"reward_{paper.lower()}"] = float(r[axis][valid].mean()) if valid.any() else math.nan
        inter, per_sample = None, {}
        if cfg.reward_weighting:
            base = base_reward(r, cfg.base_axes)
            if cfg.uses_balance:  # A.5: one penalty update per valid sample, in batch order
                penalty = self.penalty.update_batch(r, valid)
                final = final_reward(base, penalty, cfg.reward_balance_lambda)
            else:
                penalty, final = torch.zeros_like(base), base
            inter = torch.where(valid, inter_weight(final, cfg.beta), torch.ones_like(final))
            logs |= {"reward_weight": float(inter.mean()), "reward_balance_penalty": float(penalty.mean())}
            per_sample = {"reward_final": final.tolist(), "reward_weight": inter.tolist(),
                          **{f"reward_{p.lower()}": r[a].tolist() for a, p in PAPER_NAME.items() if a in r}}
            inter = inter.float()
        w_intra = None
        if cfg.spatial_reward and saliency_maps is not None:
            w_intra = self.intra_weights(r, saliency_maps, latent_shape, valid)
            logs |= intra.weight_stats(w_intra, "spatial_weight")
            logs |= intra.weight_stats(w_intra.mean(dim=(2, 3, 4)), "temporal_sal_weight")
        return WeightOutput(inter, w_intra, valid, logs, per_sample)

    def intra_weights(self, r: Mapping[str, Tensor], saliency_maps: Mapping[str, Tensor], latent_shape: Sequence[int],
              valid: Tensor) -> Tensor:
        """``[B, F, 1, h, w]`` float32 ``W_intra`` (methods.md A.6) from normalised rewards ``r`` (axis -> ``[B]``,
        before the balance penalty) and per-pixel saliency maps; 1 where not ``valid``.

        The fused saliency is pooled to the latent grid first (RMS of per-pixel L2 norms: the cell's gradient
        L2 up to a constant, the reference's per-patch norm), then the factors of A.6 steps 4-7 on that grid.
        """
        cfg, axes = self.cfg, self.saliency_axes
        s = intra.stack_saliency(saliency_maps, axes).double().cpu().nan_to_num(0.0)  # [B, M, T, H, W]
        rm = intra.stack_rewards(r, axes).nan_to_num(0.0)  # [B, M]
        fused = intra.fuse_saliency(s, intra.fusion_weights(rm, cfg.spatial_reward_temperature),
                                    cfg.spatial_reward_combination)  # [B, T, H, W]
        _, f, _, h, w = latent_shape
        cells = intra.pool_frames_to_latent(fused, f, h, w, how="rms")  # [B, F, h, w]
        weight = intra.intra_weight(cells, cfg.temporal_saliency_weighting, cfg.temporal_saliency_strength,
                                    cfg.temporal_saliency_min_weight, cfg.spatial_reward_strength,
                                    cfg.spatial_reward_min_weight).unsqueeze(2)  # [B, F, 1, h, w]
        return torch.where(valid.view(-1, 1, 1, 1, 1), weight, torch.ones_like(weight)).float()
