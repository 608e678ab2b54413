"""Do shapes rewards rank what generators make? Oracle agreement on generated videos, within a prompt and overall.

    .venv/bin/python bench/reward_ranking.py --data outputs/reward_data/heldout.safetensors \
        --reward old=shapes_learned new=shapes_learned:outputs/reward_new analytic=shapes_analytic \
        --out outputs/bench/reward_ranking.json

``--data`` is a `streamvid.distill.shapes_generated` set (several seeds per prompt and generator; make it with
held-out prompts and generators the rewards were not trained on). For every reward and axis:

* ``spearman_overall``: Spearman of reward against oracle over all videos (video level) and over all chunks
  (``chunk``: each 3-frame chunk scored alone, as Stream-T1's short-term reward does, against the oracle's
  reading of that chunk);
* ``spearman_within``: the mean over groups (one prompt, one generator, its seeds) of the within-group Spearman:
  what best-of-N, Stream-T1 and a batch of rollouts see; groups where the oracle ties everywhere are skipped;
* ``best_of_n``: per group, the oracle value of the reward's pick against the group mean and the oracle's best;
  ``headroom`` = mean(pick - mean) / mean(best - mean), the share of the oracle's gain the reward recovers.

Prints a Markdown table and writes JSON; ``--by-generator`` adds the rows per generator.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from streamvid.distill.shapes_generated import AXES, GeneratedSet, load_generated_set
from streamvid.eval.report import bootstrap_ci

CHUNK = 3


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two ``[N]`` tensors (average ranks for ties; 0 if one is constant)."""
    def ranks(x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        order = torch.argsort(x, stable=True)
        r = torch.empty_like(x)
        r[order] = torch.arange(len(x), dtype=torch.float64)
        _, inv, counts = torch.unique(x, return_inverse=True, return_counts=True)
        return (torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inv, r) / counts)[inv]

    ra, rb = ranks(a.flatten()), ranks(b.flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    d = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / d if d > 0 else 0.0


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


def ranking_metrics(pred: torch.Tensor, chunk_pred: torch.Tensor, data: GeneratedSet) -> dict:
    """The metrics of the module docstring for one reward's predictions on ``data``."""
    out: dict = {}
    groups = [torch.nonzero(data.groups == g)[:, 0] for g in data.groups.unique()]
    for k, axis in enumerate(AXES):
        truth = data.axes[:, k]
        within = [spearman(pred[g, k], truth[g]) for g in groups if truth[g].unique().numel() > 1]
        pick = torch.stack([truth[g][pred[g, k].argmax()] for g in groups])
        mean = torch.stack([truth[g].mean() for g in groups])
        best = torch.stack([truth[g].max() for g in groups])
        gain = (pick - mean).tolist()
        lo, hi = bootstrap_ci(gain, n_boot=2000, seed=0)
        out[axis] = {
            "spearman_overall": round(spearman(pred[:, k], truth), 4),
            "spearman_overall_chunk": round(spearman(chunk_pred[..., k].flatten(), data.chunk_axes[..., k].flatten()), 4),
            "spearman_within": round(sum(within) / max(1, len(within)), 4),
            "groups_ranked": len(within),
            "best_of_n": {"pick": round(float(pick.mean()), 4), "mean": round(float(mean.mean()), 4),
                          "oracle_best": round(float(best.mean()), 4),
                          "pick_minus_mean_ci": [round(lo, 4), round(hi, 4)],
                          "headroom": round(float((pick - mean).mean() / (best - mean).mean().clamp_min(1e-8)), 4)},
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--reward", nargs="+", default=["old=shapes_learned", "analytic=shapes_analytic"],
                   help="label=name[:checkpoint dir]")
    p.add_argument("--by-generator", action="store_true")
    p.add_argument("--out", default="outputs/bench/reward_ranking.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = load_generated_set(args.data)
    report: dict = {"data": args.data, "videos": len(data), "groups": int(data.groups.unique().numel()),
                    "generators": sorted(set(data.generators)), "rewards": {}}
    for text in args.reward:
        label, reward = parse_reward(text)
        pred, chunk_pred = score_set(reward, data)
        report["rewards"][label] = {"all": ranking_metrics(pred, chunk_pred, data)}
        if args.by_generator:
            for gen in report["generators"]:
                keep = torch.tensor([g == gen for g in data.generators])
                report["rewards"][label][gen] = ranking_metrics(pred[keep], chunk_pred[keep], data.select(keep))
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
