"""`StudioConfig`: `streamvid-infer-t1`'s and `streamvid-generate`'s config (either YAML loads) plus the
server's limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamvid.core.cli.generate import GenerateConfig
from streamvid.core.config import ConfigError, check_choice
from streamvid.tts.cli import InferT1Config

FRAME_FORMATS = ("png", "jpeg")
STRATEGIES = ("plain", "stream_t1", "greedy")
"""The strategies a live stream can run chunk by chunk (best-of-N needs whole videos before it picks)."""


@dataclass
class ServerConfig:
    """Where the studio listens and what one server allows."""

    host: str = "127.0.0.1"
    port: int = 8765
    max_streams: int = 2
    """Streams generated at once (one worker thread each); further starts wait in the queue."""
    max_queue: int = 16
    """Starts that may wait for a free stream; one more is told the server is full."""
    max_frames: int = 240
    """The longest stream a client may ask for (latent frames, a multiple of the chunk size)."""
    max_prompt_chars: int = 200
    max_budget: float = 8.0
    """The largest Stream-T1 budget (multiples of plain sampling's NFE) a client may ask for."""
    frame_format: str = "png"
    """png | jpeg: the binary frame messages. docs/studio.md measures both: for the 32x32 shapes frames png is
    about 2.0 kB and jpeg (quality 90) 1.1 kB per frame, so png, lossless, costs 8 kB/s more per client at 8 fps;
    for large frames (Wan, 832x480) choose jpeg."""
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        check_choice("studio.frame_format", self.frame_format, FRAME_FORMATS)
        if min(self.max_streams, self.max_frames, self.max_prompt_chars) < 1 or self.max_queue < 0:
            raise ConfigError("studio: max_streams, max_frames and max_prompt_chars must be >= 1, max_queue >= 0")
        if self.max_budget < 1:
            raise ConfigError(f"studio.max_budget must be >= 1 (one plain sample), got {self.max_budget}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ConfigError(f"studio.jpeg_quality must be in 1..95, got {self.jpeg_quality}")


@dataclass
class StudioConfig(InferT1Config, GenerateConfig):
    """`streamvid-studio`'s config: `streamvid-infer-t1`'s and `streamvid-generate`'s fields (so either command's
    YAML loads) plus the server's. The shared fields are the page's defaults: ``prompt`` (the prompt box),
    ``num_frames`` (the stream length), ``seed``, ``strategy`` and ``budget``; ``fps`` is the playback rate.
    ``reward`` / ``short_reward`` / ``search`` are the search's, as in `streamvid-infer-t1`; ``prompt_switches``
    must be empty (the page switches)."""

    strategy: str = "plain"
    budget: float | None = 2.0
    studio: ServerConfig = field(default_factory=ServerConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("strategy", self.strategy, STRATEGIES)
        if self.prompt_switches:
            raise ConfigError("prompt_switches: the studio takes prompt switches from the page; leave it empty")
        chunk = self.generator.sampler.cache.chunk_frames
        if self.num_frames % chunk or not 0 < self.num_frames <= self.studio.max_frames:
            raise ConfigError(f"num_frames={self.num_frames} must be a multiple of the chunk size {chunk} in "
                              f"1..studio.max_frames ({self.studio.max_frames})")
        if self.studio.max_frames % chunk:
            raise ConfigError(f"studio.max_frames={self.studio.max_frames} must be a multiple of the chunk size {chunk}")
        if self.budget is not None and not 1 <= self.budget <= self.studio.max_budget:
            raise ConfigError(f"budget={self.budget} must be in 1..studio.max_budget ({self.studio.max_budget})")
