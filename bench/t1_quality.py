"""Quality versus cost of test-time search on the shapes world (docs/results/stream_t1.md).

    .venv/bin/python bench/t1_quality.py --prompts 16 --seeds 1 --budgets 1,4 --out outputs/bench/t1_quality.json
    .venv/bin/python bench/t1_quality.py --replot outputs/bench/t1_quality.json --plot outputs/bench/t1_quality.png

For each of the first ``--prompts`` held-out prompts and each search seed, every strategy (plain 1x, best-of-N,
chunk-greedy, Stream-T1 at each budget in multiples of plain sampling's NFE) searches with the **learned** shapes
reward (``configs/infer/shapes_t1.yaml``: the shipped Stream-R1 student); the **pixel oracle** reads the chosen
video (never the search reward). Also the headroom: best-of-N picked by the oracle at the same budget. Paired
differences (same prompt, same seed) against best-of-N at equal budget get bootstrap 95 % CIs over prompts.
Writes JSON (per-run scores, NFE, wall time; summaries) and prints a Markdown table.
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
from streamvid.core.world import WorldConfig, sample_attributes, score_details
from streamvid.eval.report import seed_mean_ci
from streamvid.tts.cli import InferT1Config
from streamvid.tts.ledger import BudgetLedger
from streamvid.tts.search import best_of_n, chunk_search, plain_config, plan_for_budget

AXES = ("text", "motion", "visual")
PARTS = ("colour", "shape", "direction")


def oracle(pixels: torch.Tensor, prompt: str) -> dict[str, float]:
    r = score_details(pixels, prompt)
    return {**{a: float(getattr(r, a)) for a in AXES}, **{p: float(r.parts.get(p, 0.0)) for p in PARTS}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/infer/shapes_t1.yaml")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--budgets", default="1,4", help="comma list of NFE multiples (1 = plain)")
    p.add_argument("--split", default="heldout")
    p.add_argument("--ablations", action="store_true",
                   help="also Stream-T1 at the largest budget without noise propagation / long-term score / memory")
    p.add_argument("--out", default="outputs/bench/t1_quality.json")
    p.add_argument("--plot", default=None, help="PNG: oracle motion vs NFE and vs wall time per strategy")
    p.add_argument("--replot", default=None, metavar="JSON", help="only draw --plot from an earlier --out JSON")
    args = p.parse_args()
    if args.replot:
        plot(json.loads(Path(args.replot).read_text())["summary"], Path(args.plot or "outputs/bench/t1_quality.png"))
        return
    torch.set_num_threads(1)
    cfg = load_config(Path(args.config), [], schema=InferT1Config)
    prompts = [sample_attributes(WorldConfig(), args.split, i)[1] for i in range(args.prompts)]
    gen = build_generator(cfg.generator, vocabulary=prompt_vocabulary(prompts))
    reward = build_reward(cfg.reward.config())
    budgets = [float(b) for b in args.budgets.split(",")]
    rows = []
    start = time.perf_counter()
    for pi, prompt in enumerate(prompts):
        text = gen.text_encoder.encode([prompt]).embeddings
        common = dict(sampler=gen.sampler, text=text, prompt=prompt, latent_shape=gen.latent_shape,
                      num_frames=cfg.num_frames, reward=reward, codec=gen.codec)
        for seed in range(args.seeds):
            base = 42 + 10_000 * seed
            plans = [("plain@1", plain_config(base), 1)]
            for b in budgets:
                if b > 1:
                    plans += [(f"best_of_n@{b:g}", None, int(b)),
                              (f"greedy@{b:g}", replace(plan_for_budget("greedy", b)[0], seed=base), 1),
                              (f"stream_t1@{b:g}", replace(plan_for_budget("stream_t1", b, cfg.search)[0], seed=base),
                               1)]
            if args.ablations:
                top = max(budgets)
                t1 = replace(plan_for_budget("stream_t1", top, cfg.search)[0], seed=base)
                plans += [(f"stream_t1_no_{switch}@{top:g}", replace(t1, **{switch: False}), 1)
                          for switch in ("noise_propagation", "long_term", "memory_sinking")]
            for name, search, n in plans:
                t0 = time.perf_counter()
                if search is None:
                    result = best_of_n(n=n, seed=base, ledger=BudgetLedger(), **common)
                else:
                    result = chunk_search(cfg=search, ledger=BudgetLedger(), **common)
                wall = time.perf_counter() - t0
                with torch.no_grad():
                    pixels = gen.codec.decode(result.best.video_latents()).clamp(0, 1)[0]
                row = {"prompt": pi, "seed": seed, "strategy": name, "nfe": result.ledger.nfe, "wall_s": round(wall, 3),
                       **oracle(pixels, prompt)}
                rows.append(row)
                if name.startswith("best_of_n"):  # headroom: the oracle (mean of its axes) picks among the same N
                    best = max(result.beams, key=lambda bm: sum(oracle(
                        gen.codec.decode(bm.video_latents()).clamp(0, 1)[0], prompt)[a] for a in AXES))
                    with torch.no_grad():
                        px = gen.codec.decode(best.video_latents()).clamp(0, 1)[0]
                    rows.append({**row, "strategy": name.replace("best_of_n", "oracle_best_of_n"), **oracle(px, prompt)})
        print(f"prompt {pi + 1}/{len(prompts)} done ({time.perf_counter() - start:.0f} s)", flush=True)
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))

    def table(name: str, key: str) -> torch.Tensor:  # [S, P]
        return torch.tensor([[float(next(r[key] for r in rows if r["strategy"] == name and r["prompt"] == pi
                                   and r["seed"] == s)) for pi in range(len(prompts))] for s in range(args.seeds)])

    summary = {name: {k: round(float(table(name, k).mean()), 4) for k in (*AXES, *PARTS, "nfe", "wall_s")}
               for name in strategies}
    paired = {}
    for b in budgets:
        if b <= 1:
            continue
        ref = f"best_of_n@{b:g}"
        others = [f"stream_t1@{b:g}", f"greedy@{b:g}", f"oracle_best_of_n@{b:g}"]
        if args.ablations and b == max(budgets):
            others += [n for n in strategies if n.startswith("stream_t1_no_")]
        for other in others:
            paired[f"{other} - {ref}"] = {k: seed_mean_ci(table(other, k) - table(ref, k)) for k in (*AXES, "direction")}
    result = {"prompts": len(prompts), "seeds": args.seeds, "budgets": budgets, "summary": summary,
              "paired": paired, "rows": rows, "seconds": round(time.perf_counter() - start, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("| strategy | NFE | wall s | " + " | ".join((*AXES, *PARTS)) + " |")
    print("|---|---|---|" + "---|" * (len(AXES) + len(PARTS)))
    for name, s in summary.items():
        print(f"| {name} | {s['nfe']:.0f} | {s['wall_s']:.2f} | " + " | ".join(f"{s[k]:.3f}" for k in (*AXES, *PARTS))
              + " |")
    for name, c in paired.items():
        print(f"| {name} | | | " + " | ".join(f"{c[k][0]:+.3f} [{c[k][1]:+.3f}, {c[k][2]:+.3f}]" for k in (*AXES,))
              + f" | | | {c['direction'][0]:+.3f} |")
    if args.plot:
        plot(summary, Path(args.plot))


FAMILIES = {"plain": "plain", "best_of_n": "best-of-N", "greedy": "chunk-greedy", "stream_t1": "Stream-T1",
            "oracle_best_of_n": "oracle best-of-N (headroom)"}


def plot(summary: dict, path: Path, axis: str = "motion") -> None:
    """Oracle ``axis`` against mean NFE and mean wall seconds, one line per strategy family over the budgets
    (plain sampling, the 1x point, starts every line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    plain = summary.get("plain@1")
    for family, label in FAMILIES.items():
        points = sorted((float(name.split("@")[1]), s) for name, s in summary.items()
                        if name.split("@")[0] == family and family != "plain")
        if family == "plain" or not points:
            continue
        points = ([(1.0, plain)] if plain else []) + points
        style = "--" if family.startswith("oracle") else "-"
        for ax, key in zip(axes, ("nfe", "wall_s"), strict=True):
            ax.plot([s[key] for _, s in points], [s[axis] for _, s in points], style, marker="o", label=label)
    if plain:
        for ax, key in zip(axes, ("nfe", "wall_s"), strict=True):
            ax.scatter([plain[key]], [plain[axis]], color="black", zorder=3, label="plain (1x)")
    axes[0].set(xlabel="NFE per video (denoising steps + commit passes)", ylabel=f"oracle {axis} (held-out)")
    axes[1].set(xlabel="wall seconds per video (1 CPU thread)", ylabel=f"oracle {axis} (held-out)")
    axes[0].legend(fontsize=7)
    fig.suptitle("test-time search on the shapes world: quality vs cost (1x, 2x, 4x, 8x plain NFE)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
