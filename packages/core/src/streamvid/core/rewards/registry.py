"""Build rewards by name from typed configs, importing their modules only when built.

Design (declare each config once, keep it typed, keep imports lazy):

- **Targets.** A registered name maps to a target string ``"package.module:Class"``: a `BaseReward`
  subclass (anything with a ``config_class`` dataclass and a ``from_config`` classmethod). Adding a reward is
  one line in `_BUILTIN` (or one `register_reward` call). Nothing is imported until a reward is built or its
  config class is asked for. A ``"module:Class.build"`` target is read as ``Class``; a target without a
  ``config_class`` (a plain factory) is called with keyword arguments by `build_reward` and has no typed
  path.
- **Configs.** Each reward's settings are one dataclass subclassing `RewardConfig`, declared in
  `streamvid.core.rewards.configs` (which imports no adapter), named by the adapter's ``config_class``.
- **Typed entry point.** ``build_reward_from_config(name, config)`` checks that ``config`` is the reward's
  config class and builds it; `reward_config` makes that config from keyword options, rejecting unknown ones
  with the reward's name and its valid fields.
- **YAML.** A config schema holds a `streamvid.core.rewards.configs.RewardSelection`: ``name`` plus one
  optional section per built-in reward, typed by its config dataclass, so `streamvid.core.config.load_config`
  validates every key statically (unknown key -> the key and the file) without importing any adapter::

      reward:
        name: shapes_learned
        shapes_learned: {path: null}

  and ``cfg.reward.build()`` builds it.
- **Convenience.** ``build_reward(name, **options)`` = ``build_reward_from_config(name, reward_config(name,
  **options))``: the same typed config and checks, for callers and tests that pass keywords.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

from streamvid.core.config import ConfigError
from streamvid.core.rewards.base import RewardConfig, RewardModel

__all__ = [
    "build_reward",
    "build_reward_from_config",
    "register_reward",
    "registered_rewards",
    "reward_config",
    "reward_config_class",
    "reward_target",
]

_BUILTIN: dict[str, str] = {
    "videoalign": "streamvid.core.rewards.videoalign:VideoAlignReward",
    "clip_frames": "streamvid.core.rewards.clip_frames:CLIPFrameScore",
    "aesthetic": "streamvid.core.rewards.clip_frames:AestheticScore",
    "shapes_analytic": "streamvid.core.world.analytic_reward:ShapesAnalyticReward",
    "shapes_learned": "streamvid.core.world.learned_reward:ShapesLearnedReward",
}
"""Built-in rewards; each has a typed section of the same name in `RewardSelection`."""

_REGISTRY: dict[str, str] = dict(_BUILTIN)


def register_reward(name: str, target: str, *, overwrite: bool = False) -> None:
    """Map ``name`` to ``target`` (``"module:Class"``); re-registering a different target needs ``overwrite``."""
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


def _resolve(name: str) -> Any:
    """Import the target of ``name``; a ``Class.build`` target resolves to ``Class``."""
    target = reward_target(name)
    module_name, _, attr_path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ImportError(f"cannot import reward '{name}' from target '{target}': {err}") from err
    if inspect.ismethod(obj) and isinstance(obj.__self__, type) and obj.__name__ == "build":
        obj = obj.__self__
    return obj


def _typed(obj: Any) -> bool:
    return isinstance(obj, type) and getattr(obj, "config_class", None) is not None


def reward_config_class(name: str) -> type[RewardConfig]:
    """The config dataclass of reward ``name`` (imports its module).

    Raises:
        ValueError: ``name`` is not registered.
        ImportError: its target cannot be imported.
        TypeError: its target has no ``config_class`` (a plain factory: use `build_reward`).
    """
    obj = _resolve(name)
    if not _typed(obj):
        raise TypeError(
            f"reward '{name}' ('{reward_target(name)}') has no config_class; build it with build_reward(name, ...)"
        )
    return obj.config_class


def reward_config(name: str, **options: Any) -> RewardConfig:
    """The typed config of reward ``name`` made from keyword ``options`` (defaults for the rest).

    Raises:
        ConfigError (a ValueError): an option that is not a field of the config, naming the reward, its config
            class and the valid fields; or a value its ``__post_init__`` rejects.
    """
    config_class = reward_config_class(name)
    valid = sorted(f.name for f in dataclasses.fields(config_class))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for reward '{name}' ({config_class.__name__}); valid: {valid}"
        )
    return config_class(**options)


def build_reward_from_config(name: str, config: RewardConfig) -> RewardModel:
    """Import and build reward ``name`` from its typed ``config`` (an instance of its config class).

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names), or ``config`` fails the
            adapter's checks.
        TypeError: ``config`` is not an instance of the reward's config class.
        ImportError: the target module or attribute cannot be imported (the message names the target).
    """
    cls = _resolve(name)
    if not _typed(cls):
        raise TypeError(
            f"reward '{name}' ('{reward_target(name)}') has no config_class; build it with build_reward(name, ...)"
        )
    if not isinstance(config, cls.config_class):
        raise TypeError(f"reward '{name}' takes a {cls.config_class.__name__}; got {type(config).__name__}")
    check = getattr(cls, "check_config", None)
    if check is not None:
        check(config)  # before loading any weights
    return cls.from_config(config)


def build_reward(name: str, **options: Any) -> RewardModel:
    """Import and build the reward registered as ``name`` from keyword ``options``.

    For a typed reward this is ``build_reward_from_config(name, reward_config(name, **options))``; a target
    without a ``config_class`` is called with ``options``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names), or an option is not a field
            of its config (the message names the reward and the valid fields).
        ImportError: the target module or attribute cannot be imported (the message names the target).
    """
    obj = _resolve(name)
    if not _typed(obj):
        return obj(**options)
    return build_reward_from_config(name, reward_config(name, **options))
