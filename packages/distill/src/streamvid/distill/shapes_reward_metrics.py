"""Evaluation of a learned shapes reward against the oracle: rank correlations on fixed held-out examples.

`heldout_metrics` is the training report written to ``metrics.json`` by ``streamvid-train shapes-reward``;
`spearman` is also what `bench/shapes_rewards.py` compares the learned, analytic and oracle scores with.
`ranking_metrics` reads how a reward ranks *generated* videos (`streamvid.distill.shapes_generated`): overall,
within a prompt (what best-of-N, Stream-T1 and a batch of rollouts see) and as a best-of-N pick.
"""

from __future__ import annotations

import torch
from torch import Tensor

from streamvid.core.rewards.shapes_learned import ShapesRewardNet, encode_prompts
from streamvid.core.world.degenerate import DEGENERATE_AXES, degenerate_examples
from streamvid.distill.shapes_reward_config import ShapesRewardStageConfig
from streamvid.distill.shapes_reward_data import AXES, EVAL_STREAM, make_examples

__all__ = ["degenerate_margins", "heldout_metrics", "predict", "ranking_metrics", "spearman", "spearman_ceiling"]


def _ranks(x: Tensor) -> Tensor:
    """Ranks ``[N]`` (0-based, float64) with ties given their average rank."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty(x.shape[0], dtype=torch.float64)
    ranks[order] = torch.arange(x.shape[0], dtype=torch.float64)
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    sums = torch.zeros(counts.shape[0], dtype=torch.float64).index_add_(0, inverse, ranks)
    return (sums / counts)[inverse]


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two ``[N]`` tensors (Pearson of average ranks; 0 if one is constant)."""
    ra, rb = _ranks(a.flatten().double()), _ranks(b.flatten().double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom > 0 else 0.0


def spearman_ceiling(target: Tensor) -> float:
    """The best Spearman any tie-free predictor can reach against ``target [N]`` (ties cap it below 1)."""
    return spearman(torch.argsort(torch.argsort(target, stable=True)).double(), target)


@torch.no_grad()
def predict(net: ShapesRewardNet, videos: Tensor, prompts: list[str], batch: int = 64) -> Tensor:
    """Axis scores ``[N, 3]`` in [0, 1] (`AXES` order) of ``videos [N, T, 3, H, W]`` against ``N`` prompts."""
    preds = []
    for i in range(0, videos.shape[0], batch):
        ids = encode_prompts(prompts[i : i + batch], videos.shape[1])
        preds.append(torch.sigmoid(net(videos[i : i + batch], ids["colour"], ids["shape"], ids["direction"])))
    return torch.cat(preds)


def heldout_metrics(net: ShapesRewardNet, cfg: ShapesRewardStageConfig) -> dict:
    """Per-axis Spearman with the oracle on fixed held-out examples (``val`` and ``heldout`` splits).

    Headline (``spearman``): for each axis, examples focused on it (`make_example` with ``focus``: clean or
    corrupted on that axis), so that the oracle's many exact ties (every video it finds flawless scores 1)
    stay a minority. ``mixed``: the training mixture, where ties cap Spearman far below 1; each block
    reports ``ceiling``, the best a tie-free predictor can reach on the same targets.
    """
    sizes = {"val": cfg.eval_val, "heldout": cfg.eval_heldout}
    out: dict = {"spearman": {}, "ceiling": {}, "by_split": {s: {} for s in sizes if sizes[s]}, "mae": {}}
    for focus in (*AXES, None):
        k_axes = [AXES.index(focus)] if focus else range(len(AXES))
        preds, truths = [], []
        for split, n in sizes.items():
            if not n:
                continue
            videos, prompts, targets = make_examples(split, range(n), EVAL_STREAM, cfg, focus)
            preds.append(predict(net, videos, prompts))
            truths.append(targets["axes"])
            if focus:
                k = AXES.index(focus)
                out["by_split"][split][focus] = round(spearman(preds[-1][:, k], truths[-1][:, k]), 4)
        pred, truth = torch.cat(preds), torch.cat(truths)
        block = out if focus else out.setdefault("mixed", {"spearman": {}, "ceiling": {}, "mae": {}})
        for k in k_axes:
            block["spearman"][AXES[k]] = round(spearman(pred[:, k], truth[:, k]), 4)
            block["ceiling"][AXES[k]] = round(spearman_ceiling(truth[:, k]), 4)
            block["mae"][AXES[k]] = round(float((pred[:, k] - truth[:, k]).abs().mean()), 4)
    out["eval_examples_per_block"] = sum(sizes.values())
    out["degenerate_margins"] = degenerate_margins(net, cfg.eval_degenerate)
    return out


def degenerate_margins(net: ShapesRewardNet, n: int) -> dict[str, dict[str, float]]:
    """Per degenerate kind: the mean over ``n`` val videos of (clean - degenerate) per axis, and the share of
    videos whose degenerate version scores below the clean one on every axis the kind claims."""
    clean, prompts, kinds = degenerate_examples("val", n)
    base = predict(net, clean, prompts)
    out = {}
    for kind, videos in kinds.items():
        margin = base - predict(net, videos, prompts)  # [n, 3]
        claimed = [AXES.index(a) for a in DEGENERATE_AXES[kind]]
        out[kind] = {a: round(float(margin[:, k].mean()), 4) for k, a in enumerate(AXES)}
        out[kind]["ranked_below"] = round(float((margin[:, claimed] > 0).all(1).float().mean()), 4)
    return out


def ranking_metrics(pred: Tensor, truth: Tensor, groups: Tensor, chunk_pred: Tensor | None = None,
                    chunk_truth: Tensor | None = None) -> dict:
    """How reward predictions ``pred [N, 3]`` rank videos whose oracle scores are ``truth [N, 3]`` (`AXES` order).

    ``groups [N]`` marks videos of one prompt and one generator (its seeds). Per axis:

    * ``spearman_overall`` over all videos, and ``spearman_overall_chunk`` over all chunks when ``chunk_pred``
      / ``chunk_truth [N, C, 3]`` (each chunk scored alone, as Stream-T1's short-term reward) are given;
    * ``spearman_within``: the mean over groups of the within-group Spearman (groups where the oracle ties
      everywhere are skipped; ``groups_ranked`` counts the rest);
    * ``best_of_n``: the oracle value of the reward's pick per group against the group's mean and its best, and
      ``headroom`` = mean(pick - mean) / mean(best - mean), the share of the oracle's gain the reward recovers;
      ``gain`` lists pick - mean per group (for a bootstrap CI).
    """
    members = [torch.nonzero(groups == g)[:, 0] for g in groups.unique()]
    out: dict = {}
    for k, axis in enumerate(AXES):
        y = truth[:, k]
        within = [spearman(pred[g, k], y[g]) for g in members if y[g].unique().numel() > 1]
        pick = torch.stack([y[g][pred[g, k].argmax()] for g in members])
        mean = torch.stack([y[g].mean() for g in members])
        best = torch.stack([y[g].max() for g in members])
        out[axis] = {
            "spearman_overall": round(spearman(pred[:, k], y), 4),
            "spearman_within": round(sum(within) / max(1, len(within)), 4),
            "groups_ranked": len(within),
            "best_of_n": {"pick": round(float(pick.mean()), 4), "mean": round(float(mean.mean()), 4),
                          "oracle_best": round(float(best.mean()), 4),
                          "headroom": round(float((pick - mean).mean() / (best - mean).mean().clamp_min(1e-8)), 4),
                          "gain": [round(float(x), 5) for x in pick - mean]},
        }
        if chunk_pred is not None and chunk_truth is not None:
            out[axis]["spearman_overall_chunk"] = round(spearman(chunk_pred[..., k], chunk_truth[..., k]), 4)
    return out
