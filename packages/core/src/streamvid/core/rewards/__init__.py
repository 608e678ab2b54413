"""Rewards: one interface for Stream-R1 (loss weights, saliency), Stream-T1 (search) and evaluation.

``reward(video [B, T, C, H, W] in [0, 1], prompts) -> RewardOutput(score [B], axes {name: [B]}, differentiable)``
(architecture.md, "Rewards"). `saliency` gives per-axis pixel gradient maps ``[B, T, H, W]`` for any
differentiable reward.

Build a reward by registry name from its typed config (`registry` explains the design); adapter modules are
imported only then:

- ``build_reward_from_config("shapes_learned", ShapesLearnedRewardConfig(path=...))``;
- from YAML, a ``reward:`` section typed `RewardSelection` (``name`` + one section per reward), then
  ``cfg.reward.build()``;
- ``build_reward("shapes_learned", path=...)``, the keyword shorthand (same config, unknown keys rejected).

Each reward's config dataclass is declared once, in `streamvid.core.rewards.configs` (importable from there
or from this package, without importing any adapter):

===================  ============================  ===================================================
registry name        config                        adapter
===================  ============================  ===================================================
``videoalign``       `VideoAlignConfig`            `VideoAlignReward` (``rewards.videoalign``)
``clip_frames``      `CLIPFrameScoreConfig`        `CLIPFrameScore` (``rewards.clip_frames``)
``aesthetic``        `AestheticConfig`             `AestheticScore` (``rewards.clip_frames``)
``shapes_analytic``  `ShapesAnalyticRewardConfig`  `ShapesAnalyticReward` (``world.analytic_reward``)
``shapes_learned``   `ShapesLearnedRewardConfig`   `ShapesLearnedReward` (``world.learned_reward``)
===================  ============================  ===================================================

The first three adapters are importable from this package (lazily, on attribute access); the shapes-world
ones from `streamvid.core.world`'s modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamvid.core.rewards.base import (
    AXES,
    COMBINE_MODES,
    BaseReward,
    ModelRewardConfig,
    RewardConfig,
    RewardModel,
    RewardOutput,
    check_reward_inputs,
    combine_axes,
)
from streamvid.core.rewards.configs import (
    AestheticConfig,
    CLIPFrameScoreConfig,
    RewardSelection,
    ShapesAnalyticRewardConfig,
    ShapesLearnedRewardConfig,
    VideoAlignConfig,
)
from streamvid.core.rewards.registry import (
    build_reward,
    build_reward_from_config,
    register_reward,
    registered_rewards,
    reward_config,
    reward_config_class,
    reward_target,
)
from streamvid.core.rewards.saliency import saliency

if TYPE_CHECKING:
    from streamvid.core.rewards.clip_frames import AestheticScore, CLIPFrameScore
    from streamvid.core.rewards.videoalign import VideoAlignReward

_LAZY = {
    "VideoAlignReward": "streamvid.core.rewards.videoalign",
    "CLIPFrameScore": "streamvid.core.rewards.clip_frames",
    "AestheticScore": "streamvid.core.rewards.clip_frames",
}

__all__ = [
    "AXES",
    "COMBINE_MODES",
    "AestheticConfig",
    "AestheticScore",
    "BaseReward",
    "ModelRewardConfig",
    "RewardConfig",
    "CLIPFrameScore",
    "CLIPFrameScoreConfig",
    "RewardModel",
    "RewardOutput",
    "RewardSelection",
    "ShapesAnalyticRewardConfig",
    "ShapesLearnedRewardConfig",
    "VideoAlignConfig",
    "VideoAlignReward",
    "build_reward",
    "build_reward_from_config",
    "check_reward_inputs",
    "combine_axes",
    "register_reward",
    "registered_rewards",
    "reward_config",
    "reward_config_class",
    "reward_target",
    "saliency",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'streamvid.core.rewards' has no attribute '{name}'")
