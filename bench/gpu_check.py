"""One command for a GPU (issue 20 §4): everything a first GPU session should measure, in one JSON and one table.

    make gpu-check                                   # CUDA: Wan2.1-T2V-1.3B sizes, random bf16 weights (<= 10 min)
    make gpu-check ARGS=--tiny                       # the same code path at tiny sizes on the CPU
    .venv/bin/python bench/gpu_check.py --tiny --out outputs/bench/gpu_check_tiny.json

Sections, all measured in this one run (no number is copied from elsewhere; the anchors are the published
figures the table prints beside ours):

1. ``tests_gpu``: ``pytest -m gpu tests/gpu`` in a subprocess (its exit code and summary line; without CUDA the
   tests report skipped).
2. ``streaming``: the causal Wan (``configs/model/wan2.1_t2v_1.3b.yaml``; ``--tiny``: ``configs/model/tiny.yaml``)
   with random weights in ``--dtype`` under the Reward-Forcing / Stream-R1 sampler
   (``configs/sampler/reward_forcing.yaml``: 3-frame chunks, 4 steps + commit, local_attn 9 = sink 3 + 6), decoded
   chunk by chunk by a random-weight Wan VAE (diffusers ``AutoencoderKLWan``; the default config is Wan2.1's VAE).
   Per mode (``eager`` and ``compile``: each block's FFN through ``torch.compile``, the attention / KV path eager,
   since a whole-model compile guards on the cache's Python state and recompiles every chunk):
   warm-up (a first stream of ``--warmup-chunks``), then one stream of ``--chunks``: denoise-loop fps (pixel
   frames / denoise seconds), end-to-end fps (pixel frames / denoise + decode seconds), time to first frame (the
   first chunk denoised and decoded), chunk latency p50 / p95 (denoise + decode, chunks after the first).
3. ``kv_cache``: the cache's bytes at 1, 10 and 30 s of 16 fps video, planned (`streamvid.core.memory_plan`
   ``kv_cache_bytes``, also for global attention) and measured (`KVCache.memory_bytes` of a stream run that long,
   one denoising pass per chunk except at the measured lengths).
4. ``r1_step``: one DMD generator step (rollout, real / fake scores, loss, backward) and one critic step with
   the 1.3B student and critic (``--tiny``: the tiny model) and a small real score (the student's sizes with
   ``--real-layers`` blocks), at ``--r1-frames`` latent frames, gradient checkpointing on, bf16 autocast, with
   seconds and peak memory (CUDA: ``max_memory_allocated``; CPU: the process' peak RSS, reset before each step
   through ``/proc/self/clear_refs``). Stream-R1's reward weights are off (no VideoAlign weights here;
   ``bench/distill_step.py`` measures their overhead on CPU).
5. ``t1_candidates``: 8 Stream-T1 candidates of one chunk denoised as one batch against one after another
   (`streamvid.tts.timing.candidate_throughput`) after 2 chunks of history.
6. ``shapes_student`` (``--tiny`` or ``--shapes-student``): section 2's harness on the shipped shapes student
   (``configs/generate/shapes_student.yaml``, pixel codec, CPU), the CPU latency numbers of the docs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from streamvid.core.causal_wan import CausalWanModel
from streamvid.core.config import load_config
from streamvid.core.dtypes import check_dtype
from streamvid.core.memory_plan import kv_cache_bytes, latent_frames_for_seconds
from streamvid.core.model_config import WanModelConfig
from streamvid.core.sampler import GaussianNoise, StreamingSampler
from streamvid.core.sampler_config import SamplerConfig
from streamvid.tts.timing import candidate_throughput

REPO = Path(__file__).resolve().parents[1]
ANCHORS_FPS = {"Self-Forcing": 17.0, "LongLive": 20.7, "Reward Forcing / Stream-R1": 23.1}
"""Published end-to-end fps on one H100 (streaming-anchors.md; methods.md A.10)."""

SIZES = {
    "paper": dict(model="wan2.1_t2v_1.3b.yaml", height=480, width=832, text_tokens=512, vae={},
                  chunks=10, warmup_chunks=3, r1_frames=21, real_layers=2, seconds=(1, 10, 30)),
    "tiny": dict(model="tiny.yaml", height=64, width=64, text_tokens=8,
                 vae=dict(base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]),
                 chunks=4, warmup_chunks=1, r1_frames=6, real_layers=1, seconds=(1, 10, 30)),
}


def _sync(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError):  # "5" resets the peak RSS (VmHWM) of this process (Linux, proc(5))
            Path("/proc/self/clear_refs").write_text("5")


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 2**20, 3)
    return float("nan")


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def build_model(size: dict, dtype: torch.dtype, device: torch.device, seed: int = 0, **changes) -> CausalWanModel:
    """The causal Wan of ``size`` with random weights, built directly in ``dtype`` on ``device``."""
    cfg = load_config(REPO / "configs" / "model" / size["model"], schema=WanModelConfig)
    cfg = replace(cfg, **changes)
    torch.manual_seed(seed)
    with torch.device(device):
        model = CausalWanModel(**cfg.to_diffusers_kwargs())
    return model.to(dtype).eval().requires_grad_(False)


def build_codec(size: dict, dtype: torch.dtype, device: torch.device):
    from diffusers import AutoencoderKLWan

    from streamvid.core.codecs.wan_vae import WanVAECodec

    torch.manual_seed(0)
    return WanVAECodec(AutoencoderKLWan(**size["vae"]).to(device=device, dtype=dtype).eval())


def compile_regions(model: CausalWanModel, backend: str) -> None:
    """Regional compilation: each block's FFN through ``torch.compile`` (in place)."""
    for block in model.blocks:
        block.ffn.compile(backend=backend)


@torch.no_grad()
def stream(model, codec, sampler_cfg: SamplerConfig, text: torch.Tensor, latent_shape, chunks: int,
           device: torch.device) -> dict:
    """One stream of ``chunks`` chunks, each denoised then decoded; times and the cache bytes per chunk."""
    sync = _sync(device)
    sampler = StreamingSampler.from_config(model, sampler_cfg)
    sync()
    t0 = time.perf_counter()
    session = sampler.session(text, latent_shape, 1, GaussianNoise(0))
    decoder = codec.decode_stream()
    rows, ttff = [], None
    for _ in range(chunks):
        sync()
        a = time.perf_counter()
        chunk = session.next_chunk()
        sync()
        b = time.perf_counter()
        pixels = decoder.push(chunk.latents)
        sync()
        c = time.perf_counter()
        ttff = c - t0 if ttff is None else ttff
        rows.append({"denoise_s": b - a, "decode_s": c - b, "pixel_frames": int(pixels.shape[1]),
                     "latent_frames": int(chunk.latents.shape[1]), })
    return {"rows": rows, "ttff_s": ttff}


def summarize(run: dict, warmup_s: float) -> dict:
    rows = run["rows"]
    frames = sum(r["pixel_frames"] for r in rows)
    denoise = sum(r["denoise_s"] for r in rows)
    decode = sum(r["decode_s"] for r in rows)
    later = [r["denoise_s"] + r["decode_s"] for r in rows[1:]] or [rows[0]["denoise_s"] + rows[0]["decode_s"]]
    return {"chunks": len(rows), "pixel_frames": frames, "denoise_fps": round(frames / denoise, 3),
            "end_to_end_fps": round(frames / (denoise + decode), 3), "time_to_first_frame_s": round(run["ttff_s"], 4),
            "chunk_latency_p50_s": round(_percentile(later, 0.5), 4),
            "chunk_latency_p95_s": round(_percentile(later, 0.95), 4), "warmup_s": round(warmup_s, 3),
            "decode_share": round(decode / (denoise + decode), 3)}


def streaming_section(size, model, codec, sampler_cfg, text, latent_shape, device, modes, backend) -> dict:
    out = {}
    for mode in modes:
        if mode == "compile":
            compile_regions(model, backend)
        t = time.perf_counter()
        stream(model, codec, sampler_cfg, text, latent_shape, size["warmup_chunks"], device)
        warmup = time.perf_counter() - t
        run = stream(model, codec, sampler_cfg, text, latent_shape, size["chunks"], device)
        out[mode] = summarize(run, warmup)
    if "compile" in modes:
        out["compile"]["backend"] = backend
        out["compile"]["regions"] = "each block's FFN (attention and the KV cache eager)"
    return out


@torch.no_grad()
def kv_section(size, model, sampler_cfg, text, latent_shape, dtype) -> dict:
    """Planned (`kv_cache_bytes`) against measured (`KVCache.memory_bytes` while the last chunk of that length
    is open, denoising only) at 1, 10 and 30 s of video."""
    cfg = model.config
    tokens = (latent_shape[1] // cfg.patch_size[1]) * (latent_shape[2] // cfg.patch_size[2])
    lengths = {s: latent_frames_for_seconds(s, fps=16, chunk_frames=sampler_cfg.cache.chunk_frames)
               for s in size["seconds"]}
    session = StreamingSampler.from_config(model, sampler_cfg).session(text, latent_shape, 1, GaussianNoise(0))
    measured, frames = {}, 0
    while frames < max(lengths.values()):
        session.open_chunk()
        frames += sampler_cfg.cache.chunk_frames
        if frames in lengths.values():
            session.commit(session.denoise_from(session.initial_noise()))
            measured[frames] = session.cache.memory_bytes()
        else:  # the cache holds the same tensors whatever they contain: one pass writes the chunk
            session.commit(session.denoise(session.initial_noise(), len(session.sampler.schedule) - 1))
    out = {}
    for s, n in lengths.items():
        args = (cfg.num_layers, cfg.num_attention_heads, cfg.attention_head_dim, tokens, n, torch.finfo(dtype).bits // 8)
        planned = kv_cache_bytes(sampler_cfg.cache, *args)
        global_attn = kv_cache_bytes(replace(sampler_cfg.cache, sink_frames=0, local_attn_frames=None), *args)
        out[f"{s}s"] = {"latent_frames": n, "planned_gib": round(planned / 2**30, 5),
                        "measured_gib": round(measured[n] / 2**30, 5), "planned_bytes": planned,
                        "measured_bytes": measured[n], "global_attention_gib": round(global_attn / 2**30, 5)}
    return out


def r1_section(size, dtype, device, frames: int, real_layers: int) -> dict:
    from streamvid.distill.dmd_config import DMDStageConfig
    from streamvid.distill.dmd_module import DMDModule
    from streamvid.distill.prompts import WorldPrompts

    overrides = [f"num_training_frames={frames}", f"height={size['height']}", f"width={size['width']}",
                 "stream_r1.reward_weighting=false", "stream_r1.spatial_reward=false",
                 "stream_r1.temporal_saliency_weighting=false", "gradient_checkpointing=true"]
    cfg = load_config(REPO / "experiments/stream_r1/stream_r1.yaml", overrides, schema=DMDStageConfig)
    model_cfg = load_config(REPO / "configs" / "model" / size["model"], schema=WanModelConfig)
    cfg = replace(cfg, model=model_cfg)

    def net(layers=None, seed=0):
        torch.manual_seed(seed)
        kwargs = model_cfg.to_diffusers_kwargs() | ({"num_layers": layers} if layers else {})
        with torch.device(device):
            m = CausalWanModel(**kwargs)
        m.enable_gradient_checkpointing()
        return m.float()

    student, critic, real = net(seed=0).train(), net(seed=1).train(), net(real_layers, seed=2).eval()
    codec = build_codec(size, torch.float32, torch.device("cpu"))  # only its ratios: rewards are off
    states = torch.randn(1, size["text_tokens"], model_cfg.text_dim, generator=torch.Generator().manual_seed(3))

    def text(prompts: list[str]) -> torch.Tensor:  # random text states [B, L, D] (umT5 runs once per prompt)
        return states.expand(len(prompts), -1, -1)

    module = DMDModule(student, real, critic, None, codec, text, cfg, WorldPrompts(cfg.world)).to(device)
    prompts = ["a video of the sea"]
    sync, out = _sync(device), {"latent_frames": frames, "real_score_layers": real_layers,
                                "params": {k: sum(p.numel() for p in module.nets[k].parameters())
                                           for k in ("generator", "critic", "real")}}
    for name, loss_fn in (("generator_step", module.generator_loss), ("critic_step", module.critic_loss)):
        for attempt in ("warm", "timed"):
            module.zero_grad(set_to_none=True)
            _reset_peak(device)
            sync()
            t = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                loss = loss_fn(prompts, torch.Generator().manual_seed(0), len(cfg.sampler.denoising_steps) - 1, 0)[0]
            loss.backward()
            sync()
            if attempt == "timed":
                out[name] = {"seconds": round(time.perf_counter() - t, 3), "peak_gib": _peak_gib(device),
                             "loss": float(loss.detach())}
    return out


def shapes_student_section(device: torch.device) -> dict:
    from streamvid.core.cli.generate import GenerateConfig
    from streamvid.core.generator import build_generator, prompt_vocabulary

    cfg = load_config(REPO / "configs/generate/shapes_student.yaml", schema=GenerateConfig)
    prompt = "a red circle moving left"
    gen = build_generator(cfg.generator, vocabulary=prompt_vocabulary([prompt]))
    text = gen.text_encoder.encode([prompt]).embeddings
    chunks = cfg.num_frames // cfg.generator.sampler.cache.chunk_frames
    t = time.perf_counter()
    stream(gen.model, gen.codec, cfg.generator.sampler, text, gen.latent_shape, 1, device)
    warm = time.perf_counter() - t
    return summarize(stream(gen.model, gen.codec, cfg.generator.sampler, text, gen.latent_shape, chunks, device), warm)


def tests_gpu_section() -> dict:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           str(REPO / "tests" / "gpu")], capture_output=True, text=True, cwd=REPO)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    return {"exit_code": proc.returncode, "summary": lines[-1] if lines else proc.stderr.strip()[-200:]}


def table(result: dict) -> str:
    s = result["streaming"]
    lines = [f"gpu-check on {result['device_name']} ({result['size']} sizes, {result['dtype']}, chunk "
             f"{result['chunk_frames']} latent frames, attention backend {result['attention_backend']})",
             f"{'mode':<10}{'denoise fps':>13}{'e2e fps':>10}{'TTFF s':>9}{'p50 s':>9}{'p95 s':>9}{'warm-up s':>11}"]
    for mode, r in s.items():
        lines.append(f"{mode:<10}{r['denoise_fps']:>13.2f}{r['end_to_end_fps']:>10.2f}{r['time_to_first_frame_s']:>9.3f}"
                     f"{r['chunk_latency_p50_s']:>9.3f}{r['chunk_latency_p95_s']:>9.3f}{r['warmup_s']:>11.2f}")
    lines.append("anchors (end-to-end fps, one H100): " + ", ".join(f"{k} {v}" for k, v in ANCHORS_FPS.items()))
    kv = result["kv_cache"]
    lines.append("KV cache GiB (planned / measured): " + ", ".join(
        f"{k} {v['planned_gib']} / {v['measured_gib']}" for k, v in kv.items()))
    r1 = result["r1_step"]
    lines.append(f"DMD generator step {r1['generator_step']['seconds']} s, peak {r1['generator_step']['peak_gib']} GiB; "
                 f"critic step {r1['critic_step']['seconds']} s, peak {r1['critic_step']['peak_gib']} GiB")
    t1 = result["t1_candidates"]
    lines.append(f"Stream-T1 {t1['candidates']} candidates: batched {t1['batched_cand_per_s']} / sequential "
                 f"{t1['sequential_cand_per_s']} cand/s (x{t1['batched_over_sequential']})")
    lines.append(f"tests/gpu: {result['tests_gpu']['summary']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/bench/gpu_check.json")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (CI), same code path")
    parser.add_argument("--dtype", default=None, help="model dtype (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--modes", default="eager,compile", help="comma-separated: eager, compile")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--shapes-student", action="store_true", help="also time the shipped shapes student")
    parser.add_argument("--skip-tests", action="store_true", help="do not run tests/gpu")
    args = parser.parse_args(argv)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the "kept in float32" note of `.to(dtype)` on random weights
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("eager", "compile")]
    if bad or not modes:
        print(f"gpu_check: error: --modes: unknown mode(s) {', '.join(bad) or '(none)'}; choose from eager, compile",
              file=sys.stderr)
        return 2
    if not args.tiny and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device: run on a GPU machine, or pass --tiny for the CPU run at tiny sizes",
              file=sys.stderr)
        return 2
    size = dict(SIZES["tiny" if args.tiny else "paper"])
    if args.chunks is not None:
        size["chunks"] = args.chunks
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = check_dtype("--dtype", args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    model = build_model(size, dtype, device)
    codec = build_codec(size, dtype, device)
    sampler_cfg = load_config(REPO / "configs/sampler/reward_forcing.yaml", schema=SamplerConfig)
    latent_shape = (codec.latent_channels, size["height"] // codec.spatial_ratio, size["width"] // codec.spatial_ratio)
    g = torch.Generator().manual_seed(0)
    text = torch.randn(1, size["text_tokens"], model.config.text_dim, generator=g).to(device, dtype)
    result = {
        "size": "tiny" if args.tiny else "paper", "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "dtype": str(dtype).removeprefix("torch."),
        "chunk_frames": sampler_cfg.cache.chunk_frames, "sampler": "configs/sampler/reward_forcing.yaml",
        "attention_backend": str(getattr(model.blocks[0].attn1.processor, "_attention_backend", None) or "native (SDPA)"),
        "model_params": sum(p.numel() for p in model.parameters()), "video": [size["height"], size["width"]],
        "anchors_fps": ANCHORS_FPS,
    }
    result["streaming"] = streaming_section(size, model, codec, sampler_cfg, text, latent_shape, device, modes,
                                            args.compile_backend)
    result["kv_cache"] = kv_section(size, model, sampler_cfg, text, latent_shape, dtype)
    with torch.no_grad():
        session = StreamingSampler.from_config(model, sampler_cfg).session(text, latent_shape, 1, GaussianNoise(0))
        for _ in range(2):
            session.next_chunk()
        result["t1_candidates"] = candidate_throughput(session, 8, 2, _sync(device))
    del model, session
    result["r1_step"] = r1_section(size, dtype, device, size["r1_frames"], size["real_layers"])
    if args.tiny or args.shapes_student:
        result["shapes_student"] = shapes_student_section(torch.device("cpu"))
    result["tests_gpu"] = {"skipped": "--skip-tests"} if args.skip_tests else tests_gpu_section()
    if args.skip_tests:
        result["tests_gpu"]["summary"] = "not run (--skip-tests)"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
