"""Rewards and the shapes-world oracle as metrics.

* `reward`: any registered reward (`streamvid.core.rewards.build_reward`) scored on one video; returns its
  ``score`` and every axis (one column each: ``reward.score``, ``reward.visual``, ...). Options:
  ``reward`` (its registry name) plus that reward's own options::

      build("reward", reward="videoalign", checkpoint_dir="ckpt/VideoReward")  # weights from a local dir
      build("reward", reward="shapes_learned")                                 # the shipped shapes reward

* `shapes_oracle`: the held-out ground truth of every shapes-world experiment, measured from pixels
  (`streamvid.core.world.oracle`): ``text`` / ``motion`` / ``visual`` in [0, 1] and the accuracies they are
  made of (``colour``, ``shape``, ``direction``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from streamvid.eval.metrics.registry import MetricSpec, as_video, register


def reward_metric(reward: str, **options: Any) -> Callable[..., dict[str, float]]:
    """Build the registered reward ``reward`` once; the metric scores one video ``[T, C, H, W]`` vs its prompt."""
    from streamvid.core.rewards import build_reward

    model = build_reward(reward, **options)

    def metric(frames: torch.Tensor, prompt: str) -> dict[str, float]:
        video = as_video(frames)[None]  # [1, T, C, H, W] float in [0, 1]
        with torch.no_grad():
            out = model(video, [prompt])
        return {"score": float(out.score[0]), **{axis: float(v[0]) for axis, v in out.axes.items()}}

    return metric


def shapes_oracle(frames: torch.Tensor, prompt: str) -> dict[str, float]:
    """Oracle axes and accuracies of one shapes-world video ``[T, 3, H, W]`` against its prompt."""
    from streamvid.core.world.oracle import score_details

    result = score_details(as_video(frames), prompt)
    parts = result.parts
    return {
        **result.as_dict(),
        "colour": parts.get("colour", 0.0),
        "shape": parts.get("shape", 0.0),
        "direction": parts.get("direction", 0.0),
    }


REWARD_METRICS = [
    MetricSpec("reward", f"{__name__}:reward_metric", inputs=("frames", "prompt"), is_factory=True,
               needs_weights=True, range=(-float("inf"), float("inf")),
               description="a registered reward's score and axes (options: reward=<registry name>, its own options)",
               tags=("reward",)),
    MetricSpec("shapes_oracle", f"{__name__}:shapes_oracle", inputs=("frames", "prompt"),
               description="shapes-world ground truth from pixels: text/motion/visual in [0, 1] and colour, "
                           "shape, direction accuracy", tags=("shapes",)),
]
for _spec in REWARD_METRICS:
    register(_spec)
