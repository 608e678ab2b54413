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
from streamvid.distill.shapes_reward_config import (
    ShapesRewardStageConfig,
    check_generated_sets,
    training_settings,
)
from streamvid.distill.shapes_reward_data import make_examples
from streamvid.distill.shapes_reward_metrics import heldout_metrics, predict, ranking_metrics

__all__ = ["GeneratedBatches", "fit_shapes_reward", "generated_ranking", "ranking_loss", "reward_loss",
           "run_shapes_reward"]

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


def ranking_loss(logits: Tensor, truth: Tensor, groups: Tensor, margin: float) -> Tensor:
    """Bradley-Terry over pairs of one group: the mean over axes k and pairs (i, j) of a group with
    ``truth[i, k] - truth[j, k] > margin`` of ``softplus(logits[j, k] - logits[i, k])`` (= -log sigma(s_i - s_j)).

    ``logits [n, 3]``, ``truth [n, 3]`` (oracle scores), ``groups [n]``; 0 when no pair qualifies.
    """
    same = groups[:, None] == groups[None, :]  # [n, n]
    better = (truth[:, None, :] - truth[None, :, :] > margin) & same[..., None]  # [n, n, 3]: i better than j
    if not better.any():
        return logits.sum() * 0.0
    return F.softplus(logits[None, :, :] - logits[:, None, :])[better].mean()


class GeneratedBatches:
    """Steps' batches of generated videos (`streamvid.distill.shapes_generated` sets), drawn in groups.

    Each call draws ``generated_batch / group_draw`` groups (one prompt and generator) and ``group_draw`` of their
    seeds; with probability ``p_chunk`` every video is cut to the same random chunk and its targets are the
    oracle's reading of that chunk. Deterministic in the seed; independent of the rendered examples' stream.
    """

    def __init__(self, cfg: ShapesRewardStageConfig) -> None:
        from streamvid.distill.shapes_generated import load_generated_set

        sets = [load_generated_set(path) for path in cfg.generated]
        offset, groups = 0, []
        for data in sets:  # group ids made unique across sets
            groups.append(data.groups + offset)
            offset += int(data.groups.max()) + 1
        self.videos = torch.cat([d.videos for d in sets])
        self.prompts = [p for d in sets for p in d.prompts]
        self.axes = torch.cat([d.axes for d in sets])
        self.chunk_axes = torch.cat([d.chunk_axes for d in sets])
        self.labels = {k: torch.cat([getattr(d, k) for d in sets]) for k in ("colour", "shape", "direction")}
        self.groups = torch.cat(groups)
        self.members = [torch.nonzero(self.groups == g)[:, 0] for g in self.groups.unique()]
        self.members = [m for m in self.members if len(m) >= cfg.group_draw]
        self.cfg = cfg
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)

    def __len__(self) -> int:
        return self.videos.shape[0]

    def draw(self) -> tuple[Tensor, list[str], dict[str, Tensor], Tensor]:
        """(videos ``[n, T or chunk, 3, H, W]`` in [0, 1], prompts, targets as `make_examples`', groups ``[n]``)."""
        cfg = self.cfg
        picks = torch.randperm(len(self.members), generator=self.gen)[: cfg.generated_batch // cfg.group_draw]
        idx = torch.cat([self.members[int(g)][torch.randperm(len(self.members[int(g)]), generator=self.gen)
                                              [: cfg.group_draw]] for g in picks])
        videos = self.videos[idx].float() / 255.0
        targets = {"axes": self.axes[idx], **{k: v[idx] for k, v in self.labels.items()}}
        if float(torch.rand((), generator=self.gen)) < cfg.p_chunk:
            chunks = videos.shape[1] // cfg.chunk_frames
            c = int(torch.randint(chunks, (), generator=self.gen))
            frames = slice(c * cfg.chunk_frames, (c + 1) * cfg.chunk_frames)
            videos = videos[:, frames].contiguous()
            targets["axes"] = self.chunk_axes[idx, c]
            targets["direction"] = targets["direction"][:, frames]
        return videos, [self.prompts[i] for i in idx.tolist()], targets, self.groups[idx]


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
    generated = GeneratedBatches(cfg) if cfg.generated else None
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
        if generated is not None:
            g_videos, g_prompts, g_targets, g_groups = generated.draw()
            g_ids = encode_prompts(g_prompts, g_videos.shape[1])
            g_out = net.heads(g_videos, g_ids["colour"], g_ids["shape"], g_ids["direction"])
            loss = loss + reward_loss(g_out, g_targets, cfg.aux_weight) + cfg.rank_weight * ranking_loss(
                g_out["logits"], g_targets["axes"], g_groups, cfg.rank_margin)
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
    if generated is not None:
        metrics["generated_videos"] = len(generated)
    if cfg.eval_val or cfg.eval_heldout:
        metrics.update(heldout_metrics(net, cfg))
    if cfg.eval_generated:
        metrics["generated_ranking"] = generated_ranking(net, cfg.eval_generated, cfg.chunk_frames)
    return net, metrics


def generated_ranking(net: ShapesRewardNet, path: str, chunk_frames: int) -> dict:
    """`ranking_metrics` of ``net`` on the generated set at ``path`` (video level and each chunk alone)."""
    from streamvid.distill.shapes_generated import load_generated_set

    data = load_generated_set(path)
    pixels = data.pixels()
    pred = predict(net, pixels, data.prompts)
    chunks = [predict(net, pixels[:, s : s + chunk_frames].contiguous(), data.prompts)
              for s in range(0, pixels.shape[1], chunk_frames)]
    rows = ranking_metrics(pred, data.axes, data.groups, torch.stack(chunks, 1), data.chunk_axes)
    for m in rows.values():
        m["best_of_n"].pop("gain")
    return {"data": path, "videos": len(data), **rows}


def run_shapes_reward(cfg: ShapesRewardStageConfig) -> Path:
    """Check ``output_dir``, train (`fit_shapes_reward`), then write ``reward.safetensors``, ``reward.json`` and
    ``metrics.json`` into it; prints a one-line JSON summary and returns ``output_dir``."""
    check_output_dir(cfg.output_dir, "output_dir")
    check_generated_sets(cfg)
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
