"""Agreement of the shapes rewards: learned vs analytic vs oracle, per axis, on held-out examples.

    .venv/bin/python bench/shapes_rewards.py --out outputs/bench/shapes_rewards.json

Uses the same fixed held-out examples as the learned reward's training report (`train_reward.make_examples`:
val + heldout splits, each axis on clean videos and videos corrupted on that axis, so the oracle's ties on
flawless videos stay a minority) and reports per-axis Spearman correlations between the three scorers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from streamvid.core.rewards import build_reward
from streamvid.core.world.train_reward import AXES, EVAL_STREAM, TrainRewardConfig, make_examples, spearman


def scores(reward, videos: torch.Tensor, prompts: list[str], batch: int = 64) -> torch.Tensor:
    """``[N, 3]`` axis scores in `AXES` order."""
    rows = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            out = reward(videos[i : i + batch], prompts[i : i + batch])
            rows.append(torch.stack([out.axes[a] for a in AXES], dim=1))
    return torch.cat(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench/shapes_rewards.json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainRewardConfig()
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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
