"""Typed config of the streaming sampler and its KV cache (fragments under `configs/sampler/`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streamvid.core.config import check_choice
from streamvid.core.kv_cache import CacheLayout, EvictionPolicy

if TYPE_CHECKING:  # the sampler and schedule import diffusers; configs stay cheap to import
    from streamvid.core.sampler import SamplerSettings
    from streamvid.core.schedule import FewStepSchedule


@dataclass
class CacheConfig:
    """KV-cache geometry, in latent frames (see `streamvid.core.kv_cache.CacheLayout`)."""

    chunk_frames: int = 3
    """Latent frames per chunk (Self-Forcing chunk-wise: 3)."""
    sink_frames: int = 0
    """Leading frames pinned as attention sink (LongLive / Reward Forcing: 3)."""
    window_frames: int | None = None
    """Recent frames attended besides the sink, current chunk included; null = all history (no length limit needs a window)."""
    max_sink_frames: int | None = None
    """Cap on the sink when chunks are appended to it (Stream-T1: 15); null = sink_frames."""
    eviction: str = "drop"
    """Policy for chunks leaving the window: drop | ema_sink | append_sink."""
    ema_alpha: float = 0.999
    """Sink weight of the EMA merge: sink <- a*sink + (1-a)*evicted."""
    ema_target: str = "newest"
    """Sink chunk the EMA merge updates: newest (Stream-T1) | oldest (Reward Forcing)."""
    rope_positions: str = "absolute"
    """absolute (frame index) | relative (re-based on the cache; stable over unbounded streams)."""

    def __post_init__(self) -> None:
        check_choice("eviction", self.eviction, [p.value for p in EvictionPolicy])
        check_choice("ema_target", self.ema_target, ("newest", "oldest"))
        check_choice("rope_positions", self.rope_positions, ("absolute", "relative"))

    def to_layout(self) -> CacheLayout:
        return CacheLayout(
            chunk_frames=self.chunk_frames,
            sink_frames=self.sink_frames,
            window_frames=self.window_frames,
            max_sink_frames=self.max_sink_frames,
            eviction=EvictionPolicy(self.eviction),
            ema_alpha=self.ema_alpha,
            ema_target=self.ema_target,
            rope_positions=self.rope_positions,
        )


@dataclass
class SamplerConfig:
    """Few-step schedule and chunk loop (methods.md A.2.1, B.4)."""

    denoising_steps: list[int] = field(default_factory=lambda: [1000, 750, 500, 250])
    """Listed timesteps per chunk, before warping."""
    shift: float = 5.0
    """Flow-matching timestep shift of the warping table."""
    warp: bool = True
    """Map each listed step k to the shifted table's entry 1000-k (Self-Forcing `warp_denoising_step`)."""
    context_noise: float = 0.0
    """Timestep of the commit pass that writes a finished chunk's K/V (0 = clean)."""
    recache_on_switch: bool = True
    """Re-encode the cached history under a new prompt when it changes mid-stream (LongLive)."""
    cache: CacheConfig = field(default_factory=CacheConfig)

    def schedule(self) -> FewStepSchedule:
        from streamvid.core.schedule import FewStepSchedule

        return FewStepSchedule.from_steps(self.denoising_steps, self.shift, self.warp)

    def settings(self) -> SamplerSettings:
        from streamvid.core.sampler import SamplerSettings

        return SamplerSettings(context_noise=self.context_noise, recache_on_switch=self.recache_on_switch)
