"""Rewards: one interface for Stream-R1 (loss weights, saliency), Stream-T1 (search) and evaluation.

``reward(video [B, T, C, H, W] in [0, 1], prompts) -> RewardOutput(score [B], axes {name: [B]}, differentiable)``
(architecture.md, "Rewards"). `saliency` gives per-axis pixel gradient maps ``[B, T, H, W]`` for any
differentiable reward.

A reward registers on its config dataclass (``@RewardConfig.register(name, target="module:Adapter")``) and is
built one way, `build_reward` (`registry` explains the design); adapter modules are imported only then:

- ``build_reward(ShapesLearnedRewardConfig(path=...))``, from the typed config;
- ``build_reward("shapes_learned", path=...)``, the keyword shorthand (same config, unknown keys rejected);
- from YAML, a ``reward:`` section typed `RewardSelection` (``name`` + one section per registered reward,
  generated from the registry), then ``build_reward(cfg.reward.config())``.

Each reward's config dataclass is declared once, in `streamvid.core.rewards.configs` (importable from there
or from this package, without importing any adapter):

===================  ============================  ===================================================
registry name        config                        adapter
===================  ============================  ===================================================
``videoalign``       `VideoAlignConfig`            `VideoAlignReward` (``rewards.videoalign``)
``clip_frames``      `CLIPFrameScoreConfig`        `CLIPFrameScore` (``rewards.clip_frames``)
``aesthetic``        `AestheticConfig`             `AestheticScore` (``rewards.clip_frames``)
``shapes_analytic``  `ShapesAnalyticRewardConfig`  `ShapesAnalyticReward` (``rewards.shapes_analytic``)
``shapes_learned``   `ShapesLearnedRewardConfig`   `ShapesLearnedReward` (``rewards.shapes_learned``)
===================  ============================  ===================================================

The adapters are importable from this package lazily, on attribute access. The shapes-world adapters read
`streamvid.core.world` (its renderer and prompt grammar); the world imports nothing from here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamvid.core.rewards.base import (
    AXES,
    COMBINE_MODES,
    BaseReward,
    ModelRewardConfig,
    RewardChoice,
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
    registered_rewards,
    reward_config,
    reward_config_class,
)
from streamvid.core.rewards.saliency import saliency

if TYPE_CHECKING:
    from streamvid.core.rewards.clip_frames import AestheticScore, CLIPFrameScore
    from streamvid.core.rewards.shapes_analytic import ShapesAnalyticReward
    from streamvid.core.rewards.shapes_learned import ShapesLearnedReward
    from streamvid.core.rewards.videoalign import VideoAlignReward

_LAZY = {
    "VideoAlignReward": "streamvid.core.rewards.videoalign",
    "CLIPFrameScore": "streamvid.core.rewards.clip_frames",
    "AestheticScore": "streamvid.core.rewards.clip_frames",
    "ShapesAnalyticReward": "streamvid.core.rewards.shapes_analytic",
    "ShapesLearnedReward": "streamvid.core.rewards.shapes_learned",
}

__all__ = [
    "AXES",
    "COMBINE_MODES",
    "AestheticConfig",
    "AestheticScore",
    "BaseReward",
    "ModelRewardConfig",
    "RewardChoice",
    "RewardConfig",
    "CLIPFrameScore",
    "CLIPFrameScoreConfig",
    "RewardModel",
    "RewardOutput",
    "RewardSelection",
    "ShapesAnalyticReward",
    "ShapesAnalyticRewardConfig",
    "ShapesLearnedReward",
    "ShapesLearnedRewardConfig",
    "VideoAlignConfig",
    "VideoAlignReward",
    "build_reward",
    "check_reward_inputs",
    "combine_axes",
    "registered_rewards",
    "reward_config",
    "reward_config_class",
    "saliency",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'streamvid.core.rewards' has no attribute '{name}'")
