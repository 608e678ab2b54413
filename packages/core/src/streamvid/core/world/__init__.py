"""The shapes world: a synthetic text-to-video world that makes the pipeline trainable and testable on a CPU.

One coloured shape (`SHAPES` x `PALETTE`) moves in straight segments on a dark background; prompts come from
a small grammar ("a red circle moving left, then up"). Pieces:

- `render`: `WorldConfig` (defaults and their rationale), `ShapeAttributes`, `trajectory`, `coverage`,
  `render` / `render_batch` -> videos ``[T, 3, H, W]`` / ``[B, T, 3, H, W]`` in [0, 1];
- `prompts`: `PromptSpec`, `generate_prompt`, `parse_prompt`, `VOCAB`;
- `dataset`: `ShapesDataset` (train / val / heldout splits, deterministic per item), `collate_items`;
- `oracle`: pixel measurements (`measure`) and ground-truth ``text`` / ``motion`` / ``visual`` scores;
- `corrupt`: corruptions that each lower one axis, for testing scores and training rewards;
- `degenerate`: what a half-trained generator makes (blank, constant, noise, static, vanishing, two objects,
  blob, ...), which every reward must rank below clean videos.
"""

from streamvid.core.world.corrupt import CORRUPTION_AXES, render_corrupted
from streamvid.core.world.dataset import SPLITS, ShapesDataset, collate_items, sample_attributes
from streamvid.core.world.degenerate import DEGENERATE_AXES, degenerate_examples, render_degenerate
from streamvid.core.world.oracle import (
    ChunkBackground,
    OracleReading,
    OracleScore,
    chunk_background,
    measure,
    measure_batch,
    score,
    score_batch,
    score_details,
)
from streamvid.core.world.prompts import VOCAB, PromptSpec, generate_prompt, parse_prompt, vocabulary
from streamvid.core.world.render import (
    DIRECTIONS,
    PALETTE,
    SHAPES,
    ShapeAttributes,
    WorldConfig,
    coverage,
    render,
    render_batch,
    render_trajectory,
    segment_frame_ranges,
    trajectory,
)

__all__ = [
    "CORRUPTION_AXES",
    "DEGENERATE_AXES",
    "DIRECTIONS",
    "PALETTE",
    "SHAPES",
    "SPLITS",
    "VOCAB",
    "ChunkBackground",
    "OracleReading",
    "OracleScore",
    "PromptSpec",
    "ShapeAttributes",
    "ShapesDataset",
    "WorldConfig",
    "collate_items",
    "chunk_background",
    "coverage",
    "degenerate_examples",
    "generate_prompt",
    "measure",
    "measure_batch",
    "parse_prompt",
    "render",
    "render_batch",
    "render_corrupted",
    "render_degenerate",
    "render_trajectory",
    "sample_attributes",
    "score",
    "score_batch",
    "score_details",
    "segment_frame_ranges",
    "trajectory",
    "vocabulary",
]
