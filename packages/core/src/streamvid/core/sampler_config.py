"""Typed config of the streaming sampler and its KV cache (fragments under `configs/sampler/`).

Each field is declared once. The runtime classes are the config classes:

* `SamplerSettings` (how a chunk is committed, what a prompt switch does) is what `StreamingSampler` reads;
* `SamplerConfig` derives from it and adds the few-step schedule and the `cache:` section;
* `cache:` is `streamvid.core.kv_cache.CacheLayout` itself, the layout a `KVCache` is built with.

This module imports neither diffusers nor the sampler, so loading or validating a config stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streamvid.core.kv_cache import CacheLayout

if TYPE_CHECKING:  # the schedule imports diffusers; configs stay cheap to import
    from streamvid.core.schedule import FewStepSchedule

__all__ = ["CacheLayout", "SamplerConfig", "SamplerSettings"]


@dataclass(frozen=True)
class SamplerSettings:
    """How a chunk is committed and what a prompt switch does (read by `StreamingSampler`)."""

    context_noise: float = 0.0
    """Timestep of the commit pass that writes a finished chunk's K/V (0 = clean re-encode, Self-Forcing /
    LongLive default)."""
    recache_on_switch: bool = True
    """Re-encode the cached history under a new prompt when it changes mid-stream (LongLive)."""


@dataclass(frozen=True)
class SamplerConfig(SamplerSettings):
    """Few-step schedule, chunk loop and KV cache (methods.md A.2.1, B.4): `SamplerSettings` plus the schedule
    and the cache layout."""

    denoising_steps: list[int] = field(default_factory=lambda: [1000, 750, 500, 250])
    """Listed timesteps per chunk, before warping."""
    shift: float = 5.0
    """Flow-matching timestep shift of the warping table."""
    warp: bool = True
    """Map each listed step k to the shifted table's entry 1000-k (Self-Forcing `warp_denoising_step`)."""
    cache: CacheLayout = field(default_factory=CacheLayout)
    """KV-cache geometry and eviction, in latent frames."""

    def schedule(self) -> FewStepSchedule:
        """The warped few-step schedule (`FewStepSchedule.from_steps`)."""
        from streamvid.core.schedule import FewStepSchedule

        return FewStepSchedule.from_steps(self.denoising_steps, self.shift, self.warp)
