"""Typed config of an evaluation run (`streamvid-eval --config`): prompts, seeds, generator or videos, metrics.

Kept apart from `runner.py` so configs load and validate without importing pandas or diffusers.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from streamvid.core.config import ConfigError
from streamvid.core.generator_config import GeneratorConfig, check_generator
from streamvid.eval.export import VBENCH_FPS


@dataclass
class WindowsConfig:
    """Long-video drift: metrics over sliding windows (``streamvid.eval.drift``); give window or window_seconds."""

    window_seconds: float | None = None
    """Window length in seconds (VBench-Long uses 5 s clips)."""
    window: int | None = None
    """Window length in frames (instead of window_seconds)."""
    stride: int | None = None
    """Frames between window starts; null = the window length (no overlap)."""
    metrics: list[str] | None = None
    """Metrics computed per window (a subset of ``metrics``); null = all of them."""
    clip_consistency: bool = False
    """Also score clip-to-clip consistency over the windows (`streamvid.eval.drift.clip_consistency`: thumbnail
    features of each window's first frame), a ``clip_consistency`` column."""

    def frames(self, fps: float) -> int:
        return self.window if self.window is not None else max(1, round(self.window_seconds * fps))


@dataclass
class ReportConfig:
    """Summary statistics."""

    n_boot: int = 1000
    """Bootstrap resamples for the confidence intervals."""
    level: float = 0.95
    """Confidence level."""
    seed: int = 0
    """Seed of the bootstrap (same seed, same intervals)."""


@dataclass
class ExportConfig:
    """VBench export of the run's videos (``streamvid.eval.export``)."""

    enabled: bool = False
    dir: str | None = None
    """Target folder; null = ``<output_dir>/vbench``."""
    fps: float = VBENCH_FPS
    """Frame rate of the exported files (frames are kept, only the rate changes)."""
    max_name_bytes: int = 255
    """File-name limit; longer VBench names are refused, never truncated."""


@dataclass
class EvalConfig:
    """``streamvid-eval``: prompts x seeds, a generator or a folder of videos, and metrics."""

    prompts: str | None = None
    """Prompt suite (.txt / .csv / .json, see ``streamvid.core.prompts``); optional with videos_dir."""
    samples_per_prompt: int | None = None
    """Videos per prompt; null = len(seeds), or 1 without seeds (videos_dir: every index found)."""
    seeds: list[int] | None = None
    """Explicit seeds: sample i of every prompt uses seeds[i]; null = base_seed + i."""
    base_seed: int = 0
    """First seed when ``seeds`` is null (0 is a seed like any other)."""
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    """Generates the videos unless ``videos_dir`` is set (then leave it at its defaults: one source per run)."""
    init_seed: int = 0
    """Torch seed of the random initialisation when generator.checkpoint is null."""
    allow_random_text_encoder: bool = False
    """Score a trained generator.checkpoint with a randomly initialised learned text encoder (text_encoder.path
    null). Refused by default: the model cannot follow its prompts, yet the scores would look like results."""
    videos_dir: str | None = None
    """Evaluate existing videos: a manifest.csv/json (prompt, seed, index, file) or VBench names {prompt}-{i}.mp4."""
    num_frames: int = 12
    """Latent frames per generated video (= pixel frames with the pixel codec); a multiple of the chunk size."""
    fps: float = 16.0
    """Frame rate of generated videos (and given to fps-aware metrics); videos_dir uses each file's own rate."""
    metrics: list[str] = field(default_factory=lambda: ["sharpness"])
    """Registered metric names (``streamvid.eval.metrics.list_metrics()``)."""
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Keyword options per metric name, passed to ``metrics.build(name, **options)``; options of a metric not in
    ``metrics`` are unused."""
    windows: WindowsConfig | None = None
    """Per-window curves and drift for long videos; null = off."""
    output_dir: str = "outputs/eval/run"
    """Run folder: videos, scores, summary, plots; a rerun resumes it."""
    retry_failed: bool = True
    """On resume, redo videos recorded as failed."""
    progress: bool = True
    """Show a progress bar (rank 0)."""
    num_threads: int | None = None
    """torch intra-op threads during the run; null = torch's default (tiny models are fastest with 1)."""
    report: ReportConfig = field(default_factory=ReportConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        if self.videos_dir is not None and self.generator != GeneratorConfig():
            raise ConfigError("set either 'generator' or 'videos_dir', not both")
        if self.videos_dir is None:
            if not self.prompts:
                raise ConfigError("'prompts' is required with a generator")
            chunk = self.generator.sampler.cache.chunk_frames
            if self.num_frames <= 0 or self.num_frames % chunk:
                raise ConfigError(f"'num_frames' {self.num_frames} must be a positive multiple of the chunk {chunk}")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ConfigError(f"'seeds' must be a non-empty list of distinct integers, got {self.seeds}")
        if self.samples_per_prompt is not None and (self.samples_per_prompt < 1 or (
                self.seeds is not None and self.samples_per_prompt != len(self.seeds))):
            raise ConfigError(f"'samples_per_prompt' {self.samples_per_prompt} must be >= 1 and equal len(seeds)")
        if self.fps <= 0 or not self.metrics or len(set(self.metrics)) != len(self.metrics):
            raise ConfigError(f"need fps > 0 and distinct, non-empty 'metrics'; got fps={self.fps}, {self.metrics}")
        from streamvid.eval.metrics import list_metrics

        known = list_metrics()
        for name in self.metrics:  # the names first: a typo is reported as a typo, not as a windows mismatch
            if name not in known:
                hint = difflib.get_close_matches(name, known, n=1)
                raise ConfigError(f"unknown metric {name!r} in 'metrics'" + (f" (did you mean {hint[0]!r}?)" if hint
                                  else "") + f"; known metrics: {', '.join(known)}")
        # options of a registered metric the run does not compute are unused (a config keeps its options when
        # --set metrics=[...] picks fewer); options for a name that is no metric are a typo
        if extra := sorted(set(self.metric_options) - set(known)):
            raise ConfigError(f"'metric_options' for {extra}, which are not registered metrics; known metrics: "
                              f"{', '.join(known)}")
        w = self.windows
        if w is not None and (w.window is None) == (w.window_seconds is None):
            raise ConfigError("'windows' needs exactly one of window (frames) and window_seconds")
        if w is not None and (extra := sorted(set(w.metrics or []) - set(self.metrics))):
            raise ConfigError(f"'windows.metrics' {extra} are not in 'metrics' {self.metrics}")
        if not (0 < self.report.level < 1 and self.report.n_boot >= 1):
            raise ConfigError(f"'report' needs 0 < level < 1 and n_boot >= 1, got {self.report}")

    def seed_list(self) -> list[int]:
        """The seeds of samples 0, 1, ... of every prompt."""
        if self.seeds is not None:
            return list(self.seeds)
        return [self.base_seed + i for i in range(self.samples_per_prompt or 1)]


def check_runnable(cfg: EvalConfig) -> None:
    """`load_config`'s `check` for a run: the generator's parts fit together and its device exists (see
    `check_generator`); nothing to check when the run scores a folder of videos."""
    if cfg.videos_dir is None:
        check_generator(cfg.generator)
