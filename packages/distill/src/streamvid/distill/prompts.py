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

    def switch_targets(self, generator: torch.Generator, prompts: list[str]) -> list[str]:
        """The prompt each of ``prompts`` switches to in LongLive's switch training (reads only ``generator``)."""
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

    def switch_targets(self, generator: torch.Generator, prompts: list[str]) -> list[str]:
        """Another line of the file per prompt (uniform over the other lines; LongLive pairs prompts whose subject
        persists, which a plain prompt file cannot say: give such a file)."""
        if len(self.prompts) < 2:
            return list(prompts)
        out = []
        for p in prompts:
            q = p
            while q == p:
                q = self.prompts[int(torch.randint(len(self.prompts), (1,), generator=generator))]
            out.append(q)
        return out


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

    def switch_targets(self, generator: torch.Generator, prompts: list[str]) -> list[str]:
        """The same colour and shape moving in another of the world's directions, phrased with a drawn seed (the
        subject persists across the switch, as in LongLive's switch prompts and the world's multi-segment
        streams, ``streamvid.eval.long_streams``)."""
        from streamvid.core.world.prompts import PromptSpec, generate_prompt, parse_prompt

        out = []
        for p in prompts:
            spec = parse_prompt(p)
            options = [d for d in self.world.directions if d != spec.segments[-1]]
            d = options[int(torch.randint(len(options), (1,), generator=generator))]
            seed = int(torch.randint(2**31, (1,), generator=generator))
            out.append(generate_prompt(PromptSpec(spec.colour, spec.shape, (d,)), seed))
        return out


def prompt_source(cfg) -> PromptSource:
    """The training prompts of a `DMDStageConfig`: its ``prompts`` file when set, else its shapes world."""
    return FilePrompts(cfg.prompts) if cfg.prompts else WorldPrompts(cfg.world)
