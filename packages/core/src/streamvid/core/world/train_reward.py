"""Train `ShapesLearnedReward` on CPU: ``python -m streamvid.core.world.train_reward --out DIR [--minutes 8]``.

Ground truth is the **oracle** (`world.oracle.score`), not `ShapesAnalyticReward`: the oracle is what defines
the three axes, and the analytic reward is itself an approximation of it. Examples are made on the fly:

- a video from `ShapesDataset`'s attribute sampler (``train`` split; a quarter of them with two motion
  segments), rendered clean, with one corruption of `CORRUPTION_AXES` at a random strength (up to heavy:
  noise sigma 0.4, all but one frame frozen), or (``p_degenerate``) as one of the degenerate videos of
  `world.degenerate` (blank, constant, noise, static, vanishing, two objects, blob, ...), so that the reward
  ranks what a half-trained generator makes below good videos;
- its prompt, in a random phrasing, or (with ``p_wrong_prompt``) a wrong one: colour, shape and/or some
  segment directions changed, so ``text`` takes all its levels;
- targets: the oracle's ``(visual, motion, text)`` of that video against that prompt, and its readings
  (colour, shape, direction per segment) of the video.

Training keeps a pool of examples and replaces ``fresh_per_step`` of them per step (each example is seen
about ``batch_size / fresh_per_step`` times), AdamW with a cosine schedule, and a binary cross-entropy of
the sigmoid outputs against the soft targets, plus auxiliary cross-entropies for the colour, shape and
per-frame direction the oracle reads from the video (the text axis is built from those three classifiers,
see `ShapesRewardNet`). Evaluation (`heldout_metrics`) draws fixed held-out sets (``val`` and ``heldout``
splits) and reports the per-axis Spearman correlation with the oracle.

Everything is deterministic given the seed and ``steps`` (for a given torch build and thread count);
``minutes`` is a safety cap: hitting it ends training early and is recorded in ``metrics.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from streamvid.core.world.corrupt import CORRUPTION_AXES, render_corrupted
from streamvid.core.world.dataset import SPLITS, sample_attributes
from streamvid.core.world.degenerate import DEGENERATE_AXES, degenerate_examples, render_degenerate
from streamvid.core.world.learned_reward import (
    WEIGHTS_FILE,
    ShapesLearnedReward,
    ShapesRewardNet,
    ShapesRewardNetConfig,
    encode_prompts,
    save_reward_net,
)
from streamvid.core.world.oracle import score_details
from streamvid.core.world.prompts import PromptSpec, generate_prompt
from streamvid.core.world.render import DIRECTIONS, PALETTE, SHAPES, WorldConfig, render, segment_frame_ranges

__all__ = ["STRENGTHS", "TrainRewardConfig", "heldout_metrics", "main", "make_examples", "spearman", "train"]

AXES = ShapesLearnedReward.axes
STRENGTHS: dict[str, tuple[float, float]] = {
    "jitter": (0.1, 3.0),
    "frozen": (1, 10),
    "blur": (0.3, 2.5),
    "noise": (0.01, 0.4),
}
"""Corruption kind -> (low, high) of the uniformly drawn ``strength`` (``frozen``: integer frames)."""
EVAL_STREAM = 1_000_003  # the evaluation set does not depend on the training seed


@dataclass
class TrainRewardConfig:
    """Settings of one training run of the learned shapes reward."""

    seed: int = 0
    """Seeds the example stream, the initialisation and the batch order."""
    steps: int = 1000
    """Optimiser steps (the schedule's length)."""
    minutes: float = 8.0
    """Wall-clock cap on data making + training (evaluation excluded); ends training early if hit."""
    batch_size: int = 32
    """Examples per step."""
    pool_size: int = 1024
    """Examples kept in the training pool."""
    fresh_per_step: int = 8
    """Pool examples replaced by new ones every step."""
    lr: float = 2e-3
    """Peak AdamW learning rate (linear warm-up over 5 % of the steps, then cosine to 0)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    aux_weight: float = 0.3
    """Weight of the auxiliary colour / shape / direction cross-entropies (labels: the oracle's readings)."""
    p_clean: float = 0.3
    """Probability that a video is left uncorrupted."""
    p_degenerate: float = 0.15
    """Probability that a video is one of the degenerate kinds of `world.degenerate` (uniform over kinds)."""
    p_wrong_prompt: float = 0.25
    """Probability that a video is paired with a wrong prompt."""
    p_two_segments: float = 0.25
    """Probability of a two-segment video ("moving left, then up")."""
    eval_val: int = 192
    """Held-out examples per evaluation block (one per axis, one mixed) from the ``val`` split."""
    eval_degenerate: int = 32
    """Val videos whose degenerate versions are scored against them (`degenerate_margins`)."""
    eval_heldout: int = 64
    """Held-out examples per evaluation block from the ``heldout`` split (unseen colour-shape pairs)."""
    net: ShapesRewardNetConfig = field(default_factory=ShapesRewardNetConfig)
    """Network sizes."""


def _wrong_prompt(spec: PromptSpec, rng: np.random.Generator) -> PromptSpec:
    """``spec`` with its colour, shape and/or some directions changed (at least one of the three)."""
    change = rng.random(3) < 0.5
    if not change.any():
        change[rng.integers(3)] = True
    colour, shape, segments = spec.colour, spec.shape, list(spec.segments)
    if change[0]:
        colour = str(rng.choice([c for c in PALETTE if c != colour]))
    if change[1]:
        shape = str(rng.choice([s for s in SHAPES if s != shape]))
    if change[2]:
        flip = rng.random(len(segments)) < 0.5
        flip[rng.integers(len(segments))] = True
        segments = [
            str(rng.choice([d for d in DIRECTIONS if d != s])) if f else s for s, f in zip(segments, flip)
        ]
    return PromptSpec(colour, shape, tuple(segments))


def make_example(
    split: str, index: int, stream: int, cfg: TrainRewardConfig, focus: str | None = None
) -> tuple[Tensor, str, int]:
    """Example ``index`` of a stream -> (video ``[T, 3, H, W]``, prompt, number of motion segments).

    ``focus=None`` draws the training mixture (``p_clean``, any corruption, ``p_wrong_prompt``). ``focus`` an
    axis draws an evaluation example for that axis: clean with probability 1/3, else one of the
    corruptions that lower it (for ``text``: wrong colour, wrong direction or a wrong prompt). Deterministic in
    ``(split, index, stream, focus)``; the dataset item and every random choice derive from them.
    """
    rng = np.random.default_rng([stream, SPLITS.index(split), index, AXES.index(focus) + 1 if focus else 0])
    world = WorldConfig(num_segments=2 if rng.random() < cfg.p_two_segments else 1)
    attrs, prompt = sample_attributes(world, split, int(rng.integers(2**31)))
    if focus is None:
        kind = "clean" if rng.random() < cfg.p_clean else str(rng.choice(list(CORRUPTION_AXES)))
        if rng.random() < cfg.p_degenerate:
            kind = str(rng.choice(list(DEGENERATE_AXES)))
        wrong = rng.random() < cfg.p_wrong_prompt
    else:
        kinds = [k for k, a in CORRUPTION_AXES.items() if a == focus] + (["wrong_prompt"] * (focus == "text"))
        kind = "clean" if rng.random() < 1 / 3 else str(rng.choice(kinds))
        wrong = kind == "wrong_prompt"
        kind = "clean" if wrong else kind
    seed = int(rng.integers(2**31))
    if kind == "clean":
        video = render(attrs, world)
    elif kind in DEGENERATE_AXES:
        video = render_degenerate(attrs, kind, world, seed=seed)
    else:
        lo, hi = STRENGTHS.get(kind, (0.0, 0.0))
        strength = (
            float(rng.integers(int(lo), int(hi) + 1)) if kind == "frozen" else float(rng.uniform(lo, hi))
        )
        video = render_corrupted(attrs, kind, world, seed=seed, strength=strength if hi else None)
    if wrong:
        spec = PromptSpec(attrs.colour, attrs.shape, attrs.directions)
        prompt = generate_prompt(_wrong_prompt(spec, rng), seed)
    return video, prompt, world.num_segments


def make_examples(
    split: str, indices: range | list[int], stream: int, cfg: TrainRewardConfig, focus: str | None = None
) -> tuple[Tensor, list[str], dict[str, Tensor]]:
    """Examples (`make_example`) -> (videos ``[N, T, 3, H, W]``, ``N`` prompts, oracle targets).

    Targets: ``axes [N, 3]`` (oracle scores in `AXES` order) and the oracle's readings of the video as
    auxiliary labels, ``colour [N]``, ``shape [N]``, ``direction [N, T]`` (per frame, from the measured
    direction of the video's segment; -100 where the oracle found none).
    """
    videos, prompts = [], []
    rows: dict[str, list] = {"axes": [], "colour": [], "shape": [], "direction": []}
    for i in indices:
        video, prompt, num_segments = make_example(split, i, stream, cfg, focus)
        truth = score_details(video, prompt)
        reading = truth.reading
        videos.append(video)
        prompts.append(prompt)
        rows["axes"].append([getattr(truth, a) for a in AXES])
        rows["colour"].append(list(PALETTE).index(reading.colour) if reading.colour else -100)
        rows["shape"].append(SHAPES.index(reading.shape) if reading.shape else -100)
        frames = [-100] * video.shape[0]
        dirs = reading.segment_directions(num_segments)
        for (a, b), name in zip(segment_frame_ranges(video.shape[0], num_segments), dirs):
            frames[a:b] = [list(DIRECTIONS).index(name) if name else -100] * (b - a)
        rows["direction"].append(frames)
    targets = {
        k: torch.tensor(v, dtype=torch.float32 if k == "axes" else torch.long) for k, v in rows.items()
    }
    return torch.stack(videos), prompts, targets


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


def reward_loss(out: dict[str, Tensor], targets: dict[str, Tensor], aux_weight: float) -> Tensor:
    """Binary cross-entropy of the axis logits against the oracle scores, plus ``aux_weight`` times the
    cross-entropies of the colour, shape and per-frame direction logits against the oracle's readings."""
    loss = F.binary_cross_entropy_with_logits(out["logits"], targets["axes"])
    aux = (
        F.cross_entropy(out["colour"], targets["colour"])
        + F.cross_entropy(out["shape"], targets["shape"])
        + F.cross_entropy(out["direction"].flatten(0, 1), targets["direction"].flatten())
    )
    return loss + aux_weight * aux


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


def heldout_metrics(net: ShapesRewardNet, cfg: TrainRewardConfig) -> dict:
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


def train(cfg: TrainRewardConfig, progress: bool = True) -> tuple[ShapesRewardNet, dict]:
    """Train a `ShapesRewardNet` -> (net in eval mode, metrics dict with ``loss`` history and eval results)."""
    start = time.monotonic()
    deadline = start + 60 * cfg.minutes
    torch.manual_seed(cfg.seed)
    net = ShapesRewardNet(cfg.net)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.steps // 20)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, cfg.steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    pool_v, pool_p, pool_t = make_examples("train", range(cfg.pool_size), cfg.seed, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    made, losses, stopped_early = cfg.pool_size, [], False
    bar = tqdm(range(cfg.steps), desc="shapes reward", disable=not progress)
    for _ in bar:
        if time.monotonic() > deadline:
            stopped_early = True
            break
        if cfg.fresh_per_step:
            v, p, t = make_examples("train", range(made, made + cfg.fresh_per_step), cfg.seed, cfg)
            slots = [(made + j) % cfg.pool_size for j in range(cfg.fresh_per_step)]
            pool_v[slots] = v
            for key, value in t.items():
                pool_t[key][slots] = value
            for s, prompt in zip(slots, p):
                pool_p[s] = prompt
            made += cfg.fresh_per_step
        idx = torch.randperm(cfg.pool_size, generator=gen)[: cfg.batch_size]
        ids = encode_prompts([pool_p[i] for i in idx.tolist()], pool_v.shape[1])
        out = net.train().heads(pool_v[idx], ids["colour"], ids["shape"], ids["direction"])
        loss = reward_loss(out, {k: v[idx] for k, v in pool_t.items()}, cfg.aux_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    train_minutes = (time.monotonic() - start) / 60
    net.eval()
    metrics: dict = {
        "ground_truth": "oracle (streamvid.core.world.oracle.score)",
        "steps_done": len(losses),
        "stopped_early": stopped_early,
        "examples_made": made,
        "train_minutes": round(train_minutes, 2),
        "loss": [round(x, 5) for x in losses],
    }
    if cfg.eval_val or cfg.eval_heldout:
        metrics.update(heldout_metrics(net, cfg))
    return net, metrics


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point: train, then write ``reward.safetensors``, ``reward.json`` and ``metrics.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--minutes", type=float, default=TrainRewardConfig.minutes, help="wall-clock cap")
    parser.add_argument("--seed", type=int, default=TrainRewardConfig.seed)
    parser.add_argument("--steps", type=int, default=TrainRewardConfig.steps)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainRewardConfig(seed=args.seed, steps=args.steps, minutes=args.minutes)
    net, metrics = train(cfg)
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "net"}
    out = save_reward_net(net, args.out, {"ground_truth": metrics["ground_truth"], "train": settings})
    metrics["checkpoint_bytes"] = (out / WEIGHTS_FILE).stat().st_size
    metrics["threads"] = torch.get_num_threads()
    losses = metrics.pop("loss")
    metrics["loss_per_25_steps"] = [
        round(float(np.mean(losses[i : i + 25])), 4) for i in range(0, len(losses), 25)
    ]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    summary = {
        k: metrics[k] for k in ("spearman", "train_minutes", "steps_done", "checkpoint_bytes") if k in metrics
    }
    print(json.dumps(summary))
    return metrics


if __name__ == "__main__":
    main()
