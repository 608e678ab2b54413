"""Long multi-segment videos under test-time search: drift with memory sinking on and off (docs/results/stream_t1.md).

    .venv/bin/python bench/t1_long.py --prompts 16 --seeds 3 --out outputs/bench/t1_long.json

Prompt i takes held-out colour / shape pair i mod 3 (the pairs never trained on) and streams ``--segments``
prompt segments of ``--segment-chunks`` chunks each (default 4 x 3 = 12 chunks, 36 latent frames; the student
was trained on 12-frame clips). The directions go out and back along one axis, then along the other (e.g. left,
right, up, down) so the object stays in frame; every segment is its own single-direction prompt, switched in
with LongLive's KV re-cache (`chunk_search(prompt_switches=...)`). Strategies at ``--budget`` x plain NFE: plain
sampling, best-of-N, chunk-greedy, Stream-T1 with memory sinking, without it (evicted chunks dropped), and with
every short-high chunk flagged for the append sink (``tau_long = -1e9``: long_low always holds), all searched
with the **learned** shapes reward (``configs/infer/shapes_t1.yaml``). The **pixel oracle** reads the chosen
video:

* per segment, against that segment's prompt: text / motion / visual, colour and direction accuracy;
* drift curves (``streamvid.eval.drift.windowed_curve``): the oracle's visual and motion scores on windows of one
  segment, stride one chunk; drift = first window minus last.

Paired differences (same prompt and seed) get bootstrap 95 % CIs over prompts. Writes JSON, a plot of the mean
curves (``--plot``) and a frame strip of one prompt (``--strip``), and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from streamvid.core.config import load_config
from streamvid.core.generator import build_generator, prompt_vocabulary
from streamvid.core.rewards import build_reward
from streamvid.core.world import WorldConfig
from streamvid.core.world.dataset import colour_shape_pairs
from streamvid.core.world.oracle import score_details
from streamvid.eval.drift import windowed_curve
from streamvid.eval.long_streams import AXES, segment_plans, segment_scores
from streamvid.eval.report import seed_mean_ci
from streamvid.tts.cli import InferT1Config
from streamvid.tts.ledger import BudgetLedger
from streamvid.tts.search import PromptSwitch, best_of_n, chunk_search, plain_config, plan_for_budget


def drift_curves(pixels: torch.Tensor, prompt: str, window: int, stride: int) -> dict[str, dict]:
    """Oracle visual and motion (one segment's worth of frames per window) through eval's drift metric."""
    out = {}
    for axis in ("visual", "motion"):
        curve = windowed_curve(pixels, lambda f, a=axis: getattr(score_details(f, prompt), a), window=window,
                               stride=stride, higher_is_better=True)
        out[axis] = {"starts": curve.starts, "values": [round(float(v), 4) for v in curve.values],
                     "drift": round(curve.drift, 4)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/infer/shapes_t1.yaml")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--segment-chunks", type=int, default=3)
    p.add_argument("--budget", type=float, default=4.0)
    p.add_argument("--out", default="outputs/bench/t1_long.json")
    p.add_argument("--plot", default=None, help="PNG of the mean per-segment and drift curves")
    p.add_argument("--strip", default=None, help="PNG frame strip of the first prompt, seed 0, every strategy")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(Path(args.config), [], schema=InferT1Config)
    pairs = colour_shape_pairs(WorldConfig(), "heldout")  # the colour / shape pairs never seen in training
    plans = segment_plans(pairs, args.prompts, args.segments)
    gen = build_generator(cfg.generator, vocabulary=prompt_vocabulary([q for ps in plans for q in ps]))
    reward = build_reward(cfg.reward.config())
    chunk = gen.sampler.chunk_frames
    seg_frames = args.segment_chunks * chunk
    num_frames = args.segments * seg_frames
    b = args.budget
    t1 = plan_for_budget("stream_t1", b, cfg.search)[0]
    strategies = {"plain@1": plain_config(), f"best_of_n@{b:g}": None,
                  f"greedy@{b:g}": plan_for_budget("greedy", b)[0], f"stream_t1@{b:g}": t1,
                  f"stream_t1_no_memory@{b:g}": replace(t1, memory_sinking=False),
                  f"stream_t1_always_append@{b:g}": replace(t1, tau_long=-1e9)}
    rows, strips = [], {}
    start = time.perf_counter()
    for pi, prompts in enumerate(plans):
        texts = [gen.text_encoder.encode([q]).embeddings for q in prompts]
        switches = [PromptSwitch(s * args.segment_chunks, prompts[s], texts[s]) for s in range(1, args.segments)]
        common = dict(sampler=gen.sampler, text=texts[0], prompt=prompts[0], latent_shape=gen.latent_shape,
                      num_frames=num_frames, reward=reward, codec=gen.codec, prompt_switches=switches)
        for seed in range(args.seeds):
            base = 42 + 10_000 * seed
            for name, search in strategies.items():
                t0 = time.perf_counter()
                if search is None:
                    result = best_of_n(n=int(b), seed=base, ledger=BudgetLedger(), **common)
                else:
                    result = chunk_search(cfg=replace(search, seed=base), ledger=BudgetLedger(), **common)
                wall = time.perf_counter() - t0
                with torch.no_grad():
                    pixels = gen.codec.decode(result.best.video_latents()).clamp(0, 1)[0]
                segs = segment_scores(pixels, prompts, seg_frames)
                routes = list(result.best.routes.values())
                rows.append({"prompt": pi, "seed": seed, "strategy": name, "nfe": result.ledger.nfe,
                             "wall_s": round(wall, 3), "segments": segs,
                             "curves": drift_curves(pixels, prompts[0], seg_frames, chunk),
                             "routes": {r: routes.count(r) for r in set(routes)},
                             "sink_frames": len(result.best.session.cache.sink_frame_indices)})
                if pi == 0 and seed == 0:
                    strips[name] = pixels
        print(f"prompt {pi + 1}/{len(plans)} done ({time.perf_counter() - start:.0f} s)", flush=True)

    names = list(strategies)

    def seg_table(name: str, key: str, s: int) -> torch.Tensor:  # [S, P]
        return torch.tensor([[next(r["segments"][s][key] for r in rows if r["strategy"] == name and r["prompt"] == pi
                                   and r["seed"] == sd) for pi in range(args.prompts)] for sd in range(args.seeds)])

    def mean_table(name: str, key: str) -> torch.Tensor:
        return torch.stack([seg_table(name, key, s) for s in range(args.segments)]).mean(0)

    def drift_table(name: str, axis: str) -> torch.Tensor:
        return torch.tensor([[next(r["curves"][axis]["drift"] for r in rows if r["strategy"] == name and
                                   r["prompt"] == pi and r["seed"] == sd) for pi in range(args.prompts)]
                             for sd in range(args.seeds)])

    summary = {}
    for name in names:
        sel = [r for r in rows if r["strategy"] == name]
        summary[name] = {
            "nfe": sum(r["nfe"] for r in sel) / len(sel), "wall_s": round(sum(r["wall_s"] for r in sel) / len(sel), 3),
            "per_segment": {k: [round(float(seg_table(name, k, s).mean()), 4) for s in range(args.segments)]
                            for k in (*AXES, "colour", "direction")},
            "mean": {k: round(float(mean_table(name, k).mean()), 4) for k in (*AXES, "colour", "direction")},
            "curves": {a: [round(sum(r["curves"][a]["values"][w] for r in sel) / len(sel), 4)
                           for w in range(len(sel[0]["curves"][a]["values"]))] for a in ("visual", "motion")},
            "drift": {a: round(float(drift_table(name, a).mean()), 4) for a in ("visual", "motion")},
            "routes": {k: sum(r["routes"].get(k, 0) for r in sel) / len(sel)
                       for k in ("append_sink", "ema_sink", "drop")},
            "sink_frames": sum(r["sink_frames"] for r in sel) / len(sel),
        }
    ref = f"best_of_n@{b:g}"
    paired = {}
    for other, base_name in [(f"stream_t1@{b:g}", ref), (f"greedy@{b:g}", ref), (f"stream_t1@{b:g}", "plain@1"),
                             (f"stream_t1@{b:g}", f"stream_t1_no_memory@{b:g}"),
                             (f"stream_t1_always_append@{b:g}", f"stream_t1_no_memory@{b:g}")]:
        key = f"{other} - {base_name}"
        paired[key] = {k: seed_mean_ci(mean_table(other, k) - mean_table(base_name, k)) for k in (*AXES, "direction")}
        paired[key] |= {f"{a}_drift": seed_mean_ci(drift_table(other, a) - drift_table(base_name, a))
                        for a in ("visual", "motion")}
    out = {"prompts": args.prompts, "seeds": args.seeds, "segments": args.segments,
           "segment_chunks": args.segment_chunks, "num_frames": num_frames, "budget": b, "plans": plans,
           "summary": summary, "paired": paired, "rows": rows, "seconds": round(time.perf_counter() - start, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("| strategy | NFE | wall s | " + " | ".join(f"{k} (mean)" for k in (*AXES, "direction"))
          + " | direction per segment | visual drift | motion drift | routes append/ema/drop |")
    print("|---|---|---|" + "---|" * 8)
    for name, s in summary.items():
        print(f"| {name} | {s['nfe']:.0f} | {s['wall_s']:.2f} | "
              + " | ".join(f"{s['mean'][k]:.3f}" for k in (*AXES, "direction"))
              + f" | {' / '.join(f'{v:.2f}' for v in s['per_segment']['direction'])} | {s['drift']['visual']:+.3f}"
              + f" | {s['drift']['motion']:+.3f} | "
              + " / ".join(f"{s['routes'][k]:.1f}" for k in ("append_sink", "ema_sink", "drop")) + " |")
    for key, c in paired.items():
        print(f"| {key} | " + " | ".join(f"{k} {c[k][0]:+.3f} [{c[k][1]:+.3f}, {c[k][2]:+.3f}]" for k in c) + " |")
    if args.plot:
        plot(summary, args, seg_frames, chunk, Path(args.plot))
    if args.strip:
        strip(strips, plans[0], Path(args.strip))


def plot(summary: dict, args, seg_frames: int, chunk: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for name, s in summary.items():
        axes[0].plot(range(1, args.segments + 1), s["per_segment"]["direction"], marker="o", label=name)
        starts = [w * chunk for w in range(len(s["curves"]["visual"]))]
        axes[1].plot(starts, s["curves"]["visual"], label=name)
        axes[2].plot(starts, s["curves"]["motion"], label=name)
    axes[0].set(xlabel="segment", ylabel="oracle direction accuracy", title="direction per segment")
    axes[1].set(xlabel=f"window start (latent frame; window {seg_frames})", ylabel="oracle visual", title="visual drift")
    axes[2].set(xlabel=f"window start (latent frame; window {seg_frames})", ylabel="oracle motion", title="motion drift")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def strip(strips: dict[str, torch.Tensor], prompts: list[str], path: Path) -> None:
    """One row per strategy, every second frame, upscaled 2x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(strips)
    frames = strips[names[0]].shape[0]
    idx = list(range(0, frames, 2))
    fig, axes = plt.subplots(len(names), 1, figsize=(0.55 * len(idx), 0.75 * len(names) + 0.6))
    for ax, name in zip(axes, names, strict=True):
        row = torch.cat([strips[name][i] for i in idx], dim=2)  # [3, H, W * len]
        ax.imshow(row.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(" | ".join(prompts), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
