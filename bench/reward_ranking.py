"""Do shapes rewards rank what generators make? Oracle agreement on generated videos, within a prompt and overall.

    .venv/bin/python bench/reward_ranking.py --data outputs/reward_data/heldout_r1.safetensors \
        --reward shipped=shapes_learned other=shapes_learned:outputs/train/shapes_reward_rendered analytic=shapes_analytic \
        --out outputs/bench/reward_ranking.json

``--data`` is a `streamvid.distill.shapes_generated` set (several seeds per prompt and generator; make it with
held-out prompts and generators the rewards were not trained on). For every reward and axis the metrics of
`streamvid.distill.shapes_reward_metrics.ranking_metrics` (Spearman overall at video and chunk level, within a
prompt, best-of-N pick vs mean vs the oracle's best and the headroom recovered) and a percentile-bootstrap CI
of the best-of-N gain over groups.

Prints a Markdown table and writes JSON; ``--by-generator`` adds the rows per generator.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from streamvid.distill.shapes_generated import AXES, GeneratedSet, load_generated_set
from streamvid.distill.shapes_reward_metrics import ranking_metrics
from streamvid.eval.report import bootstrap_ci

CHUNK = 3


def parse_reward(text: str):
    """``label=name[:path]`` -> (label, built reward)."""
    from streamvid.core.rewards import build_reward

    label, _, spec = text.partition("=")
    name, _, path = spec.partition(":")
    return label, build_reward(name, **({"path": path} if path else {}))


@torch.no_grad()
def score_set(reward, data: GeneratedSet, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward axes of every video ``[N, 3]`` and of every chunk alone ``[N, C, 3]`` (`AXES` order)."""
    video_scores, chunk_scores = [], []
    for i in range(0, len(data), batch):
        pixels, prompts = data.pixels(slice(i, i + batch)), data.prompts[i : i + batch]
        out = reward(pixels, prompts)
        video_scores.append(torch.stack([out.axes[a] for a in AXES], -1))
        per_chunk = []
        for s in range(0, pixels.shape[1], CHUNK):
            o = reward(pixels[:, s : s + CHUNK].contiguous(), prompts)
            per_chunk.append(torch.stack([o.axes[a] for a in AXES], -1))
        chunk_scores.append(torch.stack(per_chunk, 1))
    return torch.cat(video_scores).float(), torch.cat(chunk_scores).float()


def reward_rows(pred: torch.Tensor, chunk_pred: torch.Tensor, data: GeneratedSet) -> dict:
    """`ranking_metrics` of one reward on ``data``, with a bootstrap CI of the best-of-N gain per axis."""
    rows = ranking_metrics(pred, data.axes, data.groups, chunk_pred, data.chunk_axes)
    for m in rows.values():
        lo, hi = bootstrap_ci(m["best_of_n"].pop("gain"), n_boot=2000, seed=0)
        m["best_of_n"]["pick_minus_mean_ci"] = [round(lo, 4), round(hi, 4)]
    return rows


def scatter(scores: dict[str, torch.Tensor], data: GeneratedSet, path: Path) -> None:
    """One panel per reward (rows) and axis (columns): reward against oracle, every video a dot; the title gives
    the overall and the within-prompt Spearman."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scores), len(AXES), figsize=(3.0 * len(AXES), 2.8 * len(scores)), squeeze=False)
    for row, (label, pred) in zip(axes, scores.items()):
        m = ranking_metrics(pred, data.axes, data.groups)
        for ax, (k, axis) in zip(row, enumerate(AXES)):
            ax.scatter(data.axes[:, k], pred[:, k], s=4, alpha=0.4)
            ax.set_title(f"{label} {axis}: rho {m[axis]['spearman_overall']:.2f}, within "
                         f"{m[axis]['spearman_within']:.2f}", fontsize=8)
            ax.set_xlabel("oracle", fontsize=8)
            ax.set_ylabel("reward", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--reward", nargs="+", default=["shipped=shapes_learned", "analytic=shapes_analytic"],
                   help="label=name[:checkpoint dir]")
    p.add_argument("--by-generator", action="store_true")
    p.add_argument("--scatter", default=None, help="PNG: reward against oracle per reward (rows) and axis (columns)")
    p.add_argument("--out", default="outputs/bench/reward_ranking.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = load_generated_set(args.data)
    report: dict = {"data": args.data, "videos": len(data), "groups": int(data.groups.unique().numel()),
                    "generators": sorted(set(data.generators)), "rewards": {}}
    scores: dict[str, torch.Tensor] = {}
    for text in args.reward:
        label, reward = parse_reward(text)
        pred, chunk_pred = score_set(reward, data)
        report["rewards"][label] = {"all": reward_rows(pred, chunk_pred, data)}
        if args.by_generator:
            for gen in report["generators"]:
                keep = torch.tensor([g == gen for g in data.generators])
                report["rewards"][label][gen] = reward_rows(pred[keep], chunk_pred[keep], data.select(keep))
        scores[label] = pred
    if args.scatter:
        scatter(scores, data, Path(args.scatter))
    report["seconds"] = round(time.perf_counter() - start, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print("| reward | axis | Spearman overall (video / chunk) | within prompt | best-of-N pick / mean / best | headroom |")
    print("|---|---|---|---|---|---|")
    for label, rows in report["rewards"].items():
        for axis, m in rows["all"].items():
            b = m["best_of_n"]
            print(f"| {label} | {axis} | {m['spearman_overall']:.3f} / {m['spearman_overall_chunk']:.3f} | "
                  f"{m['spearman_within']:.3f} | {b['pick']:.3f} / {b['mean']:.3f} / {b['oracle_best']:.3f} | "
                  f"{b['headroom']:.0%} |")


if __name__ == "__main__":
    main()
