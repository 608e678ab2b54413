"""A run's items sharded over the ranks `torchrun` starts: the process group, barriers, counts and per-rank records.

The one implementation behind ``streamvid-eval`` and ``streamvid-infer-t1 --prompts``::

    rank, world, owns_group = setup_process_group()   # (0, 1, False) without torchrun
    mine = [item for k, item in enumerate(items) if k % world == rank]
    shard = shard_path(out, "scores", rank, world)     # scores.jsonl (one process) / scores.rank{r}.jsonl
    for item in mine: append_record(shard, record)
    barrier(world)                                     # then rank 0 reads every shard (read_shard) and merges

A rank writes only its own shard, so ranks never share a file; a run resumes with any world size because the
merge reads every ``<stem>*.jsonl`` there is.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from streamvid.core.config import ConfigError

__all__ = ["append_record", "barrier", "read_shard", "setup_process_group", "shard_path", "sum_counts"]


def setup_process_group() -> tuple[int, int, bool]:
    """(rank, world size, whether this call created the process group).

    An initialised ``torch.distributed`` group is used as it is; otherwise ``WORLD_SIZE`` > 1 (torchrun) creates a
    gloo group from ``RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT`` (one of them unset: `ConfigError`); otherwise one
    process. The caller destroys the group when the third value is True.
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE={world} but {missing} unset: launch with torchrun --nproc_per_node N")
    dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=world)
    return dist.get_rank(), world, True


def barrier(world: int) -> None:
    """Wait for every rank (nothing to wait for with one process)."""
    if world > 1:
        torch.distributed.barrier()


def sum_counts(counts: dict[str, int], world: int) -> dict[str, int]:
    """The counts summed over every rank (a gloo all-reduce, which is also a barrier); ``counts`` itself when
    one process runs."""
    if world == 1:
        return counts
    keys = sorted(counts)
    total = torch.tensor([counts[k] for k in keys], dtype=torch.long)
    torch.distributed.all_reduce(total)
    return dict(zip(keys, total.tolist(), strict=True))


def shard_path(folder: str | os.PathLike, stem: str, rank: int, world: int) -> Path:
    """The records file of ``rank``: ``<stem>.jsonl`` when one process runs, else ``<stem>.rank{rank}.jsonl``."""
    return Path(folder) / (f"{stem}.jsonl" if world == 1 else f"{stem}.rank{rank}.jsonl")


def append_record(path: Path, rec: dict) -> None:
    """Append one record as one line with a single O_APPEND write, then fsync (a crash loses at most it)."""
    data = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a line cut short by a crash: end it so this record stays readable
                data = b"\n" + data
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_shard(path: Path) -> Iterator[dict]:
    """The records of one shard in file order; a line cut short by a crash is skipped with a warning (that
    item is redone)."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{number}: unreadable record skipped", stacklevel=3)
