"""Stream-R1's Intra-Perplexity weight as small pure functions (methods.md A.6), on the latent grid.

``W_intra [B, F, 1, h, w]``, mean 1 per sample: the per-axis reward saliency is fused with weights
``softmax(-r / T)`` (`fusion_weights`, `fuse_saliency`), pooled to the latent grid (`pool_frames_to_latent`) and
factorised into a per-frame temporal factor (`temporal_factor`) and a per-frame spatial factor (`spatial_factor`),
combined by `intra_weight`. `streamvid.distill.stream_r1_weighting.StreamR1Weighting` runs this pipeline with
the config's flags; the inter weight is in `streamvid.distill.stream_r1_inter`.

Shipped pipeline (A.8): ``S = fuse_saliency(stack_saliency(maps, axes), fusion_weights(stack_rewards(r, axes),
1.0))`` -> ``W = intra_weight(pool_frames_to_latent(S, F, h, w, how="rms"), True, 1.0, 0.2, 1.0, 0.15)
.unsqueeze(2)`` with ``axes = ("motion", "visual", "text")`` (the reference's ``[MQ, VQ, TA]``).

Deliberate difference from the reference code (methods.md describes the reference): **saliency is per pixel, so
it is pooled, not interpolated.** The reference takes one L2 norm per 14x14x2 Qwen2-VL patch and trilinearly
interpolates the (40, 24, 42) patch grid to the latent grid (21, 60, 104). Our saliency
(`streamvid.core.rewards.saliency`) is one value per decoded pixel ``[B, T, H, W]`` in the video's own layout (so
the reference's patch-order bug of A.6 step 2 does not arise), and it is brought to the latent grid by *area
pooling* over the pixels (and pixel frames) each latent cell covers (`pool_frames_to_latent`, `pool_to_latent`).
``how="rms"`` pools per-pixel L2 norms into the L2 norm of the cell's gradient (up to the constant
``sqrt(cell size)``), the analogue of the reference's per-patch L2. Every sample uses its own rewards for the
fusion weights (the reference: batch element 0's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FLAT_EPS",
    "FUSIONS",
    "fuse_saliency",
    "fusion_weights",
    "global_spatial_factor",
    "intra_weight",
    "latent_frame_groups",
    "pool_frames_to_latent",
    "pool_to_latent",
    "spatial_factor",
    "stack_rewards",
    "stack_saliency",
    "temporal_factor",
    "weight_stats",
]

FUSIONS = ("adaptive", "mean", "max")
"""``spatial_reward_combination`` (methods.md A.6 step 3)."""

FLAT_EPS = 1e-8
"""A map whose ``max - min <= FLAT_EPS`` is flat and min-max normalises to all ones (methods.md A.6 steps 4-5)."""


def stack_rewards(r: Mapping[str, Tensor], axes: Sequence[str]) -> Tensor:
    """``[B, M]`` normalised rewards in ``axes`` order (``spatial_reward_metrics``, methods.md A.6 step 3).

    ``r``: axis -> ``[B]``.
    """
    return torch.stack([r[a] for a in axes], dim=1)


def stack_saliency(maps: Mapping[str, Tensor], axes: Sequence[str]) -> Tensor:
    """``[B, M, T, H, W]`` saliency in ``axes`` order from `saliency`'s ``{axis: [B, T, H, W]}`` (A.6 step 2)."""
    return torch.stack([maps[a] for a in axes], dim=1)


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
