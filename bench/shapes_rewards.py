"""Agreement of the shapes rewards: learned vs analytic vs oracle, per axis, on held-out examples.

    .venv/bin/python bench/shapes_rewards.py --out outputs/bench/shapes_rewards.json

Uses the same fixed held-out examples as the learned reward's training report
(`streamvid.distill.shapes_reward_data.make_examples`: val + heldout splits, each axis on clean videos and
videos corrupted on that axis, so the oracle's ties on flawless videos stay a minority) and reports per-axis Spearman correlations between the three scorers.

Next to them, the degenerate-set table (`world.degenerate`: blank, constant, noise, static, vanishing, two
objects, blob, wrong colour and direction) and the mild corruptions on ``--clips`` val videos: each scorer's
mean axes per kind, the margin clean - kind per axis, and the share of clips ranked below clean on every axis
the kind claims and on ``score``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from streamvid.core.rewards import AXES, build_reward
from streamvid.core.world import WorldConfig, render_corrupted, sample_attributes, score_batch
from streamvid.core.world.corrupt import CORRUPTION_AXES
from streamvid.core.world.degenerate import DEGENERATE_AXES, degenerate_examples
from streamvid.distill.shapes_reward_config import ShapesRewardStageConfig
from streamvid.distill.shapes_reward_data import EVAL_STREAM, make_examples
from streamvid.distill.shapes_reward_metrics import spearman


def scores(reward, videos: torch.Tensor, prompts: list[str], batch: int = 64) -> torch.Tensor:
    """``[N, 3]`` axis scores in `AXES` order."""
    rows = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            out = reward(videos[i : i + batch], prompts[i : i + batch])
            rows.append(torch.stack([out.axes[a] for a in AXES], dim=1))
    return torch.cat(rows)


def degenerate_table(rewards: dict, clips: int) -> dict:
    """Per scorer and kind: mean axes, margins clean - kind, and the share of clips ranked below clean."""
    clean, prompts, kinds = degenerate_examples("val", clips)
    cfg = WorldConfig()
    attrs = [sample_attributes(cfg, "val", i)[0] for i in range(clips)]
    for kind in CORRUPTION_AXES:
        kinds[f"mild_{kind}"] = torch.stack([render_corrupted(a, kind, cfg, seed=i) for i, a in enumerate(attrs)])
    claims = {k: DEGENERATE_AXES[k] for k in DEGENERATE_AXES} | {f"mild_{k}": (a,) for k, a in CORRUPTION_AXES.items()}

    def axes_and_score(name: str, videos: torch.Tensor) -> torch.Tensor:
        """``[clips, 4]``: the three axes and the score (oracle: the mean of its axes)."""
        if name == "oracle":
            o = score_batch(videos, prompts)
            ax = torch.stack([o[a].float() for a in AXES], 1)
            return torch.cat([ax, ax.mean(1, keepdim=True)], 1)
        with torch.no_grad():
            out = rewards[name](videos, prompts)
        return torch.stack([*(out.axes[a] for a in AXES), out.score], 1)

    table: dict = {}
    for name in ("oracle", *rewards):
        base = axes_and_score(name, clean)
        rows = {"clean": {a: round(float(base[:, k].mean()), 3) for k, a in enumerate((*AXES, "score"))}}
        for kind, videos in kinds.items():
            got = axes_and_score(name, videos)
            margin = base - got
            cols = [AXES.index(a) for a in claims[kind]] + [3]
            rows[kind] = {a: round(float(got[:, k].mean()), 3) for k, a in enumerate((*AXES, "score"))}
            rows[kind]["margin"] = {a: round(float(margin[:, k].mean()), 3) for k, a in enumerate((*AXES, "score"))}
            rows[kind]["claimed_axes"] = list(claims[kind])
            rows[kind]["ranked_below_clean"] = round(float((margin[:, cols] > 0).all(1).float().mean()), 3)
        table[name] = rows
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench/shapes_rewards.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clips", type=int, default=16, help="val clips for the degenerate-set table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ShapesRewardStageConfig()
    analytic, learned = build_reward("shapes_analytic"), build_reward("shapes_learned")
    result: dict = {"examples_per_axis": cfg.eval_val + cfg.eval_heldout, "spearman": {}}
    for axis in AXES:
        k = AXES.index(axis)
        vids, prompts, truth = [], [], []
        for split, n in (("val", cfg.eval_val), ("heldout", cfg.eval_heldout)):
            v, p, t = make_examples(split, range(n), EVAL_STREAM, cfg, axis)
            vids.append(v)
            prompts += p
            truth.append(t["axes"][:, k])
        videos, oracle = torch.cat(vids), torch.cat(truth)
        a, lrn = scores(analytic, videos, prompts)[:, k], scores(learned, videos, prompts)[:, k]
        result["spearman"][axis] = {
            "learned_vs_analytic": round(spearman(lrn, a), 4),
            "learned_vs_oracle": round(spearman(lrn, oracle), 4),
            "analytic_vs_oracle": round(spearman(a, oracle), 4),
        }
    result["degenerate"] = degenerate_table({"analytic": analytic, "learned": learned}, args.clips)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["spearman"], indent=2))
    print(f"{'kind':24} " + "  ".join(f"{n + ' v/m/t (ranked)':>26}" for n in result["degenerate"]))
    for kind in result["degenerate"]["oracle"]:
        cells = []
        for rows in result["degenerate"].values():
            r = rows[kind]
            rank = f" ({r['ranked_below_clean']:.2f})" if "ranked_below_clean" in r else ""
            cells.append("/".join(f"{r[a]:.2f}" for a in AXES) + rank)
        print(f"{kind:24} " + "  ".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main()
