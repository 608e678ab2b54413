"""``streamvid-train shapes-reward``: train `ShapesLearnedReward` on CPU from the shapes-world oracle.

    streamvid-train shapes-reward --config configs/train/shapes_reward.yaml [--set steps=200 --set output_dir=...]

Schema `ShapesRewardStageConfig`; examples and their oracle targets come from `shapes_reward_data`, the
held-out report from `shapes_reward_metrics`. Training keeps a pool of examples and replaces
``fresh_per_step`` of them per step (each example is seen about ``batch_size / fresh_per_step`` times), AdamW
with a linear warm-up and a cosine schedule, and a binary cross-entropy of the sigmoid outputs against the
soft targets, plus auxiliary cross-entropies for the colour, shape and per-frame direction the oracle reads
from the video (the text axis is built from those three classifiers, see `ShapesRewardNet`). A plain loop,
not Lightning: the network is small, the run takes minutes on one core and its result must be bit-exact.

Everything is deterministic given the seed and ``steps`` (for a given torch build and thread count);
``minutes`` is a safety cap: hitting it ends training early and is recorded in ``metrics.json``. The run
writes ``reward.safetensors`` + ``reward.json`` (`save_reward_net`; loadable with ``build_reward(
"shapes_learned", path=output_dir)``) and ``metrics.json`` into ``output_dir``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from streamvid.core.cli.paths import check_output_dir
from streamvid.core.rewards.shapes_learned import (
    WEIGHTS_FILE,
    ShapesRewardNet,
    encode_prompts,
    save_reward_net,
)
from streamvid.distill.shapes_reward_config import ShapesRewardStageConfig, training_settings
from streamvid.distill.shapes_reward_data import make_examples
from streamvid.distill.shapes_reward_metrics import heldout_metrics

__all__ = ["fit_shapes_reward", "reward_loss", "run_shapes_reward"]

GROUND_TRUTH = "oracle (streamvid.core.world.oracle.score)"
"""What the targets are, recorded in ``reward.json`` and ``metrics.json``."""


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


def fit_shapes_reward(cfg: ShapesRewardStageConfig) -> tuple[ShapesRewardNet, dict]:
    """Train a `ShapesRewardNet` -> (net in eval mode, metrics dict with ``loss`` history and eval results).

    Deterministic given the config (for a given torch build and thread count) unless ``minutes`` cuts it short.
    """
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
    bar = tqdm(range(cfg.steps), desc="shapes reward", disable=not cfg.progress_bar)
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
        "ground_truth": GROUND_TRUTH,
        "steps_done": len(losses),
        "stopped_early": stopped_early,
        "examples_made": made,
        "train_minutes": round(train_minutes, 2),
        "loss": [round(x, 5) for x in losses],
    }
    if cfg.eval_val or cfg.eval_heldout:
        metrics.update(heldout_metrics(net, cfg))
    return net, metrics


def run_shapes_reward(cfg: ShapesRewardStageConfig) -> Path:
    """Check ``output_dir``, train (`fit_shapes_reward`), then write ``reward.safetensors``, ``reward.json`` and
    ``metrics.json`` into it; prints a one-line JSON summary and returns ``output_dir``."""
    check_output_dir(cfg.output_dir, "output_dir")
    torch.set_num_threads(cfg.threads)
    print(f"shapes-reward: {cfg.steps} steps (cap {cfg.minutes} min), seed {cfg.seed} -> {cfg.output_dir}",
          file=sys.stderr, flush=True)
    net, metrics = fit_shapes_reward(cfg)
    out = save_reward_net(net, cfg.output_dir, {"ground_truth": GROUND_TRUTH, "train": training_settings(cfg)})
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
    return out
