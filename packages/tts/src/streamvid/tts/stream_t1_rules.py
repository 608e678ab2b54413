"""Stream-T1's per-chunk rules as pure functions (methods.md B.3, B.5, B.6), one per equation.

* `propagate_noise` (B.3): a child's initial noise z = rho * z_parent + sqrt(1 - rho^2) * eps (variance
  preserving; rho = -0.1 shipped), or the spherical interpolation between z_parent and eps as an option.
* `fusion_alpha` and `fuse_scores` (B.5): alpha = min(s / (F - 3), alpha_max) for the chunk starting at latent
  frame s of F, and S = alpha * S_short + (1 - alpha) * S_long, optionally on z-scored scales.
* `memory_flags` and `memory_route` (B.6): short_high = S_short,k - mean(previous S_short) > tau_s,
  long_low = S_long,k-1 - S_long,k > tau_l; ``ema`` = short_high and not long_low, ``append`` = short_high and
  long_low, otherwise drop; at eviction ``append`` becomes the append sink while the sink has room, else the
  EMA sink.

Reference quirks fixed here (each behind ``reference_compat``, which reproduces the released code):

* child 0 reuses its parent's seed (B.3), so its eps is the parent's own noise and z is not unit-variance: here
  every child draws fresh noise from its own seed (the caller's business: `child_seed`);
* the "recent" short-score average slices the history with max(0, 1 - W) = 0 (B.6), i.e. averages *all*
  previous chunks: here the last W - 1 chunks;
* S_short and S_long are fused on raw, unrelated scales (B.5): here optionally z-scored within the candidate
  pool first (``normalise=True``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from streamvid.core.kv_cache import EvictionPolicy

__all__ = [
    "child_seed",
    "fuse_scores",
    "fusion_alpha",
    "memory_flags",
    "memory_route",
    "propagate_noise",
]


def child_seed(base: int, chunk: int, beam: int, child: int, parent_seed: int | None = None,
               reference_compat: bool = False) -> int:
    """The seed of child ``child`` of beam ``beam`` at chunk ``chunk`` (B.2): base + 1000 chunk + 100 beam + child.

    Chunk 0 candidates get base + child. With ``reference_compat`` child 0 of chunk >= 1 reuses the parent's
    seed (the released code's quirk, B.3); otherwise every child has its own seed.
    """
    if chunk == 0:
        return base + child
    if reference_compat and child == 0:
        if parent_seed is None:
            raise ValueError("reference_compat child 0 needs the parent's seed")
        return parent_seed
    return base + 1000 * chunk + 100 * beam + child


def propagate_noise(parent: torch.Tensor | None, eps: torch.Tensor, rho: float, mode: str = "linear") -> torch.Tensor:
    """A chunk's initial noise from its parent's (B.3).

    Args:
        parent: the parent beam's initial noise of its previous chunk (None at chunk 0: z = eps).
        eps: fresh standard normal noise of the same shape (from the candidate's seed).
        rho: ``noise_fusion_sigma`` in [-1, 1] (Stream-T1: -0.1).
        mode: ``linear``: z = rho * parent + sqrt(1 - rho^2) * eps (unit variance when parent and eps are
            independent unit normals; corr(z, parent) = rho). ``slerp``: spherical interpolation from eps
            towards sign(rho) * parent by the fraction |rho| of the angle theta between them,
            z = sin((1 - |rho|) theta) / sin(theta) * eps + sin(|rho| theta) / sin(theta) * sign(rho) * parent,
            which keeps the norm of equal-norm inputs (rho = 0: eps, |rho| = 1: +-parent).
    Returns:
        z, the same shape as ``eps``.
    """
    if not -1.0 <= rho <= 1.0:
        raise ValueError(f"rho must lie in [-1, 1], got {rho}")
    if parent is None:
        return eps
    if parent.shape != eps.shape:
        raise ValueError(f"parent noise {tuple(parent.shape)} and eps {tuple(eps.shape)} differ in shape")
    if mode == "linear":
        return rho * parent + math.sqrt(1.0 - rho * rho) * eps
    if mode != "slerp":
        raise ValueError(f"mode must be 'linear' or 'slerp', got {mode!r}")
    target = parent if rho >= 0 else -parent
    t = abs(rho)
    a, b = eps.flatten().double(), target.flatten().double()
    cos = torch.clamp((a @ b) / (a.norm() * b.norm()).clamp_min(1e-12), -1.0, 1.0)
    theta = torch.arccos(cos)
    if float(theta) < 1e-6:
        return ((1 - t) * eps + t * target).to(eps.dtype)
    s = torch.sin(theta)
    out = (torch.sin((1 - t) * theta) / s) * eps.double() + (torch.sin(t * theta) / s) * target.double()
    return out.to(eps.dtype)


def fusion_alpha(start_frame: int, total_frames: int, chunk_frames: int = 3, alpha_max: float = 0.4) -> float:
    """alpha = min(s / (F - chunk), alpha_max) (B.5): 0 for the first chunk, growing to alpha_max.

    For endless streams (``total_frames`` unknown) pass the planned length; F <= chunk gives 0."""
    if start_frame < 0 or total_frames < 1:
        raise ValueError(f"need start_frame >= 0 and total_frames >= 1, got {start_frame}, {total_frames}")
    span = total_frames - chunk_frames
    if span <= 0:
        return 0.0
    return min(start_frame / span, alpha_max)


def fuse_scores(short: torch.Tensor, long: torch.Tensor, alpha: float, normalise: bool = False) -> torch.Tensor:
    """S = alpha * S_short + (1 - alpha) * S_long for a pool of candidates ``[N]`` (B.5).

    ``normalise``: z-score each score within the pool first (a pool of one, or a constant score, maps to 0), so
    the two scales weigh as alpha says; the reference fuses raw scales."""
    short, long = short.double(), long.double()
    if normalise:
        short, long = _zscore(short), _zscore(long)
    return alpha * short + (1.0 - alpha) * long


def _zscore(x: torch.Tensor) -> torch.Tensor:
    if x.numel() < 2:
        return torch.zeros_like(x)
    sd = x.std()
    return (x - x.mean()) / sd if float(sd) > 1e-12 else torch.zeros_like(x)


def memory_flags(
    short_now: float,
    short_history: Sequence[float],
    long_prev: float | None,
    long_now: float,
    tau_short: float = 0.0,
    tau_long: float = 0.2,
    window: int = 10,
    reference_compat: bool = False,
) -> dict[str, bool]:
    """The gate flags of a chunk k >= 1 (B.6).

    Args:
        short_now: S_short of this chunk; short_history: S_short of the branch's previous chunks, oldest first.
        long_prev, long_now: S_long of the previous chunk (None at chunk 0) and of this one.
        tau_short, tau_long: thresholds (0.0 and 0.2 shipped).
        window: W; the average covers the last W - 1 previous chunks (``reference_compat``: all of them).
    Returns:
        ``{"short_high", "long_low", "ema", "append"}``.
    """
    if not short_history or long_prev is None:  # chunk 0: nothing to compare with
        return {"short_high": False, "long_low": False, "ema": False, "append": False}
    recent = list(short_history) if reference_compat else list(short_history)[-max(window - 1, 1):]
    short_high = short_now - sum(recent) / len(recent) > tau_short
    long_low = long_prev - long_now > tau_long
    return {"short_high": short_high, "long_low": long_low,
            "ema": short_high and not long_low, "append": short_high and long_low}


def memory_route(flags: dict[str, bool] | None, sink_frames: int, max_sink_frames: int,
                 chunk_frames: int = 3) -> EvictionPolicy:
    """Where an evicted chunk goes (B.6 eviction-time routing): ``append`` -> the append sink while
    ``sink_frames + chunk_frames <= max_sink_frames``, else the EMA sink; ``ema`` -> the EMA sink; else drop.
    A chunk without stored flags is dropped."""
    if not flags:
        return EvictionPolicy.DROP
    if flags.get("append"):
        if sink_frames + chunk_frames <= max_sink_frames:
            return EvictionPolicy.APPEND_SINK
        return EvictionPolicy.EMA_SINK
    if flags.get("ema"):
        return EvictionPolicy.EMA_SINK
    return EvictionPolicy.DROP
