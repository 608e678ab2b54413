"""Where the DMD / Stream-R1 stage's prompts come from: a `PromptSource` injected into `DMDModule`.

* `FilePrompts`: a text file of prompts, one per line (paper scale: VidProM);
* `WorldPrompts`: the shapes world's train split (drawn from items ``0 .. PROMPT_POOL - 1``) and its fixed val
  prompts.

`prompt_source(cfg)` picks one from the stage config (``prompts`` set: the file, else the world), so the module
itself knows neither the shapes world nor the file format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

__all__ = ["PROMPT_POOL", "FilePrompts", "PromptSource", "WorldPrompts", "prompt_source"]

PROMPT_POOL = 1_000_000
"""Train prompts of `WorldPrompts` are items 0 .. PROMPT_POOL - 1 of the world's train split (drawn per step)."""


@runtime_checkable
class PromptSource(Protocol):
    """Training prompts drawn per step, and a fixed list for sample videos."""

    def draw(self, generator: torch.Generator, n: int) -> list[str]:
        """``n`` training prompts; the draw reads only ``generator`` (so a resumed run redraws the same)."""
        ...

    def fixed(self, n: int) -> list[str]:
        """The first ``n`` of a fixed prompt list (sample videos at a fixed seed)."""
        ...


class FilePrompts:
    """Prompts of a text file, one per non-blank line: uniform draws with replacement; `fixed` = the first lines."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.prompts = [line.strip() for line in self.path.read_text().splitlines() if line.strip()]

    def draw(self, generator: torch.Generator, n: int) -> list[str]:
        idx = torch.randint(len(self.prompts), (n,), generator=generator).tolist()
        return [self.prompts[i] for i in idx]

    def fixed(self, n: int) -> list[str]:
        return self.prompts[:n]


class WorldPrompts:
    """The shapes world's prompts: train-split items drawn uniformly from ``0 .. PROMPT_POOL - 1``; `fixed`: the
    val split's first items (the prompts the pixel oracle reads back)."""

    def __init__(self, world) -> None:
        self.world = world

    def draw(self, generator: torch.Generator, n: int) -> list[str]:
        from streamvid.core.world import sample_attributes

        idx = torch.randint(PROMPT_POOL, (n,), generator=generator).tolist()
        return [sample_attributes(self.world, "train", i)[1] for i in idx]

    def fixed(self, n: int) -> list[str]:
        from streamvid.core.world import sample_attributes

        return [sample_attributes(self.world, "val", i)[1] for i in range(n)]


def prompt_source(cfg) -> PromptSource:
    """The training prompts of a `DMDStageConfig`: its ``prompts`` file when set, else its shapes world."""
    return FilePrompts(cfg.prompts) if cfg.prompts else WorldPrompts(cfg.world)
