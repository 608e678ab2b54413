"""The reward interface: `RewardOutput`, the `RewardModel` protocol, `RewardConfig` (with the registry of
rewards) and the `BaseReward` helper class.

A reward maps a batch of videos ``[B, T, C, H, W]`` (float, RGB, values in [0, 1]) and ``B`` prompts to a
`RewardOutput`: one overall ``score [B]`` and named ``axes`` (each ``[B]``), drawn from ``visual``, ``motion``
and ``text`` where the model has them (architecture.md, "Rewards"). Every sample is scored and samples never
interact, so scoring a batch equals scoring each sample alone (the reference code scored only element 0).
How raw model outputs are normalised and how ``score`` combines the axes belong to the adapter and are
stated in its config dataclass.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn

from streamvid.core.config import check_choice
from streamvid.core.dtypes import DTYPES

__all__ = [
    "AXES",
    "COMBINE_MODES",
    "DTYPES",
    "BaseReward",
    "ModelRewardConfig",
    "RewardChoice",
    "RewardModel",
    "RewardConfig",
    "RewardOutput",
    "check_reward_inputs",
    "combine_axes",
]

AXES = ("visual", "motion", "text")
"""The axis names an adapter may report (a subset, in this order)."""

COMBINE_MODES = ("mean", "sum", *AXES)
"""How ``score`` is made from the axes: their mean, their sum, or one named axis."""

C = TypeVar("C", bound="RewardConfig")


@dataclass
class RewardOutput:
    """Scores of a batch of ``B`` videos.

    Attributes:
        score: ``[B]`` float, the overall reward (the adapter's config says how it combines ``axes``).
        axes: axis name -> ``[B]`` float; names from `AXES`.
        differentiable: True if ``score`` and ``axes`` are differentiable functions of the input pixels (a
            differentiable adapter called with autograd enabled). False: the tensors carry no graph (the adapter
            is not differentiable and scored under no_grad, or the caller disabled autograd).
    """

    score: Tensor
    axes: dict[str, Tensor]
    differentiable: bool

    def __post_init__(self) -> None:
        if self.score.dim() != 1:
            raise ValueError(f"RewardOutput.score must be [B]; got shape {tuple(self.score.shape)}")
        for name, value in self.axes.items():
            if name not in AXES:
                raise ValueError(f"RewardOutput axis '{name}' is not one of {AXES}")
            if value.shape != self.score.shape:
                raise ValueError(
                    f"RewardOutput axis '{name}' has shape {tuple(value.shape)}; expected {tuple(self.score.shape)}"
                )

    def detach(self) -> RewardOutput:
        """A copy without autograd history (so ``differentiable=False``)."""
        axes = {k: v.detach() for k, v in self.axes.items()}
        return RewardOutput(self.score.detach(), axes, False)


@runtime_checkable
class RewardModel(Protocol):
    """Anything that scores videos: ``reward(video [B,T,C,H,W] in [0,1], prompts) -> RewardOutput``."""

    axes: tuple[str, ...]
    """Names of the axes this reward reports, a subset of `AXES`."""
    differentiable: bool
    """Whether outputs are differentiable w.r.t. the pixels (`saliency` requires it)."""

    def __call__(self, video: Tensor, prompts: list[str]) -> RewardOutput:
        """Score ``B`` videos ``[B, T, C, H, W]`` (float in [0, 1]) against ``B`` prompts."""
        ...


def check_reward_inputs(video: Tensor, prompts: list[str], channels: int = 3) -> None:
    """Raise ValueError/TypeError unless ``video`` is float ``[B, T, channels, H, W]`` and there are ``B`` prompts."""
    if isinstance(prompts, str):
        raise TypeError("rewards take a list of prompts (one per video), got a single str")
    if not torch.is_tensor(video) or not video.is_floating_point() or video.dim() != 5:
        desc = f"{tuple(video.shape)} {video.dtype}" if torch.is_tensor(video) else type(video).__name__
        raise ValueError(f"video must be a float tensor [B, T, C, H, W] in [0, 1]; got {desc}")
    if video.shape[2] != channels:
        raise ValueError(
            f"video must have {channels} channels at dim 2 ([B, T, C, H, W]); got {tuple(video.shape)}"
        )
    if len(prompts) != video.shape[0]:
        raise ValueError(f"got {video.shape[0]} videos but {len(prompts)} prompts; pass one prompt per video")


def combine_axes(axes: Mapping[str, Tensor], how: str) -> Tensor:
    """``score [B]`` from ``axes`` (each ``[B]``): ``"mean"``, ``"sum"`` or one axis name (see `COMBINE_MODES`)."""
    if how in ("mean", "sum"):
        stacked = torch.stack(list(axes.values()), dim=0)
        return stacked.mean(0) if how == "mean" else stacked.sum(0)
    if how not in axes:
        raise ValueError(f"score combination '{how}' names no axis of this reward (axes: {sorted(axes)})")
    return axes[how]


@dataclass(frozen=True)
class RewardChoice:
    """One registered reward: its registry ``name``, its config dataclass and the adapter that config builds.

    ``target`` is an import string ``"package.module:Adapter"``; the adapter is imported only when a reward is
    built (`streamvid.core.rewards.registry.build_reward`), so configs stay cheap to load.
    """

    name: str
    config_class: type[RewardConfig]
    target: str


@dataclass
class RewardConfig:
    """Fields every reward adapter's config has, and the registry of rewards (one entry per config class).

    A reward registers on its config class (the ``register_subclass`` pattern of lerobot / draccus)::

        @RewardConfig.register("shapes_learned", target="streamvid.core.rewards.shapes_learned:ShapesLearnedReward")
        @dataclass
        class ShapesLearnedRewardConfig(RewardConfig): ...

    The built-in configs are declared and registered in `streamvid.core.rewards.configs`, and the YAML
    ``reward:`` section (`RewardSelection`) is derived from what is registered there. Value checks live in
    `validate` (run when the config is made and again when a reward is built), path checks in
    `missing_paths`. A subclass adding checks overrides `validate` and calls ``super().validate()``.
    """

    combine: str = "mean"
    """How ``score`` is made from the axes: ``"mean"``, ``"sum"`` or one axis name (`COMBINE_MODES`)."""
    differentiable: bool = True
    """Score with autograd enabled (`saliency` needs it); False scores under no_grad (cheaper)."""

    REQUIRED_PATHS: ClassVar[tuple[str, ...]] = ()
    """Fields naming local files or folders the reward cannot be built without (checked by `missing_paths`)."""
    OPTIONAL_PATHS: ClassVar[tuple[str, ...]] = ()
    """Fields naming local files or folders that may be empty / None (then a default is used)."""

    _choices: ClassVar[dict[str, RewardChoice]] = {}
    """Registry name -> `RewardChoice`, shared by every subclass (filled by `register`)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` naming the field when a value is out of range (``combine`` here)."""
        check_choice("combine", self.combine, COMBINE_MODES)

    def missing_paths(self) -> list[tuple[str, str]]:
        """``(field, problem)`` for every required path left empty and every given path that does not exist:
        the check a CLI runs before building anything."""
        problems = []
        for name in (*self.REQUIRED_PATHS, *self.OPTIONAL_PATHS):
            value = getattr(self, name)
            if not value:
                if name in self.REQUIRED_PATHS:
                    problems.append((name, "required (a local path), not set"))
            elif not Path(value).exists():
                problems.append((name, f"not found: {value}"))
        return problems

    def prompt_problem(self, prompt: str) -> str | None:
        """Why this reward cannot score videos of ``prompt`` (one line), or None: checked before any model is
        built. Open-vocabulary rewards accept every prompt; the shapes-world rewards need its grammar."""
        return None

    # ------------------------------------------------------------------------------------------ registry

    @classmethod
    def register(cls, name: str, *, target: str) -> Callable[[type[C]], type[C]]:
        """Class decorator: register the decorated config class as reward ``name``, built by ``target``.

        Raises:
            ValueError: ``target`` is not ``"module:Attr"``; ``name`` is taken by another config class; or the
                class is already registered under another name (one name per config class).
            TypeError: the decorated class is not a `RewardConfig` subclass.
        """
        if ":" not in target:
            raise ValueError(f"reward target for '{name}' must look like 'package.module:Attr'; got '{target}'")

        def decorator(config_class: type[C]) -> type[C]:
            if not (isinstance(config_class, type) and issubclass(config_class, RewardConfig)):
                raise TypeError(f"reward '{name}': {config_class!r} is not a RewardConfig subclass")
            taken = RewardConfig._choices.get(name)
            if taken is not None and taken.config_class is not config_class:
                raise ValueError(
                    f"reward '{name}' is already registered by {taken.config_class.__name__} ({taken.target})"
                )
            other = [c.name for c in RewardConfig._choices.values() if c.config_class is config_class]
            if other and other != [name]:
                raise ValueError(f"{config_class.__name__} is already registered as reward '{other[0]}'")
            RewardConfig._choices[name] = RewardChoice(name, config_class, target)
            return config_class

        return decorator

    @classmethod
    def registered_names(cls) -> tuple[str, ...]:
        """All registered reward names, sorted."""
        return tuple(sorted(RewardConfig._choices))

    @classmethod
    def choice(cls, name: str) -> RewardChoice:
        """The `RewardChoice` registered as ``name``; ValueError listing the known names if unknown."""
        if name not in RewardConfig._choices:
            known = ", ".join(cls.registered_names())
            raise ValueError(f"unknown reward '{name}'; known rewards: {known}")
        return RewardConfig._choices[name]

    def registered_choice(self) -> RewardChoice:
        """The `RewardChoice` of this config's class (or of its nearest registered base class).

        Raises:
            TypeError: no class in this config's MRO is registered.
        """
        by_class = {c.config_class: c for c in RewardConfig._choices.values()}
        for klass in type(self).__mro__:
            if klass in by_class:
                return by_class[klass]
        raise TypeError(f"{type(self).__name__} is not a registered reward config (RewardConfig.register)")


@dataclass
class ModelRewardConfig(RewardConfig):
    """A reward backed by network weights read from a local directory."""

    dtype: str = "float32"
    """torch dtype name of the weights (`DTYPES`; e.g. "bfloat16" on GPU)."""
    device: str = "cpu"
    """Device the weights live on."""

    def validate(self) -> None:
        super().validate()
        check_choice("dtype", self.dtype, DTYPES)


class BaseReward(nn.Module, abc.ABC):
    """Common machinery for reward adapters: input checks, no_grad when not differentiable, axis combining.

    Subclasses set ``axes`` (class attribute), implement `score_axes`, name the config dataclass they take in
    ``config_class`` (a `RewardConfig` subclass registered with `RewardConfig.register`; the built-in ones
    live in `streamvid.core.rewards.configs`) and override `from_config` when they load weights. Build one
    with `streamvid.core.rewards.build_reward`, the one path (config checks, then `from_config`).

    Args:
        config: the adapter's config dataclass instance (kept as ``self.config``).
    """

    axes: tuple[str, ...] = ()
    config_class: ClassVar[type[RewardConfig] | None] = None

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, RewardConfig):
            raise TypeError(f"{type(self).__name__} needs a RewardConfig subclass, got {type(config).__name__}")
        self.config = config
        config.validate()
        self.combine = config.combine
        if self.combine in AXES and self.combine not in self.axes:
            raise ValueError(
                f"combine='{self.combine}' names no axis of {type(self).__name__} (axes: {self.axes})"
            )
        self.differentiable = bool(config.differentiable)

    @classmethod
    def from_config(cls, config: Any) -> BaseReward:
        """Build from a config instance (adapters that load weights override this)."""
        return cls(config)

    @abc.abstractmethod
    def score_axes(self, video: Tensor, prompts: list[str]) -> dict[str, Tensor]:
        """Per-axis rewards: ``video [B, T, C, H, W]`` in [0, 1] -> ``{axis: [B]}`` (already normalised)."""

    def forward(self, video: Tensor, prompts: list[str]) -> RewardOutput:
        """Score ``B`` videos ``[B, T, C, H, W]`` (float in [0, 1]) against ``B`` prompts."""
        check_reward_inputs(video, prompts)
        if self.differentiable:
            axes = self.score_axes(video, list(prompts))
        else:
            with torch.no_grad():
                axes = self.score_axes(video.detach(), list(prompts))
        axes = {name: axes[name].float() for name in self.axes}
        differentiable = self.differentiable and torch.is_grad_enabled()
        return RewardOutput(combine_axes(axes, self.combine), axes, differentiable)
