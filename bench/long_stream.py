"""Streams past the training length: 48-frame, 4-segment held-out streams under plain sampling (issue 18 §3).

    .venv/bin/python bench/long_stream.py --out outputs/bench/long_stream.json \
        --config configs/generate/shapes_long_student.yaml --variant shipped=assets/shapes/dmd_long_student

Every plan streams one held-out colour / shape pair (never trained on) through ``--segments`` single-direction
prompts of ``--segment-chunks`` chunks each (default 4 x 4 chunks of 3 = 48 frames; the students were trained
on 12-frame clips), switched in with the sampler's prompt switch (KV re-cache as configured). The pixel oracle
reads each segment against its own prompt. Variants (``--variant NAME=CHECKPOINT``, with per-variant config
overrides ``--variant-set NAME:KEY=VALUE``, e.g. another cache layout) run the same plans and seeds, so their
differences are paired.

Bars (issue 18 §3): visual and motion of the last segment >= 0.8x the first segment's; direction >= 80 % in every
segment. Writes JSON (per segment means, the ratios, bar verdicts, paired bootstrap CIs against the first variant)
and an optional frame strip (``--strip``) of the first plan, seed 0, every variant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from streamvid.core.cli.generate import GenerateConfig
from streamvid.core.config import load_config
from streamvid.core.generator import build_generator, prompt_vocabulary
from streamvid.core.sampler import PromptSwitch
from streamvid.core.world import WorldConfig
from streamvid.core.world.dataset import colour_shape_pairs
from streamvid.eval.long_streams import segment_plans, segment_scores, switch_integrity
from streamvid.eval.report import seed_mean_ci

KEYS = ("text", "motion", "visual", "colour", "shape", "direction", "integrity", "switch_integrity")


def stream_plans(gen, plans: list[list[str]], segment_chunks: int, seed: int) -> torch.Tensor:
    """``[P, T, 3, H, W]`` pixels of every plan streamed as one batch (row p switches through plan p)."""
    first = [p[0] for p in plans]
    switches = []
    for s in range(1, len(plans[0])):
        text = gen.encode_prompts([p[s] for p in plans])
        switches.append(PromptSwitch(s * segment_chunks, f"segment {s}", text))
    num_frames = len(plans[0]) * segment_chunks * gen.sampler.chunk_frames
    with torch.no_grad():
        return torch.cat(list(gen.stream_video(first, num_frames, seed, prompt_switches=switches)), dim=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/generate/shapes_student.yaml")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=CHECKPOINT",
                   help="a student to stream (repeatable; the first is the baseline of the paired differences)")
    p.add_argument("--variant-set", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="config override of one variant (repeatable), e.g. shipped:generator.sampler.cache.sink_frames=3")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of every variant")
    p.add_argument("--prompts", type=int, default=12)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--segment-chunks", type=int, default=4)
    p.add_argument("--split", default="heldout", help="colour / shape pairs: heldout (never trained on) or train")
    p.add_argument("--out", default="outputs/bench/long_stream.json")
    p.add_argument("--strip", default=None, help="PNG frame strip of the first plan, seed 0, every variant")
    args = p.parse_args()
    torch.set_num_threads(1)
    variants: dict[str, str] = {}
    for item in args.variant or ["shipped=assets/shapes/dmd_long_student"]:
        name, sep, ckpt = item.partition("=")
        if not (name and sep and ckpt) or not Path(ckpt).is_dir():
            p.error(f"--variant {item!r}: expected NAME=CHECKPOINT with an existing checkpoint folder")
        variants[name] = ckpt
    extra: dict[str, list[str]] = {name: [] for name in variants}
    for item in args.variant_set:
        name, sep, kv = item.partition(":")
        if not sep or name not in extra:
            p.error(f"--variant-set {item!r}: expected NAME:KEY=VALUE with NAME one of {list(extra)}")
        extra[name].append(kv)
    pairs = colour_shape_pairs(WorldConfig(), args.split)
    plans = segment_plans(pairs, args.prompts, args.segments)
    seg_frames = args.segment_chunks * 3
    start = time.perf_counter()
    table: dict[str, torch.Tensor] = {}  # variant -> [seeds, prompts, segments, keys]
    strips, configs = {}, {}
    for name, ckpt in variants.items():
        overrides = [*args.overrides, f"generator.checkpoint={ckpt}", *extra[name]]
        cfg = load_config(Path(args.config), overrides, schema=GenerateConfig)
        configs[name] = {"checkpoint": ckpt, "overrides": overrides}
        gen = build_generator(cfg.generator, vocabulary=prompt_vocabulary([q for ps in plans for q in ps]))
        seg_frames = args.segment_chunks * gen.sampler.chunk_frames
        rows = []
        for seed in range(args.seeds):
            pixels = stream_plans(gen, plans, args.segment_chunks, seed=1000 + seed)
            per_plan = []
            for i in range(len(plans)):
                after_switch = switch_integrity(pixels[i], plans[i], seg_frames)  # one value per stream
                per_plan.append([[s[k] for k in KEYS[:-1]] + [after_switch]
                                 for s in segment_scores(pixels[i], plans[i], seg_frames)])
            rows.append(per_plan)
            if seed == 0:
                strips[name] = pixels[0]
        table[name] = torch.tensor(rows, dtype=torch.float64)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)

    summary = {}
    for name, t in table.items():
        seg = t.mean(dim=(0, 1))  # [segments, keys]
        per = {k: [round(float(v), 4) for v in seg[:, i]] for i, k in enumerate(KEYS)}
        ratio = {a: round(float(seg[-1, KEYS.index(a)] / seg[0, KEYS.index(a)]), 3) for a in ("visual", "motion")}
        summary[name] = {"per_segment": per, "last_over_first": ratio,
                         "bars": {"visual_ratio>=0.8": ratio["visual"] >= 0.8,
                                  "motion_ratio>=0.8": ratio["motion"] >= 0.8,
                                  "direction>=0.8_every_segment": min(per["direction"]) >= 0.8}}
    base = next(iter(table))
    paired = {}
    for name in list(table)[1:]:
        d = table[name] - table[base]  # [S, P, segments, keys]
        paired[f"{name} - {base}"] = {
            f"{k}_{where}": seed_mean_ci(d[:, :, s, i].numpy())
            for i, k in enumerate(KEYS) if k in ("visual", "motion", "direction", "text")
            for where, s in (("first", 0), ("last", -1))} | {
            f"{k}_mean": seed_mean_ci(d[:, :, :, KEYS.index(k)].mean(dim=2).numpy())
            for k in ("visual", "motion", "direction", "text", "switch_integrity")}
    out = {"config": args.config, "variants": configs, "prompts": args.prompts, "seeds": args.seeds,
           "segments": args.segments, "segment_frames": seg_frames, "split": args.split, "plans": plans,
           "summary": summary, "paired": paired, "seconds": round(time.perf_counter() - start, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("| variant | " + " | ".join(f"{k} per segment" for k in ("visual", "motion", "direction", "text"))
          + " | visual last/first | motion last/first | integrity after switches |")
    print("|---|" + "---|" * 7)
    for name, s in summary.items():
        print(f"| {name} | " + " | ".join(" / ".join(f"{v:.2f}" for v in s["per_segment"][k])
                                          for k in ("visual", "motion", "direction", "text"))
              + f" | {s['last_over_first']['visual']:.2f} | {s['last_over_first']['motion']:.2f}"
              + f" | {s['per_segment']['switch_integrity'][0]:.2f} |")
    for key, c in paired.items():
        print(f"| {key} | " + ", ".join(f"{k} {v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]" for k, v in c.items()) + " |")
    if args.strip:
        write_strip(strips, plans[0], seg_frames, Path(args.strip))


def write_strip(strips: dict[str, torch.Tensor], plan: list[str], seg_frames: int, path: Path) -> None:
    """One row per variant of every other frame ``[T, 3, H, W]``, segment boundaries marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(strips)
    frames = strips[names[0]].shape[0]
    cols = list(range(0, frames, 2))
    fig, axes = plt.subplots(len(names), len(cols), figsize=(0.55 * len(cols), 0.75 * len(names) + 0.4),
                             squeeze=False)
    for r, name in enumerate(names):
        for c, f in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(strips[name][f].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if f % seg_frames == 0:  # a segment starts: its prompt was switched in here
                ax.spines["left"].set_color("red")
                ax.spines["left"].set_linewidth(2)
            if c == 0:
                ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
            if r == 0:
                ax.set_title(str(f), fontsize=6)
    fig.suptitle(" | ".join(plan), fontsize=7)
    fig.tight_layout(pad=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
