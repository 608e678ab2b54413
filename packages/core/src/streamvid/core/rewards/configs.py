"""Every built-in reward's config dataclass, registered on `RewardConfig`, and `RewardSelection` (the
``reward:`` section of a YAML config), derived from that registry.

This is where a reward's settings are declared, once, and where it is registered: ``@RewardConfig.register(
name, target=...)`` names the adapter that the config builds (imported only then, by `build_reward`). The
adapter modules import their config from here (and re-export it). The module imports no adapter and no model
library (only `rewards.base` and the torch-only `qwen2vl_preprocess`), so a config schema holding a
`RewardSelection` stays cheap to load and validate.

===================  ============================  ===========================================================
registry name        config (here)                 adapter (its target)
===================  ============================  ===========================================================
``videoalign``       `VideoAlignConfig`            ``streamvid.core.rewards.videoalign.VideoAlignReward``
``clip_frames``      `CLIPFrameScoreConfig`        ``streamvid.core.rewards.clip_frames.CLIPFrameScore``
``aesthetic``        `AestheticConfig`             ``streamvid.core.rewards.clip_frames.AestheticScore``
``shapes_analytic``  `ShapesAnalyticRewardConfig`  ``streamvid.core.rewards.shapes_analytic.ShapesAnalyticReward``
``shapes_learned``   `ShapesLearnedRewardConfig`   ``streamvid.core.rewards.shapes_learned.ShapesLearnedReward``
===================  ============================  ===========================================================

Every config subclasses `RewardConfig` (``combine``, ``differentiable``); rewards backed by weights subclass
`ModelRewardConfig` (adds ``dtype``, ``device``). `VideoAlignConfig` also derives from
`Qwen2VLVideoSettings`, which declares its frame-sampling and resize fields for the preprocessor as well.

In YAML, select a reward by name and give its settings under a key of the same name (sections of other
rewards may be present, e.g. from a base fragment, and are ignored)::

    reward:
      name: shapes_learned
      shapes_learned: {path: null}

``load_config`` checks every key against these dataclasses (an unknown key fails naming the key and the
file) and `RewardSelection` checks the name; ``build_reward(selection.config())`` then imports and builds the
adapter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from streamvid.core.config import ConfigError, check_choice
from streamvid.core.rewards.base import ModelRewardConfig, RewardConfig
from streamvid.core.rewards.qwen2vl_preprocess import Qwen2VLVideoSettings

__all__ = [
    "AESTHETIC_ACTIVATIONS",
    "AestheticConfig",
    "CLIPFrameScoreConfig",
    "ModelRewardConfig",
    "Qwen2VLVideoSettings",
    "RewardConfig",
    "RewardSelection",
    "ShapesAnalyticRewardConfig",
    "ShapesLearnedRewardConfig",
    "VideoAlignConfig",
]

AESTHETIC_ACTIVATIONS = ("none", "relu", "gelu")
"""Activations `AestheticConfig.activation` may name (between the head's linear layers)."""


# ---------------------------------------------------------------------------------------- model rewards


@RewardConfig.register("videoalign", target="streamvid.core.rewards.videoalign:VideoAlignReward")
@dataclass
class VideoAlignConfig(Qwen2VLVideoSettings, ModelRewardConfig):
    """Settings of `VideoAlignReward`; defaults reproduce VideoAlign's released inference setup.

    The frame-sampling and resize fields (``fps``, ``video_fps``, ``min_frames``, ``max_frames``,
    ``min_pixels``, ``max_pixels``) are inherited from `Qwen2VLVideoSettings`, declared there once for this
    config and the preprocessor.
    """

    REQUIRED_PATHS: ClassVar[tuple[str, ...]] = ("checkpoint_dir",)
    OPTIONAL_PATHS: ClassVar[tuple[str, ...]] = ("base_model_dir", "prompt_template_file")

    checkpoint_dir: str = ""
    """Folder with the reward weights (see the videoalign module docstring); required."""
    base_model_dir: str = ""
    """Qwen2-VL-2B-Instruct folder (config.json, tokenizer; weights for the LoRA layout). "" = checkpoint_dir."""
    checkpoint_step: int | None = None
    """Use ``checkpoint-<step>/``; None: the highest step, or the folder itself if it holds the weights."""
    normalize: bool = True
    """z-normalise raw VQ/MQ/TA with ``norm_mean``/``norm_std`` (reference ``use_norm=True``)."""
    norm_mean: tuple[float, float, float] = (3.6757, 1.1646, 2.8105)
    """Published means of raw VQ, MQ, TA (model_config.json ``inference_config``)."""
    norm_std: tuple[float, float, float] = (2.2476, 1.3811, 2.5121)
    """Published standard deviations of raw VQ, MQ, TA."""
    prompt_template_file: str = ""
    """Text file with the prompt template ({prompt} + the three tokens); "" = our detailed_special paraphrase."""
    lora_r: int | None = None
    """LoRA rank; None: adapter_config.json ``r``, model_config.json ``peft_lora_config.lora_r``, else 64."""
    lora_alpha: float | None = None
    """LoRA alpha; None: adapter_config.json / model_config.json, else 128."""
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    """Recompute activations in backward (for saliency on the 2B model)."""


@RewardConfig.register("clip_frames", target="streamvid.core.rewards.clip_frames:CLIPFrameScore")
@dataclass
class CLIPFrameScoreConfig(ModelRewardConfig):
    """Settings of `CLIPFrameScore`."""

    REQUIRED_PATHS: ClassVar[tuple[str, ...]] = ("model_dir",)

    model_dir: str = ""
    """transformers CLIP folder: config.json, model.safetensors (or pytorch_model.bin), tokenizer files."""
    num_frames: int | None = None
    """Frames scored per video, uniformly spread; None scores every frame."""
    scale: float = 1.0
    """Multiplier of the cosine similarity (CLIPScore: 100)."""
    mean: float = 0.0
    """Subtracted after scaling (z-normalisation; 0 / 1 keep the raw scaled cosine)."""
    std: float = 1.0


@RewardConfig.register("aesthetic", target="streamvid.core.rewards.clip_frames:AestheticScore")
@dataclass
class AestheticConfig(ModelRewardConfig):
    """Settings of `AestheticScore`."""

    REQUIRED_PATHS: ClassVar[tuple[str, ...]] = ("model_dir", "head_path")

    model_dir: str = ""
    """transformers CLIP folder (config.json and weights; the text tower is not used)."""
    head_path: str = ""
    """``.safetensors`` (or ``.pth``) file of the MLP head: 2-D ``*weight`` and optional ``*bias`` tensors."""
    num_frames: int | None = None
    """Frames scored per video, uniformly spread; None scores every frame."""
    activation: str = "none"
    """Between head layers: "none" (LAION aesthetic v2 is purely linear), "relu" or "gelu"."""
    normalize_embeds: bool = True
    """L2-normalise the CLIP image embedding before the head (LAION predictors expect it)."""
    mean: float = 0.0
    std: float = 1.0

    def validate(self) -> None:
        super().validate()
        check_choice("activation", self.activation, AESTHETIC_ACTIVATIONS)


# ---------------------------------------------------------------------------------- shapes-world rewards


class ShapesPromptCheck:
    """The shapes-world rewards read the prompt with the world's grammar (`world.prompts.parse_prompt`)."""

    def prompt_problem(self, prompt: str) -> str | None:
        from streamvid.core.text.learned import split_words
        from streamvid.core.world.prompts import VOCAB, parse_prompt

        try:
            parse_prompt(prompt)
        except ValueError as err:
            unknown = list(dict.fromkeys(w for w in split_words(prompt) if w.isalnum() and w not in VOCAB))
            words = f"words outside the shapes vocabulary: {', '.join(unknown)}; " if unknown else ""
            return (f"the shapes-world rewards cannot score it ({words}{str(err).split(': ', 1)[-1]}); "
                    "write e.g. \"a red circle moving left, then up\"")
        return None


@RewardConfig.register("shapes_analytic", target="streamvid.core.rewards.shapes_analytic:ShapesAnalyticReward")
@dataclass
class ShapesAnalyticRewardConfig(ShapesPromptCheck, RewardConfig):
    """Settings of `ShapesAnalyticReward`; axes are in [0, 1] with no further normalisation."""

    mask_threshold: float = 0.35
    """Distance from the background colour (RGB, L2) at which the soft foreground mask is 1/2."""
    mask_temperature: float = 0.05
    """Width of the foreground sigmoid (RGB distance)."""
    colour_temperature: float = 0.03
    """Temperature of the colour softmax over squared palette distances (palette gaps are >= 0.42)."""
    shape_temperature: float = 0.05
    """Temperature of the shape softmax over template residuals (per unit area)."""
    shape_blurs: tuple[float, ...] = (0.0, 0.75, 1.5)
    """Template blur sigmas (px); each shape's residual is the best over them, so blur is not a wrong shape."""
    dir_temperature: float = 0.2
    """Width (px/frame) of the direction-agreement sigmoids."""
    static_px: float = 0.25
    """Step length (px) below which the object counts as static, as in the oracle."""
    noise_scale: float = 0.03
    """Pixel-noise level (std) at which the cleanliness factor is 1/2, as the oracle's."""
    compactness_max: float = 1.8
    """Spread of the coverage relative to a same-area disc at which ``integrity`` is 1/2 (one object <= 1.3)."""


@RewardConfig.register("shapes_learned", target="streamvid.core.rewards.shapes_learned:ShapesLearnedReward")
@dataclass
class ShapesLearnedRewardConfig(ShapesPromptCheck, RewardConfig):
    """Settings of `ShapesLearnedReward`; axes are sigmoid outputs in [0, 1], trained on oracle scores."""

    OPTIONAL_PATHS: ClassVar[tuple[str, ...]] = ("path",)

    path: str | None = None
    """Checkpoint directory (``reward.safetensors`` + ``reward.json``); None: the shipped one."""


# ---------------------------------------------------------------------------------------------- selection


class RewardSelectionBase:
    """The behaviour of `RewardSelection`; its fields (``name`` + one section per reward) are generated."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in RewardConfig.registered_names():
            raise ConfigError(
                f"unknown reward name '{self.name}'; registered rewards: {', '.join(RewardConfig.registered_names())}"
            )

    @classmethod
    def sections(cls) -> tuple[str, ...]:
        """Names of the typed sections (the rewards registered when `RewardSelection` was made)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "name")

    def config(self) -> RewardConfig:
        """The selected reward's config: its section, or (absent) its config dataclass's defaults."""
        section = getattr(self, self.name) if self.name in self.sections() else None
        return section if section is not None else RewardConfig.choice(self.name).config_class()

    def check_paths(self, where: str = "reward") -> None:
        """Raise `ConfigError` naming ``<where>.<name>.<field>`` when the selected reward's weights are not set or
        not found (`RewardConfig.missing_paths`); run it before any expensive work."""
        problems = self.config().missing_paths()
        if problems:
            field_name, problem = problems[0]
            raise ConfigError(f"{where}.{self.name}.{field_name}: {problem}")

    def check_prompts(self, prompts: list[str], where: str = "reward") -> None:
        """Raise `ConfigError` naming the first prompt the selected reward cannot score (`prompt_problem`); run it
        before any expensive work."""
        config = self.config()
        for prompt in prompts:
            problem = config.prompt_problem(prompt)
            if problem is not None:
                raise ConfigError(f"prompt {prompt!r}: {where} {self.name}: {problem}")


def make_reward_selection() -> type[RewardSelectionBase]:
    """The dataclass of a ``reward:`` section, generated from the registry: ``name: str`` plus, per registered
    reward, an optional section of the same name typed by its config class (``None`` by default)."""
    sections = [
        (name, RewardConfig.choice(name).config_class | None, dataclasses.field(default=None))
        for name in RewardConfig.registered_names()
    ]
    doc = (
        "A reward chosen by registry name with its typed settings: the ``reward:`` section of a YAML config.\n\n"
        "    One optional section per registered reward, named as in the registry and typed by that reward's\n"
        "    config dataclass; only the section of ``name`` is used (absent: that config's defaults). A reward\n"
        "    registered after this module was imported has no section: it is selected with its defaults.\n"
    )
    return dataclasses.make_dataclass(
        "RewardSelection",
        [("name", str), *sections],
        bases=(RewardSelectionBase,),
        namespace={"__doc__": doc, "__module__": __name__},
    )


RewardSelection = make_reward_selection()
"""``reward:`` section type: ``name`` + one optional section per built-in reward (see `make_reward_selection`)."""
