"""`BudgetLedger`: what a test-time search spent, so strategies are compared at equal cost.

Every strategy (plain sampling, best-of-N, chunk-greedy, Stream-T1) reports through one ledger:

* **denoiser forwards** (NFE), tagged by kind: ``denoise`` (a few-step denoising step), ``commit`` (the clean
  commit pass that writes the cache), ``cfg`` (an extra unconditional pass of classifier-free guidance),
  ``recache`` (re-encoding the cached history under a new prompt at a prompt switch), each
  counted per *sample* (a batch of 8 candidates is 8 forwards: the budget vocabulary of search papers counts
  function evaluations per video, not kernel launches);
* **decodes** (latents -> pixels), per sample;
* **reward calls** per reward name, per sample;
* **wall time** per component (``with ledger.timed("reward"): ...``), plus the total since creation;
* **peak memory**: the process's resident set high-water mark (and CUDA's peak allocation when on a GPU).

`to_dict()` is the JSON the CLIs write next to their outputs.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

__all__ = ["FORWARD_KINDS", "BudgetLedger"]

FORWARD_KINDS = ("denoise", "commit", "cfg", "recache")
"""Kinds of denoiser forwards the ledger counts separately."""


def _peak_rss_bytes() -> int:
    """The process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass
class BudgetLedger:
    """Counters of one search (see the module docstring). All counts are per sample."""

    forwards: Counter = field(default_factory=Counter)
    """kind (`FORWARD_KINDS`) -> denoiser forwards."""
    decodes: int = 0
    reward_calls: Counter = field(default_factory=Counter)
    """reward name -> scored samples."""
    seconds: Counter = field(default_factory=Counter)
    """component -> wall seconds (components may nest; the total is measured separately)."""
    started: float = field(default_factory=time.perf_counter)

    # ------------------------------------------------------------------ counting
    def forward(self, kind: str, samples: int = 1) -> None:
        """Count ``samples`` denoiser forwards of ``kind``."""
        if kind not in FORWARD_KINDS:
            raise ValueError(f"forward kind must be one of {FORWARD_KINDS}, got {kind!r}")
        if samples < 0:
            raise ValueError(f"samples must be >= 0, got {samples}")
        self.forwards[kind] += samples

    def decode(self, samples: int = 1) -> None:
        self.decodes += samples

    def reward(self, name: str, samples: int = 1) -> None:
        self.reward_calls[name] += samples

    @contextlib.contextmanager
    def timed(self, component: str) -> Iterator[None]:
        """Add the wall time of the block to ``component``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[component] += time.perf_counter() - start

    # ------------------------------------------------------------------ totals
    @property
    def nfe(self) -> int:
        """All denoiser forwards (denoising steps, commit passes and CFG passes)."""
        return sum(self.forwards.values())

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self.started

    def merge(self, other: BudgetLedger) -> None:
        """Add another ledger's counts and component times (e.g. a baseline's inner runs)."""
        self.forwards.update(other.forwards)
        self.decodes += other.decodes
        self.reward_calls.update(other.reward_calls)
        self.seconds.update(other.seconds)

    def to_dict(self) -> dict:
        """JSON-ready summary: counts, NFE, seconds per component and in total, peak memory."""
        out = {
            "nfe": self.nfe,
            "forwards": {k: int(self.forwards.get(k, 0)) for k in FORWARD_KINDS},
            "decodes": self.decodes,
            "reward_calls": dict(self.reward_calls),
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "wall_seconds": round(self.wall_seconds, 4),
            "peak_rss_bytes": _peak_rss_bytes(),
        }
        if torch.cuda.is_available():
            out["peak_cuda_bytes"] = int(torch.cuda.max_memory_allocated())
        return out
