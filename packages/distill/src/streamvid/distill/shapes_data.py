"""Shapes-world training data: a pool of rendered train items, augmented and re-phrased at every draw.

The recipe of the learnability probe (docs/shapes_world.md; `streamvid-train teacher`), chosen for fast learning on a
CPU:

* `make_pool`: ``size`` train items drawn with the dataset's own sampler (`sample_attributes`), rendered once
  and encoded (``[N, C, T, h, w]`` latents, diffusers layout) with their `PromptSpec`;
* `draw_batch`: a batch of pool items, each augmented by the world's two exact symmetries (a horizontal flip
  swaps left / right: every shape is mirror-symmetric; time reversal reverses and swaps the directions: start
  positions are uniform, so end positions are too), a fresh random phrasing per draw, and prompt dropout
  (``""`` is the null prompt of classifier-free guidance);
* `StepBatches`: an iterable dataset whose batch ``k`` is a pure function of the step ``k`` (``draw(step)``), so
  a run is deterministic given its seed and resumes exactly from a checkpoint's step, whatever a data loader
  prefetches.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import torch

from streamvid.core.codecs import PixelCodec
from streamvid.core.world import PromptSpec, WorldConfig, generate_prompt, render_batch, sample_attributes

__all__ = ["FLIP", "REVERSE", "StepBatches", "draw_batch", "make_pool", "step_seed"]

FLIP = {"left": "right", "right": "left", "up": "up", "down": "down"}
"""Direction after a horizontal flip of the video."""
REVERSE = {"left": "right", "right": "left", "up": "down", "down": "up"}
"""Direction after reversing the video in time."""


def make_pool(
    world: WorldConfig, size: int, codec: PixelCodec, split: str = "train", render_batch_size: int = 256
) -> tuple[torch.Tensor, list[PromptSpec]]:
    """Items ``0 .. size - 1`` of ``split``: latents ``[N, C, T, h, w]`` and their prompt specs."""
    attrs = [sample_attributes(world, split, i)[0] for i in range(size)]
    videos = torch.cat(
        [render_batch(attrs[i : i + render_batch_size], world) for i in range(0, size, render_batch_size)]
    )
    specs = [PromptSpec(a.colour, a.shape, a.directions) for a in attrs]
    return codec.encode(videos).permute(0, 2, 1, 3, 4).contiguous(), specs


def draw_batch(
    latents: torch.Tensor,
    specs: list[PromptSpec],
    batch: int,
    rng: random.Random,
    codec: PixelCodec,
    p_uncond: float,
    *,
    flip: bool = True,
    reverse: bool = True,
) -> tuple[torch.Tensor, list[str]]:
    """A batch of pool items with random flips / time reversals and phrasings; "" is the null prompt.

    Args:
        latents / specs: the pool (`make_pool`).
        batch: items drawn (with replacement).
        rng: the only source of randomness (same state, same batch).
        codec: the pool's codec (augmentations are applied to the decoded pixels).
        p_uncond: probability of the null prompt.
        flip / reverse: apply each augmentation with probability 1/2 (off: the item as rendered).
    Returns:
        latents ``[B, C, T, h, w]`` and ``B`` prompts.
    """
    idx = [rng.randrange(len(specs)) for _ in range(batch)]
    videos = codec.decode(latents[idx].permute(0, 2, 1, 3, 4))  # [B, T, 3, H, W]
    prompts = []
    for row, i in enumerate(idx):
        dirs = specs[i].segments
        if flip and rng.random() < 0.5:  # horizontal flip: every shape is mirror-symmetric
            videos[row] = videos[row].flip(-1)
            dirs = tuple(FLIP[d] for d in dirs)
        if reverse and rng.random() < 0.5:  # time reversal: start positions are uniform, so ends are too
            videos[row] = videos[row].flip(0)
            dirs = tuple(REVERSE[d] for d in reversed(dirs))
        spec = PromptSpec(specs[i].colour, specs[i].shape, dirs)
        prompts.append("" if rng.random() < p_uncond else generate_prompt(spec, rng.randrange(2**31)))
    return codec.encode(videos).permute(0, 2, 1, 3, 4), prompts


def step_seed(seed: int, step: int) -> int:
    """A 63-bit seed for step ``step`` of a run seeded ``seed`` (distinct for distinct pairs)."""
    return (seed * 1_000_003 + step) % (2**63)


class StepBatches(torch.utils.data.IterableDataset):
    """Batches ``draw(step)`` for ``step = start, start + 1, ..., stop - 1`` (use with ``batch_size=None``).

    ``start`` is the first step still to train (a resumed run sets it to the checkpoint's step). The dataset has
    no length on purpose: Lightning then never ends an "epoch" early on a resumed run; ``max_steps`` stops it.
    """

    def __init__(self, draw: Callable[[int], Any], stop: int, start: int = 0) -> None:
        super().__init__()
        self.draw, self.stop, self.start = draw, stop, start

    def __iter__(self) -> Iterator[Any]:
        for step in range(self.start, self.stop):
            yield self.draw(step)
