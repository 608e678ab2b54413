"""Streaming benchmark: KV-cached chunk latency vs re-running history, memory flatness, fork sharing.

    .venv/bin/python bench/streaming.py --out outputs/bench/streaming.json [--chunks 40] [--long-chunks 500]

All numbers come from one run on this machine and are reported as ratios against a baseline measured in the
same run:

* cached: the `StreamingSampler` with a sink + window KV cache (4 denoising passes + 1 commit pass per chunk);
* recompute (full history): what a model without a cache must do, as diffusers' SkyReels-V2 diffusion-forcing
  pipeline does: every denoising step re-runs the whole video so far (clean history at t=0 + the noisy chunk)
  with the same sink/window attention mask, so its outputs equal the cached ones (checked, max abs diff).

Memory: KV-cache tensor bytes and the process' peak RSS at chunk 10 and at the last chunk; a long stream on
the tiny config; `fork()` of 8 search candidates vs 8 deep copies.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from streamvid.core.causal_wan import BlockCausal, CausalWanModel
from streamvid.core.config import load_config
from streamvid.core.kv_cache import CacheLayout
from streamvid.core.model_config import WanModelConfig
from streamvid.core.sampler import GaussianNoise, StreamingSampler
from streamvid.core.schedule import FewStepSchedule, add_noise, flow_to_x0

REPO = Path(__file__).resolve().parents[1]
LATENT = (16, 8, 8)  # C, h, w: 16 tokens per latent frame with 2x2 patches
TEXT_TOKENS = 32


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(model_yaml: str, seed: int = 0) -> CausalWanModel:
    cfg = load_config(REPO / "configs" / "model" / model_yaml, schema=WanModelConfig)
    torch.manual_seed(seed)
    return CausalWanModel(**cfg.to_diffusers_kwargs()).eval().requires_grad_(False)


def cached_run(model, layout, schedule, text, num_chunks):
    sampler = StreamingSampler(model, schedule, layout)
    session = sampler.session(text, LATENT, noise=GaussianNoise(0))
    latencies, chunks, memory = [], [], {}
    for c in range(num_chunks):
        start = time.perf_counter()
        chunks.append(session.next_chunk().latents)
        latencies.append(time.perf_counter() - start)
        if c + 1 in (10, num_chunks):
            memory[c + 1] = {"cache_bytes": session.cache.memory_bytes(), "peak_rss_mb": peak_rss_mb()}
    return torch.cat(chunks, 1), latencies, memory, session


@torch.no_grad()
def recompute_run(model, layout, schedule, text, num_chunks):
    """No cache: every denoising step is one block-causal forward over [clean history | noisy chunk]."""
    n = layout.chunk_frames
    mask = BlockCausal(n, layout.sink_frames, layout.local_attn_frames)
    noise = GaussianNoise(0)
    ctx = model.encode_text(text)
    ts = schedule.timesteps.tolist()
    clean, latencies = [], []
    for _ in range(num_chunks):
        start = time.perf_counter()
        shape = (1, n, *LATENT)
        x = noise(None, -1, shape, torch.float32, torch.device("cpu"))
        history = torch.cat(clean, 1) if clean else x[:, :0]
        for j, t in enumerate(ts):
            seq = torch.cat([history, x], 1)
            tt = torch.zeros(1, seq.shape[1])
            tt[:, -n:] = t
            flow = model(seq.transpose(1, 2), tt, text_context=ctx, block_causal=mask).sample.transpose(1, 2)
            x0 = flow_to_x0(x, flow[:, -n:], t / 1000)
            if j + 1 < len(ts):
                x = add_noise(x0, noise(None, j, shape, torch.float32, torch.device("cpu")), ts[j + 1] / 1000)
        clean.append(x0)
        latencies.append(time.perf_counter() - start)
    return torch.cat(clean, 1), latencies


def fork_memory(model, layout, schedule, text, num_chunks, candidates=8):
    """Memory of `candidates` forked search candidates (each with its chunk written) vs deep copies."""
    sampler = StreamingSampler(model, schedule, layout)
    session = sampler.session(text, LATENT, noise=GaussianNoise(0))
    for _ in range(num_chunks):
        session.next_chunk()
    parent = session.cache
    session.open_chunk()  # evicts once, before forking
    one_stream = parent.memory_bytes()
    forks = []
    for i in range(candidates):
        child = session.fork(seed=i)
        x = torch.randn(1, layout.chunk_frames, *LATENT, generator=torch.Generator().manual_seed(i))
        child.denoise(x, 0)
        forks.append(child.cache)
    unique = {t.data_ptr(): t.nbytes for c in [parent, *forks] for t in c.tensors()}
    deep = [copy.deepcopy(parent) for _ in range(candidates)]
    deep_bytes = one_stream + sum(d.memory_bytes() for d in deep)
    history_frames = parent.num_history_frames
    return {
        "candidates": candidates,
        "history_frames": history_frames,
        "chunk_frames": layout.chunk_frames,
        "one_stream_bytes": one_stream,
        "forked_total_bytes": sum(unique.values()),
        "deep_copy_total_bytes": deep_bytes,
        "fork_over_one_stream": sum(unique.values()) / one_stream,
        "deep_copy_over_one_stream": deep_bytes / one_stream,
        "expected_fork_ratio_formula": "(history + (1 + K) * chunk) / (history + chunk)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench/streaming.json")
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--long-chunks", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    schedule = FewStepSchedule.from_steps((1000, 750, 500, 250), shift=5.0)
    layout = CacheLayout(chunk_frames=3, sink_frames=3, local_attn_frames=15)
    model = build("small.yaml")
    params = sum(p.numel() for p in model.parameters())
    text = torch.randn(1, TEXT_TOKENS, model.config.text_dim, generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        cached, lat_cached, mem, _ = cached_run(model, layout, schedule, text, args.chunks)
        full, lat_full = recompute_run(model, layout, schedule, text, args.chunks)

    def med(xs, lo, hi):
        return statistics.median(xs[lo:hi])

    last = args.chunks
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "torch": torch.__version__},
        "config": {"model": "configs/model/small.yaml", "parameters": params, "latent": LATENT,
                   "layout": {"chunk": 3, "sink": 3, "local_attn": 15}, "steps": schedule.timesteps.tolist(),
                   "chunks": args.chunks},
        "cached": {
            "chunk_latency_s": lat_cached,
            "chunk_last_over_chunk4": lat_cached[last - 1] / lat_cached[3],
            "median_last5_over_median_chunks2to6": med(lat_cached, last - 5, last) / med(lat_cached, 1, 6),
            "total_s": sum(lat_cached),
        },
        "recompute_full_history": {
            "chunk_latency_s": lat_full,
            "total_s": sum(lat_full),
            "total_over_cached": sum(lat_full) / sum(lat_cached),
            "chunk_last_over_cached_chunk_last": lat_full[-1] / lat_cached[-1],
            "max_abs_diff_vs_cached": (full - cached).abs().max().item(),
        },
        "memory": {
            "at_chunk_10": mem[10],
            f"at_chunk_{last}": mem[last],
            "cache_growth_10_to_last": mem[last]["cache_bytes"] / mem[10]["cache_bytes"] - 1,
            "peak_rss_growth_10_to_last": mem[last]["peak_rss_mb"] / mem[10]["peak_rss_mb"] - 1,
        },
    }

    tiny = build("tiny.yaml")
    tiny_text = torch.randn(1, TEXT_TOKENS, tiny.config.text_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, lat_long, mem_long, session = cached_run(tiny, layout, schedule, tiny_text, args.long_chunks)
    result["long_stream_tiny"] = {
        "chunks": args.long_chunks,
        "latent_frames": args.long_chunks * 3,
        "cache_bytes_chunk10": mem_long[10]["cache_bytes"],
        f"cache_bytes_chunk{args.long_chunks}": mem_long[args.long_chunks]["cache_bytes"],
        "peak_rss_mb_chunk10": mem_long[10]["peak_rss_mb"],
        f"peak_rss_mb_chunk{args.long_chunks}": mem_long[args.long_chunks]["peak_rss_mb"],
        "peak_rss_growth": mem_long[args.long_chunks]["peak_rss_mb"] / mem_long[10]["peak_rss_mb"] - 1,
        "latency_last50_over_first50_median": med(lat_long, -50, None) / med(lat_long, 5, 55),
        "last_key_position": max(session.cache.window_frame_indices),
    }
    with torch.no_grad():
        result["fork"] = {
            "bench_layout": fork_memory(model, layout, schedule, text, 10),
            "long_window_layout": fork_memory(
                model, CacheLayout(chunk_frames=3, sink_frames=3, local_attn_frames=51), schedule, text, 20
            ),
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    summary = {
        "cached chunk40/chunk4": result["cached"]["chunk_last_over_chunk4"],
        "cached median(36-40)/median(2-6)": result["cached"]["median_last5_over_median_chunks2to6"],
        "recompute/cached total": result["recompute_full_history"]["total_over_cached"],
        "recompute max diff": result["recompute_full_history"]["max_abs_diff_vs_cached"],
        "cache growth 10->40": result["memory"]["cache_growth_10_to_last"],
        "peak RSS growth 10->40": result["memory"]["peak_rss_growth_10_to_last"],
        "long stream RSS growth": result["long_stream_tiny"]["peak_rss_growth"],
        "fork/one (bench layout)": result["fork"]["bench_layout"]["fork_over_one_stream"],
        "fork/one (long window)": result["fork"]["long_window_layout"]["fork_over_one_stream"],
        "deep/one": result["fork"]["bench_layout"]["deep_copy_over_one_stream"],
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
