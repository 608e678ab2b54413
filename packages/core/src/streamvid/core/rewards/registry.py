"""Build a reward: the one path from a registered config to a reward model, importing the adapter only then.

Design (lerobot's ``register_subclass`` pattern, with lazy adapters):

- **Register on the config.** Each reward's settings are one dataclass subclassing `RewardConfig`, decorated
  with ``@RewardConfig.register(name, target="package.module:Adapter")`` (built-in ones in
  `streamvid.core.rewards.configs`). The registry maps the name to the config class and the adapter's import
  string; nothing is imported until a reward is built.
- **One build path.** ``build_reward(config)`` finds the config's registered adapter, checks the config (the
  adapter's ``config_class``, then `RewardConfig.validate`) and calls ``Adapter.from_config(config)``.
  ``build_reward(name, **options)`` is the keyword shorthand: ``build_reward(reward_config(name, **options))``.
- **YAML.** A config schema holds a `streamvid.core.rewards.configs.RewardSelection` (``name`` plus one
  section per registered reward, derived from this registry) and builds with
  ``build_reward(cfg.reward.config())``; ``cfg.reward.check_paths()`` names a missing weight path first.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from streamvid.core.config import ConfigError
from streamvid.core.rewards.base import RewardChoice, RewardConfig, RewardModel

__all__ = ["build_reward", "registered_rewards", "reward_config", "reward_config_class"]


def registered_rewards() -> tuple[str, ...]:
    """All registered reward names, sorted."""
    return RewardConfig.registered_names()


def reward_config_class(name: str) -> type[RewardConfig]:
    """The config dataclass registered as reward ``name`` (imports no adapter); ValueError if unknown."""
    return RewardConfig.choice(name).config_class


def reward_config(name: str, **options: Any) -> RewardConfig:
    """The typed config of reward ``name`` made from keyword ``options`` (defaults for the rest).

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names).
        ConfigError (a ValueError): an option that is not a field of the config, naming the reward, its config
            class and the valid fields; or a value its ``validate`` rejects.
    """
    config_class = reward_config_class(name)
    valid = sorted(f.name for f in dataclasses.fields(config_class))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for reward '{name}' ({config_class.__name__}); valid: {valid}"
        )
    return config_class(**options)


def _import_adapter(choice: RewardChoice) -> Any:
    module_name, _, attr_path = choice.target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ImportError(f"cannot import reward '{choice.name}' from target '{choice.target}': {err}") from err
    return obj


def build_reward(config: RewardConfig | str, /, **options: Any) -> RewardModel:
    """Build a reward from its registered config, or from a registry name and keyword ``options``.

    ``build_reward(ShapesLearnedRewardConfig(path=...))`` and ``build_reward("shapes_learned", path=...)`` are
    the same reward; options are only accepted with a name.

    Raises:
        ValueError: an unknown name (listing the known ones), an option that is not a field of the config, or
            a config value the checks reject (a `ConfigError`, before any weights are loaded).
        TypeError: options given with a config; a config class that is not registered; or one the adapter does
            not take (its ``config_class``).
        ImportError: the adapter cannot be imported (the message names the target).
    """
    if isinstance(config, str):
        config = reward_config(config, **options)
    elif not isinstance(config, RewardConfig):
        raise TypeError(f"build_reward takes a RewardConfig or a reward name; got {type(config).__name__}")
    elif options:
        raise TypeError(f"build_reward takes keyword options only with a reward name; got a {type(config).__name__}")
    choice = config.registered_choice()
    adapter = _import_adapter(choice)
    expected = getattr(adapter, "config_class", None)
    if expected is not None and not isinstance(config, expected):
        raise TypeError(f"reward '{choice.name}' takes a {expected.__name__}; got {type(config).__name__}")
    config.validate()  # a config edited after it was made is checked again, before any weights are loaded
    return adapter.from_config(config)
