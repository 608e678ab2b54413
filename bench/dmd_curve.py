"""Held-out oracle curve of a long DMD run: every kept student of ``<run>/snapshots/step_N`` read by the oracle.

    .venv/bin/python bench/dmd_curve.py --run outputs/experiments/shapes/dmd_long --out outputs/bench/dmd_curve.json

Each snapshot (written by ``streamvid-train r1`` with ``snapshot_every``) and the start student stream the same
``--prompts`` held-out prompts with the same noise (``--noise-seed``) through the KV cache with the 4-step
sampler, exactly as ``streamvid-generate`` does; the **pixel oracle** reads them: text / motion / visual and
colour / shape / direction accuracy, the seam ratio (frame change across chunk boundaries over inside chunks)
and the background per chunk (`streamvid.core.world.chunk_background`: the later chunks' background noise over
the first chunk's, and how far their background colour moves from the first chunk's). The teacher (20 Euler
steps, CFG 2) is the reference line. Several ``--run`` folders (e.g. bf16 and fp32) go into one JSON and one
plot. Results of snapshots already in ``--out`` are kept, so a re-run reads only the new ones.
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
from streamvid.core.world import WorldConfig, chunk_background, sample_attributes
from streamvid.distill.networks import load_model_dir
from streamvid.distill.shapes_eval import evaluate_videos, sample_student, sample_teacher, seam_ratio

CURVES = ("text", "motion", "visual", "shape", "direction", "seam_ratio", "background_noise_ratio")


def read_videos(videos: torch.Tensor, prompts: list[str], chunk_frames: int) -> dict[str, float]:
    """Oracle means of ``videos [N, T, 3, H, W]``: the three scores, the three accuracies, seams, background."""
    metrics, _ = evaluate_videos(videos, prompts)
    backgrounds = [chunk_background(v, chunk_frames) for v in videos]
    first = torch.stack([b.noise[0] for b in backgrounds])
    later = torch.stack([b.noise[1:].mean() for b in backgrounds])
    return {
        "text": metrics["mean_text"], "motion": metrics["mean_motion"], "visual": metrics["mean_visual"],
        "colour": metrics["colour_accuracy"], "shape": metrics["shape_accuracy"],
        "direction": metrics["direction_accuracy"],
        "seam_ratio": round(seam_ratio(videos, chunk_frames), 4),
        "background_noise_first": round(float(first.mean()), 5),
        "background_noise_later": round(float(later.mean()), 5),
        "background_noise_ratio": round(float(later.mean() / first.mean().clamp_min(1e-4)), 4),
        "background_level_shift": round(sum(b.level_shift() for b in backgrounds) / len(backgrounds), 5),
    }


def _starts_at_zero(run: Path) -> bool:
    """False for a run resumed from another run's checkpoint (``resume: <file>``): its curve starts there."""
    import yaml

    config = run / "train_config.yaml"
    resume = yaml.safe_load(config.read_text()).get("resume", "auto") if config.is_file() else "auto"
    return resume in ("auto", "never")


def plot(report: dict, path: Path) -> None:
    """One panel per curve against optimiser steps, a line per run, the teacher dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(3.1 * len(CURVES), 2.8))
    for ax, key in zip(axes, CURVES):
        for name, run in report["runs"].items():
            steps = sorted(run, key=int)
            ax.plot([int(s) for s in steps], [run[s][key] for s in steps], marker=".", label=name)
        if key in report.get("teacher", {}):
            ax.axhline(report["teacher"][key], color="k", ls="--", lw=1, label="teacher")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("optimiser step", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", nargs="+", default=["outputs/experiments/shapes/dmd_long"],
                   help="run output folders holding snapshots/step_N (label = folder name)")
    p.add_argument("--start", default="assets/shapes/student", help="the student the runs started from (step 0)")
    p.add_argument("--teacher", default="assets/shapes/teacher")
    p.add_argument("--sampler", default="configs/sampler/self_forcing.yaml")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--out", default="outputs/bench/dmd_curve.json")
    p.add_argument("--plot", default=None, help="PNG of the curves (default: --out with .png)")
    args = p.parse_args()
    torch.set_num_threads(1)
    start_time = time.perf_counter()
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    if report.get("prompts") != args.prompts or report.get("noise_seed") != args.noise_seed:
        report = {"prompts": args.prompts, "noise_seed": args.noise_seed, "split": "heldout", "runs": {}}
    prompts = [sample_attributes(WorldConfig(), "heldout", i)[1] for i in range(args.prompts)]
    sampler = load_config(args.sampler, schema=SamplerConfig)
    chunk = sampler.cache.chunk_frames
    if "teacher" not in report:
        teacher = load_model_dir(args.teacher, "--teacher").eval()
        videos = sample_teacher(teacher, prompts, teacher.config.text_dim, seed=args.noise_seed)
        report["teacher"] = read_videos(videos, prompts, chunk)
        print("teacher:", report["teacher"], flush=True)
    start_model = load_model_dir(args.start, "--start").eval()
    start_row = read_videos(sample_student(start_model, sampler, prompts, seed=args.noise_seed), prompts, chunk)
    for run in map(Path, args.run):
        rows = report["runs"].setdefault(run.name, {})
        if _starts_at_zero(run):
            rows["0"] = start_row
        for snap in sorted((run / "snapshots").glob("step_*")):
            m = re.fullmatch(r"step_(\d+)", snap.name)
            if not m or str(int(m[1])) in rows or not (snap / "config.json").is_file():
                continue
            model = load_model_dir(snap, str(snap)).eval()
            rows[str(int(m[1]))] = read_videos(sample_student(model, sampler, prompts, seed=args.noise_seed),
                                               prompts, chunk)
            print(f"{run.name} step {int(m[1])}:", rows[str(int(m[1]))], flush=True)
    report["seconds"] = round(time.perf_counter() - start_time, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, Path(args.plot) if args.plot else out.with_suffix(".png"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
