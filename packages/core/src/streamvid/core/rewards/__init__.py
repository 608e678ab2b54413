"""Rewards: one interface for Stream-R1 (loss weights, saliency), Stream-T1 (search) and evaluation.

``reward(video [B, T, C, H, W] in [0, 1], prompts) -> RewardOutput(score [B], axes {name: [B]}, differentiable)``
(architecture.md, "Rewards"). Build adapters by name with `build_reward` (modules are imported on build);
`saliency` gives per-axis pixel gradient maps ``[B, T, H, W]`` for any differentiable reward.

Adapters (imported lazily, on attribute access): `VideoAlignReward` ("videoalign"), `CLIPFrameScore`
("clip_frames"), `AestheticScore` ("aesthetic").
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
from streamvid.core.rewards.registry import build_reward, register_reward, registered_rewards, reward_target
from streamvid.core.rewards.saliency import saliency

if TYPE_CHECKING:
    from streamvid.core.rewards.clip_frames import (
        AestheticConfig,
        AestheticScore,
        CLIPFrameScore,
        CLIPFrameScoreConfig,
    )
    from streamvid.core.rewards.videoalign import VideoAlignConfig, VideoAlignReward

_LAZY = {
    "VideoAlignReward": "streamvid.core.rewards.videoalign",
    "VideoAlignConfig": "streamvid.core.rewards.videoalign",
    "CLIPFrameScore": "streamvid.core.rewards.clip_frames",
    "CLIPFrameScoreConfig": "streamvid.core.rewards.clip_frames",
    "AestheticScore": "streamvid.core.rewards.clip_frames",
    "AestheticConfig": "streamvid.core.rewards.clip_frames",
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
    "VideoAlignConfig",
    "VideoAlignReward",
    "build_reward",
    "check_reward_inputs",
    "combine_axes",
    "register_reward",
    "registered_rewards",
    "reward_target",
    "saliency",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'streamvid.core.rewards' has no attribute '{name}'")
