"""`ShapesDataset`: a deterministic, seeded dataset of (video, prompt, attributes) in the shapes world.

Item ``i`` of a split is a function of ``(config.seed, split, i)`` only: its attributes are drawn from
``numpy.random.default_rng([seed, split_index, i])``, so items can be read in any order, by any worker, and
are the same every time. Splits: ``train`` and ``val`` draw from the same colour-shape pairs (different
random streams); ``heldout`` uses only `WorldConfig.heldout_pairs`, which the other two never contain.

Sampling per item: a colour-shape pair, size and speed (uniform in their ranges), a direction per segment
(consecutive segments differ, and the whole path must fit), then a start position uniform among those that
keep the object's bounding box inside the frame (minus `WorldConfig.margin`) in every frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from streamvid.core.config import ConfigError
from streamvid.core.world.prompts import PromptSpec, generate_prompt
from streamvid.core.world.render import (
    DIRECTIONS,
    SHAPES,
    ShapeAttributes,
    WorldConfig,
    render,
    segment_frame_ranges,
    shape_extent,
    trajectory,
)

__all__ = [
    "SPLITS",
    "ShapesDataset",
    "collate_items",
    "colour_shape_pairs",
    "sample_attributes",
    "start_range",
]

SPLITS = ("train", "val", "heldout")
_DIRECTION_NAMES = tuple(DIRECTIONS)


def colour_shape_pairs(config: WorldConfig, split: str) -> list[tuple[str, str]]:
    """The (colour, shape) pairs a split draws from, in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    heldout = set()
    for item in config.heldout_pairs:
        words = tuple(item.split())
        if len(words) != 2 or words[0] not in config.colours or words[1] not in config.shapes:
            raise ConfigError(
                f"'heldout_pairs' entry {item!r} must be 'colour shape' with colour in "
                f"{list(config.colours)} "
                f"and shape in {list(config.shapes)}"
            )
        heldout.add(words)
    pairs = [(c, s) for c in config.colours for s in config.shapes]
    chosen = [p for p in pairs if (p in heldout) == (split == "heldout")]
    if not chosen:
        raise ConfigError(f"split {split!r} has no colour-shape pairs (check 'heldout_pairs')")
    return chosen


def _fits(offsets: Tensor, room: tuple[float, float]) -> bool:
    span = offsets.max(0).values - offsets.min(0).values
    return bool(span[0] <= room[0] + 1e-6 and span[1] <= room[1] + 1e-6)


def _sample_directions(
    config: WorldConfig, rng: np.random.Generator, speed: float, size: float
) -> tuple[tuple[str, int], ...]:
    """Directions per segment: consecutive ones differ and the whole path fits (greedy, with restarts)."""
    lengths = [b - a for a, b in segment_frame_ranges(config.num_frames, config.num_segments)]
    room = (config.width - 2 * config.margin - size, config.height - 2 * config.margin - size)
    for _ in range(64):
        segments: list[tuple[str, int]] = []
        for n in lengths:
            prev = segments[-1][0] if segments else None
            options = [
                d
                for d in config.directions
                if d != prev and _fits(trajectory((0.0, 0.0), speed, [*segments, (d, n)]), room)
            ]
            if not options:
                break
            segments.append((options[int(rng.integers(len(options)))], n))
        if len(segments) == len(lengths):
            return tuple(segments)
    raise ConfigError(
        f"no path of {config.num_segments} segments with directions {list(config.directions)} fits a "
        f"{config.width}x{config.height} frame at speed {speed:g} and size {size:g}"
    )


def start_range(
    config: WorldConfig, shape: str, size: float, speed: float, segments: Sequence[tuple[str, int]]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Lowest and highest start centroids ``((x, y), (x, y))`` keeping the path's bounding box in frame."""
    offsets = trajectory((0.0, 0.0), speed, segments)
    left, top, right, bottom = shape_extent(shape, size)
    lo = (config.margin - left - offsets[:, 0].min().item(), config.margin - top - offsets[:, 1].min().item())
    hi = (
        config.width - config.margin - right - offsets[:, 0].max().item(),
        config.height - config.margin - bottom - offsets[:, 1].max().item(),
    )
    return lo, hi


def sample_attributes(config: WorldConfig, split: str, index: int) -> tuple[ShapeAttributes, str]:
    """The attributes and prompt of item ``index`` of ``split`` (deterministic)."""
    pairs = colour_shape_pairs(config, split)
    rng = np.random.default_rng([config.seed, SPLITS.index(split), index])
    colour, shape = pairs[int(rng.integers(len(pairs)))]
    size = float(rng.uniform(config.size_min, config.size_max))
    speed = float(rng.uniform(config.speed_min, config.speed_max))
    segments = _sample_directions(config, rng, speed, size)
    lo, hi = start_range(config, shape, size, speed, segments)
    start = tuple(float(rng.uniform(lo[a], max(lo[a], hi[a]))) for a in range(2))
    texture_seed, prompt_seed = (int(v) for v in rng.integers(0, 2**31, size=2))
    attrs = ShapeAttributes(colour, shape, size, start, speed, segments, texture_seed)
    spec = PromptSpec(colour, shape, tuple(d for d, _ in segments))
    return attrs, generate_prompt(spec, prompt_seed)


class ShapesDataset(Dataset):
    """Deterministic shapes-world videos.

    Args:
        config: the world (geometry, sampling ranges, seed).
        split: ``"train"``, ``"val"`` or ``"heldout"`` (unseen colour-shape pairs).
        size: number of items ``N``.

    Each item is a dict:
        ``video`` ``[T, 3, H, W]`` float32 in [0, 1]; ``prompt`` str; ``colour``, ``shape`` str;
        ``colour_id`` / ``shape_id`` int (indices into `config.colours` / `SHAPES`); ``directions`` list of
        str, one per segment; ``direction_ids`` ``[T]`` long (index into `DIRECTIONS` of the step into each
        frame; frame 0 takes segment 0's); ``segment_ids`` ``[T]`` long; ``positions`` ``[T, 2]`` float32
        centroids (x, y) in pixels; ``speed`` px/frame and ``size`` px as floats; ``index`` int.
    """

    def __init__(self, config: WorldConfig, split: str = "train", size: int = 1000) -> None:
        if size < 0:
            raise ValueError(f"ShapesDataset size must be >= 0, got {size}")
        colour_shape_pairs(config, split)  # validates split and pairs early
        self.config = config
        self.split = split
        self.size = size

    def __len__(self) -> int:
        return self.size

    def attributes(self, index: int) -> ShapeAttributes:
        """The `ShapeAttributes` of item ``index``."""
        return sample_attributes(self.config, self.split, self._check(index))[0]

    def _check(self, index: int) -> int:
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for ShapesDataset of size {self.size}")
        return index % self.size if self.size else index

    def __getitem__(self, index: int) -> dict:
        index = self._check(index)
        attrs, prompt = sample_attributes(self.config, self.split, index)
        dir_ids, seg_ids = [], []
        for k, (d, n) in enumerate(attrs.segments):
            dir_ids += [_DIRECTION_NAMES.index(d)] * n
            seg_ids += [k] * n
        return {
            "video": render(attrs, self.config),
            "prompt": prompt,
            "colour": attrs.colour,
            "shape": attrs.shape,
            "colour_id": self.config.colours.index(attrs.colour),
            "shape_id": SHAPES.index(attrs.shape),
            "directions": list(attrs.directions),
            "direction_ids": torch.tensor(dir_ids),
            "segment_ids": torch.tensor(seg_ids),
            "positions": trajectory(attrs.start, attrs.speed, attrs.segments),
            "speed": attrs.speed,
            "size": attrs.size,
            "index": index,
        }


def collate_items(items: Sequence[dict]) -> dict:
    """Batch items: tensors stacked (``video`` -> ``[B, T, 3, H, W]``), numbers -> tensors, rest -> lists."""
    out = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], (int, float)):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out
