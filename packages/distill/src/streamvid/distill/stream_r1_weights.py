"""Stream-R1 loss weights as small pure functions, one per equation of methods.md A.3.1 and A.4-A.8.

The generator loss of Stream-R1 (methods.md A.7) is ``L = 0.5 * W_inter * mean(W_intra * (x - sg(x - grad))^2)``:

* **Inter-Reliability** ``W_inter = exp(beta * r_final)`` (A.4), one scalar per rollout, where ``r_final`` is the
  base reward of `reward_mode` minus ``lambda * P`` (the balance penalty of A.5, `BalancePenalty`);
* **Intra-Perplexity** ``W_intra [B, F, 1, h, w]`` (A.6), mean 1 per sample, from the per-axis reward saliency
  fused with weights ``softmax(-r / T)`` (`fusion_weights`, `fuse_saliency`) and factorised into a per-frame
  temporal factor (`temporal_factor`) and a per-frame spatial factor (`spatial_factor`), combined by
  `intra_weight` and brought to the latent grid by `pool_to_latent`.

Pipeline (shipped config, A.8): ``r = normalise_rewards(raw, norm)`` -> ``base = base_reward(r, "BalancedOverall")``
-> ``P = penalty.update_batch(r_VQ, r_MQ, r_TA)`` -> ``w_inter = inter_weight(final_reward(base, P, 0.5), 2.0)``;
``S = fuse_saliency(stack_saliency(maps), fusion_weights(stack_rewards(r), 1.0))`` ->
``W = intra_weight(pool_frames_to_latent(S, F, h, w), True, 1.0, 0.2, 1.0, 0.15).unsqueeze(2)``.

Deliberate differences from the reference code (methods.md describes the reference):

* **Every sample is weighted with its own rewards.** The reference scores batch element 0 and applies its
  weight to the whole batch (batch 1 per rank); here `inter_weight`, `fusion_weights` and the saliency maps are
  per sample, and `BalancePenalty.update_batch` feeds the samples of a micro-step to the history one after the
  other, each as if it were one reference micro-step.
* **Saliency is per pixel, so it is pooled, not interpolated.** The reference takes one L2 norm per 14x14x2
  Qwen2-VL patch and trilinearly interpolates the (40, 24, 42) patch grid to the latent grid (21, 60, 104).
  Our saliency (`streamvid.core.rewards.saliency`) is one value per decoded pixel ``[B, T, H, W]`` in the
  video's own layout (so the reference's patch-order bug of A.6 step 2 does not arise), and it is brought to
  the latent grid by *area pooling* over the pixels (and pixel frames) each latent cell covers
  (`pool_frames_to_latent`, `pool_to_latent`). ``how="rms"`` pools per-pixel L2 norms into the L2 norm of the
  cell's gradient (up to the constant ``sqrt(cell size)``), the analogue of the reference's per-patch L2.
* The balance-penalty statistics are computed in python float64 (the reference uses torch float32 tensors);
  the difference is round-off.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AXIS_OF",
    "FLAT_EPS",
    "FUSIONS",
    "METRICS",
    "REWARD_MODES",
    "SPATIAL_METRICS",
    "BalancePenalty",
    "base_reward",
    "final_reward",
    "fuse_saliency",
    "fusion_weights",
    "global_spatial_factor",
    "inter_weight",
    "intra_weight",
    "latent_frame_groups",
    "normalise_rewards",
    "pool_frames_to_latent",
    "pool_to_latent",
    "spatial_factor",
    "stack_rewards",
    "stack_saliency",
    "temporal_factor",
    "weight_stats",
]

METRICS = ("VQ", "MQ", "TA")
"""VideoAlign's reward axes in the reference's order (visual quality, motion quality, text alignment)."""

AXIS_OF = {"VQ": "visual", "MQ": "motion", "TA": "text"}
"""VideoAlign metric name -> our `RewardOutput` axis name (`streamvid.core.rewards.base.AXES`)."""

REWARD_MODES = ("VQ", "MQ", "TA", "Overall", "BalancedOverall")
"""``reward_mode`` of methods.md A.4: one axis, the mean over ``reward_dims``, or that mean minus the penalty."""

SPATIAL_METRICS = ("MQ", "VQ", "TA")
"""Shipped ``spatial_reward_metrics`` (methods.md A.6 table): the order of the fusion weights and maps."""

FUSIONS = ("adaptive", "mean", "max")
"""``spatial_reward_combination`` (methods.md A.6 step 3)."""

FLAT_EPS = 1e-8
"""A map whose ``max - min <= FLAT_EPS`` is flat and min-max normalises to all ones (methods.md A.6 steps 4-5)."""


# --------------------------------------------------------------------------------------------------------------
# Rewards: normalisation, base reward, balance penalty, inter weight (methods.md A.3.1, A.4, A.5)
# --------------------------------------------------------------------------------------------------------------


def _metric(r: Mapping[str, Tensor], metric: str) -> Tensor:
    """``r[metric]``, or ``r[AXIS_OF[metric]]`` when ``r`` is keyed by our axis names (``visual`` ...)."""
    if metric not in AXIS_OF:
        raise ValueError(f"unknown metric '{metric}'; expected one of {METRICS}")
    if metric in r:
        return r[metric]
    axis = AXIS_OF[metric]
    if axis in r:
        return r[axis]
    raise KeyError(f"rewards have neither '{metric}' nor '{axis}' (keys: {sorted(r)})")


def normalise_rewards(
    axes: Mapping[str, Tensor], norm: Mapping[str, tuple[float, float]] | None
) -> dict[str, Tensor]:
    """z-normalise raw rewards: ``r_m = (raw_m - mu_m) / sigma_m`` (methods.md A.3.1, ``use_norm=True``).

    Args:
        axes: name -> raw reward ``[B]`` (any key names, e.g. ``VQ`` or ``visual``).
        norm: name -> ``(mu, sigma)`` for every key of ``axes`` (extra keys are ignored), or None for the
            identity (our VideoAlign adapter already returns normalised axes).

    Returns:
        name -> ``[B]`` normalised reward (a new dict; the input is not modified).

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


def base_reward(r: Mapping[str, Tensor], mode: str, dims: Sequence[str] = METRICS) -> Tensor:
    """Base scalar reward per sample (methods.md A.4 ``reward_mode``).

    ``"VQ"``/``"MQ"``/``"TA"``: that axis (``"MQ"`` is Reward Forcing's Re-DMD); ``"Overall"`` and
    ``"BalancedOverall"``: the mean over ``dims`` (``reward_dims``, default all three). ``BalancedOverall``
    additionally subtracts ``lambda * P`` afterwards (`final_reward`, A.5); the base is the same as Overall's.

    Args:
        r: normalised rewards, keyed by metric (``VQ``, ``MQ``, ``TA``) or by axis (``visual``, ``motion``,
            ``text``), each ``[B]``.
        mode: one of `REWARD_MODES`.
        dims: metrics averaged by the Overall modes (ignored by the single-axis modes).

    Returns:
        ``[B]`` base reward.
    """
    if mode not in REWARD_MODES:
        raise ValueError(f"reward_mode must be one of {REWARD_MODES}; got '{mode}'")
    if mode in METRICS:
        return _metric(r, mode)
    if len(dims) == 0:
        raise ValueError("reward_dims must name at least one metric")
    return torch.stack([_metric(r, m) for m in dims], dim=0).mean(dim=0)


class BalancePenalty:
    """Adaptive reward balancing, the "Balanced multi-dim penalty" (methods.md A.5).

    Keeps one history (a deque of python floats, maxlen ``window``) per axis VQ, MQ, TA and a call counter
    ``n``. Each `update` appends one sample's three normalised rewards (A.5 step 1) and returns the penalty
    ``P`` (steps 2-3): once ``n >= warmup`` and every history holds at least 4 entries, each history is split
    into an early part (the first ``max(1, len // 2)`` entries) and a recent part (the rest),
    ``delta_m = mean(recent_m) - mean(early_m)`` and ``P = std(delta_VQ, delta_MQ, delta_TA)`` with the
    unbiased (N-1) std; otherwise ``P = 0``.

    **Batches.** The reference updates once per generator micro-step with the single rollout of its rank
    (batch element 0). With ``B`` samples per micro-step, `update_batch` calls `update` once per sample in
    batch order, so each sample gets the ``P`` it would have had as one reference micro-step and the window
    spans ``window`` *rollouts* (as in the reference with batch 1). State is per process and not
    synchronised across ranks, as in the reference; to share it, all-gather the rewards in rank order and
    feed the same sequence to every rank.

    Args:
        window: history length per axis (``reward_balance_window``, 50).
        warmup: calls before the penalty turns on (``reward_balance_warmup``, 50).
        lam: ``lambda`` (``reward_balance_lambda``, 0.5), kept for the caller's `final_reward`; `update`
            returns ``P``, not ``lambda * P``.
    """

    MIN_HISTORY = 4
    """Entries every history needs before the penalty is computed (methods.md A.5 step 2)."""

    def __init__(self, window: int = 50, warmup: int = 50, lam: float = 0.5) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self.window = int(window)
        self.warmup = int(warmup)
        self.lam = float(lam)
        self.n = 0
        self.history: dict[str, deque[float]] = {m: deque(maxlen=self.window) for m in METRICS}

    @property
    def active(self) -> bool:
        """Whether the penalty is computed (``n >= warmup`` and every history has >= 4 entries)."""
        return self.n >= self.warmup and all(len(h) >= self.MIN_HISTORY for h in self.history.values())

    def penalty(self) -> float:
        """``P`` from the current histories without updating them (0.0 when not `active`)."""
        if not self.active:
            return 0.0
        deltas = []
        for m in METRICS:
            values = list(self.history[m])
            split = max(1, len(values) // 2)
            early, recent = values[:split], values[split:]
            deltas.append(sum(recent) / len(recent) - sum(early) / len(early))
        mean = sum(deltas) / len(deltas)
        return math.sqrt(sum((d - mean) ** 2 for d in deltas) / (len(deltas) - 1))

    def update(self, r_vq: float | Tensor, r_mq: float | Tensor, r_ta: float | Tensor) -> float:
        """Append one sample's normalised rewards, ``n += 1``, and return ``P`` (methods.md A.5 steps 1-3)."""
        for m, value in zip(METRICS, (r_vq, r_mq, r_ta)):
            self.history[m].append(float(value))
        self.n += 1
        return self.penalty()

    def update_batch(self, r_vq: Tensor, r_mq: Tensor, r_ta: Tensor) -> Tensor:
        """`update` once per sample, in batch order; returns the per-sample penalties ``[B]`` (float32, CPU).

        Args:
            r_vq, r_mq, r_ta: ``[B]`` normalised rewards (detached values are read; no autograd).
        """
        vq, mq, ta = (
            torch.as_tensor(x).detach().reshape(-1).double().cpu().tolist() for x in (r_vq, r_mq, r_ta)
        )
        if not len(vq) == len(mq) == len(ta):
            raise ValueError(f"reward batches differ in size: VQ {len(vq)}, MQ {len(mq)}, TA {len(ta)}")
        return torch.tensor([self.update(a, b, c) for a, b, c in zip(vq, mq, ta)], dtype=torch.float32)

    def state_dict(self) -> dict[str, Any]:
        """Plain, picklable state for exact resume: window, warmup, lam, n and the three histories (lists)."""
        return {
            "window": self.window,
            "warmup": self.warmup,
            "lam": self.lam,
            "n": self.n,
            "history": {m: list(h) for m, h in self.history.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict` output; raises ValueError if it was saved with another window or warm-up."""
        if int(state["window"]) != self.window or int(state["warmup"]) != self.warmup:
            raise ValueError(
                f"BalancePenalty state has window={state['window']}, warmup={state['warmup']}; this one has "
                f"window={self.window}, warmup={self.warmup}"
            )
        history = state["history"]
        self.n = int(state["n"])
        self.history = {m: deque((float(v) for v in history[m]), maxlen=self.window) for m in METRICS}


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


# --------------------------------------------------------------------------------------------------------------
# Intra-Perplexity weight (methods.md A.6)
# --------------------------------------------------------------------------------------------------------------


def stack_rewards(r: Mapping[str, Tensor], metrics: Sequence[str] = SPATIAL_METRICS) -> Tensor:
    """``[B, M]`` normalised rewards in ``metrics`` order (``spatial_reward_metrics``, methods.md A.6 step 3).

    ``r`` is keyed by metric (``VQ``...) or by axis name (``visual``...), each ``[B]``.
    """
    return torch.stack([_metric(r, m) for m in metrics], dim=1)


def stack_saliency(maps: Mapping[str, Tensor], metrics: Sequence[str] = SPATIAL_METRICS) -> Tensor:
    """``[B, M, T, H, W]`` saliency in ``metrics`` order from `saliency`'s ``{axis: [B, T, H, W]}`` (A.6 step 2)."""
    return torch.stack([_metric(maps, m) for m in metrics], dim=1)


def fusion_weights(r: Tensor, temperature: float) -> Tensor:
    """Adaptive fusion weights ``a = softmax(-r / T)`` over the metrics (methods.md A.6 step 3).

    Args:
        r: ``[B, M]`` normalised rewards *before* the balance penalty, in ``spatial_reward_metrics`` order.
        temperature: ``T > 0`` (``spatial_reward_temperature``, 1.0).

    Returns:
        ``[B, M]``, rows sum to 1; the lower-reward axis gets the larger weight. Detached.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.softmax(-r.detach().float() / temperature, dim=-1)


def fuse_saliency(maps: Tensor, weights: Tensor | None = None, how: str = "adaptive") -> Tensor:
    """Fuse per-metric saliency into one map ``S`` (methods.md A.6 step 3).

    ``"adaptive"``: ``S = sum_m a_m s_m`` with the raw magnitudes (no per-metric normalisation);
    ``"mean"``: the mean over metrics; ``"max"``: the elementwise max over metrics (``weights`` unused).

    Args:
        maps: ``[B, M, F, H, W]`` non-negative saliency (`stack_saliency`).
        weights: ``[B, M]`` (`fusion_weights`); required for ``"adaptive"``.
        how: one of `FUSIONS`.

    Returns:
        ``[B, F, H, W]`` float32, detached.
    """
    if how not in FUSIONS:
        raise ValueError(f"spatial_reward_combination must be one of {FUSIONS}; got '{how}'")
    if maps.dim() != 5:
        raise ValueError(f"maps must be [B, M, F, H, W]; got shape {tuple(maps.shape)}")
    maps = maps.detach().float()
    if how == "mean":
        return maps.mean(dim=1)
    if how == "max":
        return maps.amax(dim=1)
    if weights is None or tuple(weights.shape) != tuple(maps.shape[:2]):
        got = None if weights is None else tuple(weights.shape)
        raise ValueError(f"adaptive fusion needs weights [B, M] = {tuple(maps.shape[:2])}; got {got}")
    a = weights.detach().to(device=maps.device, dtype=maps.dtype)
    return (a[:, :, None, None, None] * maps).sum(dim=1)


def _check_blend(strength: float, floor: float, what: str) -> None:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"{what} strength must be in [0, 1], got {strength}")
    if not floor >= 0.0:
        raise ValueError(f"{what} min weight must be >= 0, got {floor}")


def _minmax(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Min-max normalise ``x`` over ``dims`` to [0, 1]; a flat slice (``max - min <= FLAT_EPS``) becomes 1."""
    lo = x.amin(dim=dims, keepdim=True)
    hi = x.amax(dim=dims, keepdim=True)
    span = hi - lo
    flat = span <= FLAT_EPS
    scaled = (x - lo) / torch.where(flat, torch.ones_like(span), span)
    return torch.where(flat, torch.ones_like(x), scaled)


def _blend_floor_normalise(x_hat: Tensor, strength: float, floor: float, dims: tuple[int, ...]) -> Tensor:
    """``w = (1 - k) + k * x_hat``, ``clamp_min(floor)``, then ``w / mean_dims(w)``."""
    w = ((1.0 - strength) + strength * x_hat).clamp_min(floor)
    return w / w.mean(dim=dims, keepdim=True)


def temporal_factor(S: Tensor, strength: float, floor: float) -> Tensor:
    """Per-frame temporal factor ``w_t`` (methods.md A.6 step 4).

    ``p_f = mean_{h,w} S[f]``; min-max over ``f`` to ``p_hat`` (all ones if ``max - min <= 1e-8``);
    ``w_t = (1 - k_t) + k_t * p_hat``; ``clamp_min(tau_min)``; divide by ``mean_f w_t``.

    Args:
        S: ``[B, F, H, W]`` fused saliency.
        strength: ``k_t`` in [0, 1] (``temporal_saliency_strength``, 1.0).
        floor: ``tau_min >= 0`` (``temporal_saliency_min_weight``, 0.2).

    Returns:
        ``[B, F]`` float32, mean 1 over ``F`` per sample.
    """
    _check_blend(strength, floor, "temporal")
    p = S.detach().float().mean(dim=(-2, -1))
    return _blend_floor_normalise(_minmax(p, (-1,)), strength, floor, (-1,))


def spatial_factor(S: Tensor, strength: float, floor: float) -> Tensor:
    """Per-frame spatial factor ``w_s`` (methods.md A.6 step 5).

    For each frame: min-max over ``(h, w)`` to ``S_hat`` (all ones if flat); ``w_s = (1 - k_s) + k_s * S_hat``;
    ``clamp_min(sigma_min)``; divide by that frame's mean over ``(h, w)``.

    Args:
        S: ``[B, F, H, W]`` fused saliency.
        strength: ``k_s`` in [0, 1] (``spatial_reward_strength``, 1.0).
        floor: ``sigma_min >= 0`` (``spatial_reward_min_weight``, 0.15).

    Returns:
        ``[B, F, H, W]`` float32, mean 1 over ``(H, W)`` for every frame.
    """
    _check_blend(strength, floor, "spatial")
    x = S.detach().float()
    return _blend_floor_normalise(_minmax(x, (-2, -1)), strength, floor, (-2, -1))


def global_spatial_factor(S: Tensor, strength: float, floor: float) -> Tensor:
    """Spatial weight without temporal factorisation (methods.md A.6 step 7).

    One min-max over ``(f, h, w)`` per sample (all ones if flat), the ``k_s`` blend, the ``sigma_min`` floor and
    a division by the mean over ``(f, h, w)``. ``S [B, F, H, W]`` -> ``[B, F, H, W]`` float32, mean 1 per sample.
    """
    _check_blend(strength, floor, "spatial")
    x = S.detach().float()
    return _blend_floor_normalise(_minmax(x, (-3, -2, -1)), strength, floor, (-3, -2, -1))


def intra_weight(
    S: Tensor,
    temporal: bool,
    temporal_strength: float,
    temporal_floor: float,
    spatial_strength: float,
    spatial_floor: float,
) -> Tensor:
    """Intra-Perplexity weight ``W`` (methods.md A.6 steps 6-7).

    ``temporal=True`` (``temporal_saliency_weighting``, shipped): ``W = w_t[f] * w_s[f, h, w]``
    (`temporal_factor`, `spatial_factor`), then ``W / mean_{f,h,w} W`` per sample. ``temporal=False``:
    `global_spatial_factor` (the temporal arguments are unused).

    Args:
        S: ``[B, F, H, W]`` fused saliency (on the latent grid for parity with the reference; see
            `pool_frames_to_latent`).
        temporal: factorise into temporal x spatial factors.
        temporal_strength, temporal_floor: ``k_t``, ``tau_min``.
        spatial_strength, spatial_floor: ``k_s``, ``sigma_min``.

    Returns:
        ``[B, F, H, W]`` float32, mean 1 per sample, detached. With both strengths 0 it is exactly 1.
    """
    if S.dim() != 4:
        raise ValueError(f"S must be [B, F, H, W]; got shape {tuple(S.shape)}")
    if not temporal:
        return global_spatial_factor(S, spatial_strength, spatial_floor)
    w_t = temporal_factor(S, temporal_strength, temporal_floor)
    w_s = spatial_factor(S, spatial_strength, spatial_floor)
    W = w_t[:, :, None, None] * w_s
    return W / W.mean(dim=(1, 2, 3), keepdim=True)


# --------------------------------------------------------------------------------------------------------------
# Pixel grid -> latent grid
# --------------------------------------------------------------------------------------------------------------


def latent_frame_groups(
    pixel_frames: int, latent_frames: int, temporal_ratio: int | None = None
) -> list[range]:
    """Pixel frames covered by each latent frame (the codec convention ``T = 1 + r * (F - 1)``).

    ``r = 1`` (pixel codec): latent ``k`` <-> frame ``k``. ``r = 4`` (Wan VAE): latent 0 <-> frame 0, latent
    ``k`` <-> frames ``4k-3 .. 4k``. ``temporal_ratio=None`` infers ``r`` from ``(T, F)``: 1 if ``T == F``, 4 if
    ``T == 4(F-1)+1``.

    Raises:
        ValueError: ``(T, F)`` fits no such mapping.
    """
    n_pix, n_lat = int(pixel_frames), int(latent_frames)
    if n_lat < 1 or n_pix < 1:
        raise ValueError(f"need at least one pixel and one latent frame; got T={n_pix}, F={n_lat}")
    if temporal_ratio is None:
        if n_pix == n_lat:
            temporal_ratio = 1
        elif n_pix == 4 * (n_lat - 1) + 1:
            temporal_ratio = 4
        else:
            raise ValueError(
                f"cannot map T={n_pix} pixel frames to F={n_lat} latent frames: expected T == F (pixel codec) or "
                f"T == 4(F-1)+1 = {4 * (n_lat - 1) + 1} (Wan VAE); pass temporal_ratio for another codec"
            )
    r = int(temporal_ratio)
    if r < 1 or n_pix != 1 + r * (n_lat - 1):
        raise ValueError(
            f"temporal_ratio={temporal_ratio} needs T = 1 + r(F-1) = {1 + r * (n_lat - 1)}; got T={n_pix}"
        )
    return [range(0, 1)] + [range(r * k - r + 1, r * k + 1) for k in range(1, n_lat)]


def pool_frames_to_latent(
    x: Tensor,
    latent_frames: int,
    latent_h: int,
    latent_w: int,
    temporal_ratio: int | None = None,
    how: str = "mean",
) -> Tensor:
    """Area-pool a pixel-grid map ``[B, T, H, W]`` to the latent grid ``[B, F, h, w]`` (no renormalisation).

    Each latent cell gets the mean (``how="mean"``) or the root mean square (``how="rms"``) of the pixels and
    pixel frames it covers (frames: `latent_frame_groups`; space: ``adaptive_avg_pool2d``, exact ``H/h x W/w``
    blocks when divisible). This replaces the reference's trilinear interpolation of per-patch norms
    (methods.md A.6 step 2), since our saliency is per pixel. ``"rms"`` of per-pixel L2 gradient norms is the
    L2 norm of the cell's whole gradient divided by ``sqrt(cell size)``, the analogue of the reference's
    per-patch L2 over 1176 features.

    Use it on the fused saliency ``S`` before `intra_weight` to compute the weight on the latent grid, as the
    reference does (min-max and floors at latent resolution).
    """
    if how not in ("mean", "rms"):
        raise ValueError(f"how must be 'mean' or 'rms'; got '{how}'")
    if x.dim() != 4:
        raise ValueError(f"map must be [B, T, H, W]; got shape {tuple(x.shape)}")
    if latent_h < 1 or latent_w < 1:
        raise ValueError(f"latent grid must be at least 1x1; got {latent_h}x{latent_w}")
    groups = latent_frame_groups(x.shape[1], latent_frames, temporal_ratio)
    v = x.detach().float()
    if how == "rms":
        v = v * v
    v = torch.stack([v[:, g.start : g.stop].mean(dim=1) for g in groups], dim=1)
    v = F.adaptive_avg_pool2d(v, (latent_h, latent_w))
    return v.sqrt() if how == "rms" else v


def pool_to_latent(
    W: Tensor, latent_frames: int, latent_h: int, latent_w: int, temporal_ratio: int | None = None
) -> Tensor:
    """A pixel-grid weight ``[B, T, H, W]`` on the latent grid ``[B, F, 1, h, w]``, mean 1 per sample.

    Area (mean) pooling as in `pool_frames_to_latent`, then division by the per-sample mean (the Wan grouping
    1, 4, 4, ... frames changes the mean otherwise). The singleton dim broadcasts over the latent channels
    (methods.md A.6 step 6). If ``W`` is already on the latent grid (``T == F``, ``H == h``, ``W == w``) this is
    only the reshape and the renormalisation.
    """
    v = pool_frames_to_latent(W, latent_frames, latent_h, latent_w, temporal_ratio, how="mean")
    v = v / v.mean(dim=(1, 2, 3), keepdim=True)
    return v.unsqueeze(2)


def weight_stats(W: Tensor, prefix: str = "spatial_weight") -> dict[str, float]:
    """``{prefix_min, prefix_max, prefix_std}`` of a weight tensor for logging (methods.md A.6 "Logged", A.9).

    Over all elements (std unbiased, torch's default). Use ``prefix="temporal_sal_weight"`` for `temporal_factor`.
    """
    v = W.detach().float()
    std = v.std().item() if v.numel() > 1 else 0.0
    return {f"{prefix}_min": v.min().item(), f"{prefix}_max": v.max().item(), f"{prefix}_std": std}
