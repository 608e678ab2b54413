"""`ShapesRewardStageConfig`: the typed config of ``streamvid-train shapes-reward`` (``configs/train/shapes_reward.yaml``).

One flat dataclass: where the checkpoint goes (``output_dir``), the CPU threads, and the settings of one training
run of the learned shapes reward (example mixture, pool, optimiser, evaluation sizes, network sizes). The
training settings are recorded in the checkpoint's ``reward.json`` under ``"train"`` (`TRAINING_FIELDS`).
Importing this module imports neither Lightning nor the training code, so a bad config fails in about a second.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from streamvid.core.config import ConfigError
from streamvid.core.rewards.shapes_learned import ShapesRewardNetConfig

__all__ = ["RUN_FIELDS", "ShapesRewardStageConfig", "check_generated_sets", "training_settings"]

RUN_FIELDS = ("output_dir", "threads", "progress_bar")
"""Fields that say where and how the stage runs, not what it trains (left out of ``reward.json``)."""


@dataclass
class ShapesRewardStageConfig:
    """``streamvid-train shapes-reward``: train `ShapesLearnedReward` on oracle targets (CPU, minutes)."""

    output_dir: str = "outputs/train/shapes_reward"
    """Checkpoint directory: ``reward.safetensors``, ``reward.json`` (net sizes + training settings) and
    ``metrics.json``. ``make shapes-reward`` writes the shipped one (``core/rewards/assets/shapes_learned_reward``)."""
    threads: int = 1
    """torch intra-op threads; the weights depend on it (and on the torch build)."""
    progress_bar: bool = True

    seed: int = 0
    """Seeds the example stream, the initialisation and the batch order."""
    steps: int = 1000
    """Optimiser steps (the schedule's length)."""
    minutes: float = 8.0
    """Wall-clock cap on data making + training (evaluation excluded); ends training early if hit."""
    batch_size: int = 32
    """Examples per step."""
    pool_size: int = 1024
    """Examples kept in the training pool."""
    fresh_per_step: int = 8
    """Pool examples replaced by new ones every step."""
    lr: float = 2e-3
    """Peak AdamW learning rate (linear warm-up over 5 % of the steps, then cosine to 0)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    aux_weight: float = 0.3
    """Weight of the auxiliary colour / shape / direction cross-entropies (labels: the oracle's readings)."""
    p_clean: float = 0.3
    """Probability that a video is left uncorrupted."""
    p_degenerate: float = 0.15
    """Probability that a video is one of the degenerate kinds of `world.degenerate` (uniform over kinds)."""
    p_wrong_prompt: float = 0.25
    """Probability that a video is paired with a wrong prompt."""
    p_two_segments: float = 0.25
    """Probability of a two-segment video ("moving left, then up")."""
    eval_val: int = 192
    """Held-out examples per evaluation block (one per axis, one mixed) from the ``val`` split."""
    eval_degenerate: int = 32
    """Val videos whose degenerate versions are scored against them (`degenerate_margins`)."""
    eval_heldout: int = 64
    """Held-out examples per evaluation block from the ``heldout`` split (unseen colour-shape pairs)."""
    net: ShapesRewardNetConfig = field(default_factory=ShapesRewardNetConfig)
    """Network sizes."""

    generated: list[str] = field(default_factory=list)
    """Generated-video sets (`streamvid.distill.shapes_generated` files: generator samples of train-split prompts
    labelled by the oracle) mixed into every step; empty: rendered examples only (the first shipped recipe)."""
    generated_batch: int = 16
    """Generated videos per step, drawn as ``generated_batch / group_draw`` groups (one prompt, one generator)."""
    group_draw: int = 4
    """Videos drawn per group (different seeds of one prompt): the pairs of the ranking term."""
    p_chunk: float = 0.3
    """Probability that a step's generated videos are cut to one chunk of ``chunk_frames`` (targets: the oracle's
    reading of that chunk), so the short-term score of Stream-T1 ranks too."""
    chunk_frames: int = 3
    rank_weight: float = 1.0
    """Weight of the within-group Bradley-Terry term ``softplus(s_j - s_i)`` per axis over pairs whose oracle
    scores differ by more than ``rank_margin`` (VideoAlign trains on pairwise preferences the same way)."""
    rank_margin: float = 0.02
    eval_generated: str | None = None
    """A generated set of held-out prompts and generators; its `ranking_metrics` go into ``metrics.json``."""

    def __post_init__(self) -> None:
        if not str(self.output_dir).strip():
            raise ConfigError("'output_dir' is empty")
        if min(self.threads, self.steps, self.batch_size, self.pool_size) < 1:
            raise ConfigError("threads, steps, batch_size and pool_size must be >= 1")
        if not 0 <= self.fresh_per_step <= self.pool_size:
            raise ConfigError(f"'fresh_per_step' must lie in [0, pool_size={self.pool_size}], got {self.fresh_per_step}")
        if min(self.eval_val, self.eval_degenerate, self.eval_heldout) < 0:
            raise ConfigError("eval_val, eval_degenerate and eval_heldout must be >= 0")
        if self.minutes <= 0 or self.lr <= 0:
            raise ConfigError(f"need minutes > 0 and lr > 0; got minutes={self.minutes}, lr={self.lr}")
        if self.generated and (self.generated_batch < 2 or self.group_draw < 2
                               or self.generated_batch % self.group_draw or self.chunk_frames < 1):
            raise ConfigError(f"generated_batch ({self.generated_batch}) must be a multiple of group_draw "
                              f"({self.group_draw}) >= 2, chunk_frames >= 1")
        for name in ("p_clean", "p_degenerate", "p_wrong_prompt", "p_two_segments", "p_chunk"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"'{name}' must lie in [0, 1], got {getattr(self, name)}")


def check_generated_sets(cfg: ShapesRewardStageConfig) -> None:
    """`ConfigError` naming the first generated set of ``generated`` / ``eval_generated`` that is not a file (run
    before any training; the files are made by ``make shapes-reward-data``)."""
    for key, paths in (("generated", cfg.generated), ("eval_generated", [cfg.eval_generated] if cfg.eval_generated
                                                      else [])):
        for path in paths:
            if not Path(path).is_file():
                raise ConfigError(f"{key}: generated set not found: {path} (make it with `make shapes-reward-data` "
                                  "or python -m streamvid.distill.shapes_generated)")


def training_settings(cfg: ShapesRewardStageConfig) -> dict:
    """The settings recorded under ``"train"`` in ``reward.json``: every field but `RUN_FIELDS` and ``net``
    (whose sizes are stored under ``"net"``)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in (*RUN_FIELDS, "net")}
