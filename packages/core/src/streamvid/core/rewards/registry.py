"""Build rewards by name, importing their modules only when built.

A registered name maps to a target string ``"package.module:attr"`` (``attr`` may be dotted, e.g.
``"VideoAlignReward.build"``); `build_reward` imports the module, resolves the attribute and calls it with the
keyword config. Adding a reward is one line in `_BUILTIN` (or one `register_reward` call): the target is a
class taking keyword arguments, or a ``Class.build`` classmethod of a `BaseReward` subclass (which turns the
keywords into its config dataclass).
"""

from __future__ import annotations

import importlib
from typing import Any

from streamvid.core.rewards.base import RewardModel

__all__ = ["build_reward", "register_reward", "registered_rewards", "reward_target"]

_BUILTIN: dict[str, str] = {
    "videoalign": "streamvid.core.rewards.videoalign:VideoAlignReward.build",
    "clip_frames": "streamvid.core.rewards.clip_frames:CLIPFrameScore.build",
    "aesthetic": "streamvid.core.rewards.clip_frames:AestheticScore.build",
    "shapes_analytic": "streamvid.core.world.analytic_reward:ShapesAnalyticReward.build",
    "shapes_learned": "streamvid.core.world.learned_reward:ShapesLearnedReward.build",
}

_REGISTRY: dict[str, str] = dict(_BUILTIN)


def register_reward(name: str, target: str, *, overwrite: bool = False) -> None:
    """Map ``name`` to ``target`` (``"module:attr"``); re-registering a different target needs ``overwrite``."""
    if ":" not in target:
        raise ValueError(f"reward target for '{name}' must look like 'package.module:Attr'; got '{target}'")
    if name in _REGISTRY and _REGISTRY[name] != target and not overwrite:
        raise ValueError(
            f"reward '{name}' is already registered as '{_REGISTRY[name]}' (pass overwrite=True)"
        )
    _REGISTRY[name] = target


def registered_rewards() -> tuple[str, ...]:
    """All registered reward names, sorted."""
    return tuple(sorted(_REGISTRY))


def reward_target(name: str) -> str:
    """The ``"module:attr"`` target of ``name``; ValueError listing the known names if unknown."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown reward '{name}'; known rewards: {', '.join(registered_rewards())}")
    return _REGISTRY[name]


def build_reward(name: str, **cfg: Any) -> RewardModel:
    """Import and build the reward registered as ``name`` with keyword config ``cfg``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names).
        ImportError: the target module or attribute cannot be imported (the message names the target).
    """
    target = reward_target(name)
    module_name, _, attr_path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ImportError(f"cannot import reward '{name}' from target '{target}': {err}") from err
    return obj(**cfg)
