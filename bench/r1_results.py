"""Held-out evaluation of shapes-world DMD / Stream-R1 students with paired bootstrap CIs (docs/results/stream_r1.md).

    .venv/bin/python bench/r1_results.py --runs outputs/experiments/shapes --out outputs/bench/r1_results.json

Every student (``<runs>/<row>_s<seed>/``, a diffusers directory written by ``streamvid-train r1``) streams the
same ``--prompts`` held-out prompts with the same noise (seed ``--noise-seed``) through the KV cache with its
4-step sampler; the **pixel oracle** (never the training reward) reads each video: text / motion / visual scores
and colour / shape / direction correctness. The teacher and the ODE-init student are reference rows.

Comparisons are paired: row A seed s and row B seed s saw the same prompt p with the same noise, so the unit is
d[s, p] = score_A - score_B; the 95 % CI of mean_{s,p} d is the eval suite's percentile bootstrap
(`bootstrap_ci`) over prompts of the seed-averaged differences. Writes JSON (per-row means, per-comparison
CIs) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from streamvid.core.config import load_config
from streamvid.core.sampler_config import SamplerConfig
from streamvid.core.world import WorldConfig, sample_attributes
from streamvid.distill.networks import load_model_dir
from streamvid.distill.shapes_eval import evaluate_videos, sample_student, sample_teacher
from streamvid.eval.report import bootstrap_ci

METRICS = ("text", "motion", "visual", "colour", "shape", "direction")


def per_video(videos: torch.Tensor, prompts: list[str]) -> dict[str, list[float]]:
    """Oracle readings per video: the three scores and the three correctness indicators."""
    _, rows = evaluate_videos(videos, prompts)
    out = {k: [float(getattr(r, k)) for r in rows] for k in ("text", "motion", "visual")}
    out |= {k: [float(r.parts.get(k, 0.0)) for r in rows] for k in ("colour", "shape", "direction")}
    return out


def bootstrap_diff(a: torch.Tensor, b: torch.Tensor, n: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95 % CI of mean(a - b) for paired ``[S, P]`` scores: the eval suite's percentile bootstrap
    (`bootstrap_ci`) over prompts of the per-prompt differences averaged over seeds."""
    per_prompt = (a - b).double().mean(dim=0).tolist()
    lo, hi = bootstrap_ci(per_prompt, n_boot=n, seed=seed)
    return float((a - b).double().mean()), lo, hi


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="outputs/experiments/shapes")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--split", default="heldout", choices=("heldout", "val"))
    p.add_argument("--student", default="assets/shapes/student", help="the ODE-init student (reference row)")
    p.add_argument("--teacher", default="assets/shapes/teacher", help="the teacher (reference row)")
    p.add_argument("--compare", nargs="*", default=["stream_r1:dmd"], metavar="A:B",
                   help="paired comparisons A - B of rows with the same seeds")
    p.add_argument("--out", default="outputs/bench/r1_results.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    prompts = [sample_attributes(WorldConfig(), args.split, i)[1] for i in range(args.prompts)]
    sampler = load_config("configs/sampler/self_forcing.yaml", schema=SamplerConfig)
    scores: dict[str, dict[int, dict[str, list[float]]]] = {}
    for run in sorted(Path(args.runs).iterdir()):
        m = re.fullmatch(r"(.+)_s(\d+)", run.name)
        if not (m and run.is_dir() and (run / "config.json").is_file()):
            continue
        model = load_model_dir(run, str(run)).eval()
        videos = sample_student(model, sampler, prompts, seed=args.noise_seed)
        scores.setdefault(m[1], {})[int(m[2])] = per_video(videos, prompts)
        print(f"{run.name}: " + ", ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in scores[m[1]][int(m[2])].items()),
              flush=True)
    student = load_model_dir(args.student, "student").eval()
    scores["ode_init_student"] = {0: per_video(sample_student(student, sampler, prompts, seed=args.noise_seed),
                                               prompts)}
    teacher = load_model_dir(args.teacher, "teacher").eval()
    scores["teacher"] = {0: per_video(sample_teacher(teacher, prompts, teacher.config.text_dim,
                                                     seed=args.noise_seed), prompts)}

    def table(row: str) -> dict[str, torch.Tensor]:  # metric -> [S, P]
        seeds = sorted(scores[row])
        return {k: torch.tensor([scores[row][s][k] for s in seeds]) for k in METRICS}

    rows = {row: {"seeds": sorted(scores[row]), **{k: round(float(v.mean()), 4) for k, v in table(row).items()}}
            for row in scores}
    comparisons = {}
    for pair in args.compare:
        a, b = pair.split(":")
        if a not in scores or b not in scores:
            continue
        seeds = sorted(set(scores[a]) & set(scores[b]))
        ta = {k: torch.tensor([scores[a][s][k] for s in seeds]) for k in METRICS}
        tb = {k: torch.tensor([scores[b][s][k] for s in seeds]) for k in METRICS}
        comparisons[pair] = {"seeds": seeds, **{k: [round(x, 4) for x in bootstrap_diff(ta[k], tb[k])]
                                                for k in METRICS}}
    result = {"split": args.split, "prompts": args.prompts, "noise_seed": args.noise_seed, "rows": rows,
              "comparisons": comparisons, "per_video": scores, "seconds": round(time.perf_counter() - start, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result))
    print("| row | seeds | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for row, r in rows.items():
        print(f"| {row} | {len(r['seeds'])} | " + " | ".join(f"{r[k]:.3f}" for k in METRICS) + " |")
    for pair, c in comparisons.items():
        print(f"| {pair} (mean [95 % CI]) | {len(c['seeds'])} | "
              + " | ".join(f"{c[k][0]:+.3f} [{c[k][1]:+.3f}, {c[k][2]:+.3f}]" for k in METRICS) + " |")


if __name__ == "__main__":
    main()
