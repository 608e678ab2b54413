"""Test-time search costs (issue 10 §4): forked candidates' cache memory against deep copies, and the share of
search wall time spent outside model forwards, decodes and reward calls.

    .venv/bin/python bench/tts.py --out outputs/bench/tts.json

1. Memory: a stream with ``--history`` committed chunks (no window: the whole history stays), one chunk opened on
   it, then ``--candidates`` candidates that each write their own chunk K/V: (a) `StreamSession.fork` (history
   shared copy-on-write), (b) ``copy.deepcopy`` of the session's cache per candidate (what the reference does).
   Bytes are the unique tensor storages held by the parent and all candidates (deduplicated by data pointer),
   divided by one stream's bytes. Target for (a): <= 1.5. (c) one `candidate_batch` of the candidates: held
   bytes as (a), plus the transient history one forward materialises per layer (`CacheBatch.history_read_bytes`:
   one row for a one-beam batch; B rows when two beams share a group, the history read once per candidate).
2. Overhead: one Stream-T1 search (the shipped shapes config, ``make infer-t1``'s prompt) timed by its ledger:
   1 - (denoise + commit + decode + reward seconds) / wall seconds (the "denoise" component includes each
   candidate's noise draw and propagation). Target <= 5 %.
3. Batched / sequential: the candidates of one chunk denoised as one `candidate_batch` (one forward per step for
   all of them) against one forked session after another, in candidates per second (best of ``--repeats``), on
   the memory model at ``--history`` chunks of history and on the shipped shapes student; and one whole
   Stream-T1 search (``batched`` true / false) on the shapes config, in wall seconds. All in this one run, one
   torch thread.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from streamvid.core.causal_wan import CausalWanModel
from streamvid.core.kv_cache import CacheLayout
from streamvid.core.sampler import GaussianNoise, StreamingSampler, candidate_batch
from streamvid.core.sampler_config import SamplerConfig
from streamvid.tts.timing import candidate_throughput


def unique_bytes(caches) -> int:
    seen, total = set(), 0
    for cache in caches:
        for t in cache.tensors():
            key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
    return total


@torch.no_grad()
def fill_candidate(session) -> None:
    """Write one chunk's K/V into the candidate's cache (one denoising forward)."""
    x = session.initial_noise()
    session.denoise(x, 0)


def memory_model() -> StreamingSampler:
    """A 3-layer, 128-wide causal Wan on 16x16x12 latents (768 tokens per chunk), no window."""
    torch.manual_seed(0)
    model = CausalWanModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32, in_channels=12,
                           out_channels=12, text_dim=64, freq_dim=64, ffn_dim=256, num_layers=3).eval()
    return StreamingSampler.from_config(model, SamplerConfig(cache=CacheLayout(chunk_frames=3)))


@torch.no_grad()
def memory(history: int, candidates: int) -> dict:
    sampler = memory_model()
    text = sampler.model.encode_text(torch.randn(1, 1, 64), grad=False)
    session = sampler.session(text, (12, 16, 16), 1, GaussianNoise(0))
    for _ in range(history):
        session.next_chunk()
    one = unique_bytes([session.cache])
    session.open_chunk()
    forks = [session.fork(seed=i) for i in range(candidates)]
    for f in forks:
        fill_candidate(f)
    forked = unique_bytes([session.cache, *(f.cache for f in forks)])
    copies = []
    for i in range(candidates):
        c = session.fork(seed=100 + i)
        c.cache = copy.deepcopy(session.cache)
        fill_candidate(c)
        copies.append(c)
    copied = unique_bytes([session.cache, *(c.cache for c in copies)])
    batch = candidate_batch([session], [list(range(candidates))])
    fill_candidate(batch)
    batched = unique_bytes([session.cache, *batch.cache.caches])
    # two beams in one group: each history is still held once, but every forward reads it once per row
    two = candidate_batch([session, session], [list(range(candidates)), list(range(candidates))])
    fill_candidate(two)
    return {"history_chunks": history, "candidates": candidates, "one_stream_bytes": one,
            "forked_bytes": forked, "deepcopy_bytes": copied, "batched_bytes": batched,
            "forked_over_one": round(forked / one, 3), "deepcopy_over_one": round(copied / one, 3),
            "batched_over_one": round(batched / one, 3), "target_forked_over_one": 1.5,
            "batched_history_read_bytes_per_layer": batch.cache.history_read_bytes(),
            "two_beam_batch_history_read_bytes_per_layer": two.cache.history_read_bytes()}


def throughput(history: int, candidates: int, repeats: int, config: str, prompt: str) -> dict:
    from streamvid.core.config import load_config
    from streamvid.core.generator import build_generator, prompt_vocabulary
    from streamvid.tts.cli import InferT1Config

    sampler = memory_model()
    text = sampler.model.encode_text(torch.randn(1, 1, 64), grad=False)
    session = sampler.session(text, (12, 16, 16), 1, GaussianNoise(0))
    with torch.no_grad():
        for _ in range(history):
            session.next_chunk()
    out = {"memory_model": {"history_chunks": history, **candidate_throughput(session, candidates, repeats)}}
    cfg = load_config(Path(config), [], schema=InferT1Config)
    gen = build_generator(cfg.generator, vocabulary=prompt_vocabulary([prompt]))
    shapes = gen.sampler.session(gen.text_encoder.encode([prompt]).embeddings, gen.latent_shape, 1, GaussianNoise(0))
    with torch.no_grad():
        for _ in range(2):
            shapes.next_chunk()
    out["shapes_student"] = {"history_chunks": 2, **candidate_throughput(shapes, candidates, repeats)}
    return out


def overhead(config: str, prompt: str, repeats: int) -> dict:
    from streamvid.core.config import load_config
    from streamvid.core.generator import build_generator, prompt_vocabulary
    from streamvid.core.rewards import build_reward
    from streamvid.tts.cli import InferT1Config
    from streamvid.tts.search import chunk_search

    cfg = load_config(Path(config), [], schema=InferT1Config)
    gen = build_generator(cfg.generator, vocabulary=prompt_vocabulary([prompt]))
    reward = build_reward(cfg.reward.config())
    text = gen.text_encoder.encode([prompt]).embeddings
    out = {}
    for batched in (True, False):
        search = replace(cfg.search, batched=batched)
        chunk_search(gen.sampler, text, prompt, gen.latent_shape, cfg.num_frames, reward, gen.codec, search)  # warm
        best = None
        for _ in range(repeats):
            start = time.perf_counter()
            result = chunk_search(gen.sampler, text, prompt, gen.latent_shape, cfg.num_frames, reward, gen.codec,
                                  search)
            wall = time.perf_counter() - start
            if best is None or wall < best[0]:
                best = (wall, result)
        wall, result = best
        inside = sum(result.ledger.seconds.values())
        out["batched" if batched else "sequential"] = {
            "wall_s": round(wall, 4), "seconds": {k: round(v, 4) for k, v in result.ledger.seconds.items()},
            "overhead_share": round(1 - inside / wall, 4), "nfe": result.ledger.nfe}
    out["target_overhead_share"] = 0.05
    out["search_sequential_over_batched_wall"] = round(out["sequential"]["wall_s"] / out["batched"]["wall_s"], 3)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--history", type=int, default=16, help="committed chunks before the candidates")
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--config", default="configs/infer/shapes_t1.yaml")
    p.add_argument("--prompt", default="a red circle moving left, then up")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="outputs/bench/tts.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    result = {"memory": memory(args.history, args.candidates),
              "throughput": throughput(args.history, args.candidates, args.repeats, args.config, args.prompt),
              "overhead": overhead(args.config, args.prompt, args.repeats)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
