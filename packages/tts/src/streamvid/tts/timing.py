"""Timing of one chunk's search candidates, batched against sequential (shared by `bench/tts.py` and
`bench/gpu_check.py`, which measure; this module only holds the one way to time it)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from streamvid.core.sampler import StreamSession, candidate_batch

__all__ = ["candidate_throughput"]


@torch.no_grad()
def candidate_throughput(session: StreamSession, candidates: int, repeats: int,
                         sync: Callable[[], None] = lambda: None) -> dict:
    """Candidates per second of one chunk's denoising, batched against sequential forks (best of ``repeats``).

    Opens the session's next chunk, times ``candidates`` forked sessions denoised one after another and one
    `candidate_batch` of the same seeds (B = candidates rows), each after one untimed warm-up, then discards
    the chunk. ``sync`` is called before every clock read (``torch.cuda.synchronize`` on a GPU).
    """
    session.open_chunk()
    seeds = list(range(candidates))

    def sequential() -> None:
        for s in seeds:
            fork = session.fork(seed=s)
            fork.denoise_from(fork.initial_noise())

    def batched() -> None:
        batch = candidate_batch([session], [seeds])
        batch.denoise_from(batch.initial_noise())

    times = {}
    for name, fn in (("sequential", sequential), ("batched", batched)):
        fn()  # warm
        best = float("inf")
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t0)
        times[name] = best
    session.discard()
    return {"candidates": candidates, "sequential_cand_per_s": round(candidates / times["sequential"], 2),
            "batched_cand_per_s": round(candidates / times["batched"], 2),
            "batched_over_sequential": round(times["sequential"] / times["batched"], 3)}
