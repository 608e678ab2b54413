"""Typed reward configs: one dataclass per reward, selected by name, from keywords, code or YAML.

Every registered reward is built through its typed config (`build_reward(config)`) and through a YAML
``reward:`` section (`RewardSelection` via `load_config`, a dataclass generated from the registry), and
scores exactly as the keyword build does; unknown fields fail naming the reward (keywords) or the key and the
file (YAML); loading a selection imports no adapter.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from reward_helpers import PROMPTS, TINY_BUILDERS, VIDEO_SHAPE

from streamvid.core.config import ConfigError, load_config, save_resolved_config
from streamvid.core.rewards import (
    AestheticConfig,
    ModelRewardConfig,
    RewardConfig,
    RewardSelection,
    ShapesAnalyticRewardConfig,
    ShapesLearnedRewardConfig,
    VideoAlignConfig,
    build_reward,
    registered_rewards,
    reward_config,
    reward_config_class,
)
from streamvid.core.rewards import configs as configs_module
from streamvid.core.rewards.qwen2vl_preprocess import Qwen2VLVideoPreprocessor, Qwen2VLVideoSettings


@dataclass
class Schema:
    """A config schema with a reward section, as a stage or eval config would hold it."""

    seed: int = 0
    reward: RewardSelection | None = None


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("reward_configs")


@pytest.fixture(scope="module")
def video():
    return torch.rand(VIDEO_SHAPE, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- one declaration per config


def test_selection_has_one_section_per_builtin_reward_typed_by_its_config_class():
    assert set(RewardSelection.sections()) == set(registered_rewards())
    hints = typing.get_type_hints(RewardSelection)
    for name in RewardSelection.sections():
        config_class = reward_config_class(name)  # the adapter's config_class
        assert hints[name] == config_class | None, name
        assert config_class.__module__ == configs_module.__name__, (
            f"declare {config_class.__name__} in configs"
        )
        assert issubclass(config_class, RewardConfig)


def test_videoalign_preprocessing_fields_are_declared_once():
    shared = [f.name for f in dataclasses.fields(Qwen2VLVideoSettings)]
    assert shared == ["fps", "video_fps", "min_frames", "max_frames", "min_pixels", "max_pixels"]
    for cls in (VideoAlignConfig, Qwen2VLVideoPreprocessor):
        assert issubclass(cls, Qwen2VLVideoSettings)
        own = set(vars(cls).get("__annotations__", {}))
        assert not own & set(shared), f"{cls.__name__} re-declares {sorted(own & set(shared))}"
    assert issubclass(VideoAlignConfig, ModelRewardConfig)
    config = VideoAlignConfig(fps=None, min_pixels=56 * 56)
    assert config.video_settings() == {
        **Qwen2VLVideoSettings().video_settings(),
        "fps": None,
        "min_pixels": 3136,
    }
    pre = Qwen2VLVideoPreprocessor(**config.video_settings(), patch_size=14)
    assert pre.video_settings() == config.video_settings()


def test_videoalign_reward_preprocesses_with_its_config(scratch):
    reward = TINY_BUILDERS["videoalign"](scratch / "videoalign")
    assert reward.preprocess.video_settings() == reward.config.video_settings()
    assert reward.preprocess.fps == 4.0 and reward.preprocess.max_pixels == 56 * 84  # the tiny settings


# ---------------------------------------------------------------- typed configs build every reward


@pytest.fixture(scope="module", params=registered_rewards())
def built(request, scratch):
    """``(name, keyword-built tiny reward)``."""
    name = request.param
    return name, TINY_BUILDERS[name](scratch / name)


def _same_scores(a, b, video) -> None:
    with torch.no_grad():
        out_a, out_b = a(video, PROMPTS), b(video, PROMPTS)
    assert torch.allclose(out_a.score, out_b.score, atol=1e-6)
    assert all(torch.allclose(out_a.axes[k], out_b.axes[k], atol=1e-6) for k in out_a.axes)


def test_typed_config_builds_every_registered_reward(built, video):
    name, reward = built
    config = reward.config
    assert type(config) is reward_config_class(name)
    rebuilt = build_reward(dataclasses.replace(config))
    assert type(rebuilt) is type(reward) and rebuilt.config == config
    _same_scores(reward, rebuilt, video)


def test_yaml_selection_builds_every_registered_reward(built, video, tmp_path):
    """The tiny reward's config written as a ``reward:`` section loads back equal and builds the same reward."""
    name, reward = built
    written = save_resolved_config(
        Schema(reward=RewardSelection(name=name, **{name: reward.config})), tmp_path
    )
    cfg = load_config(written, schema=Schema)
    assert cfg.reward.name == name and cfg.reward.config() == reward.config
    _same_scores(reward, build_reward(cfg.reward.config()), video)


def test_keyword_build_makes_the_typed_config():
    reward = build_reward("shapes_analytic", static_px=0.5, combine="text")
    assert reward.config == ShapesAnalyticRewardConfig(static_px=0.5, combine="text")
    assert reward_config("shapes_learned", path="x") == ShapesLearnedRewardConfig(path="x")


# ---------------------------------------------------------------- bad configs fail clearly


@pytest.mark.parametrize("name", registered_rewards())
def test_unknown_keyword_names_the_reward_and_its_fields(name):
    config_class = reward_config_class(name)
    some_field = dataclasses.fields(config_class)[-1].name
    with pytest.raises(ValueError, match=rf"unknown option\(s\) \['bogus'\] for reward '{name}' "
                                         rf"\({config_class.__name__}\); valid: .*'{some_field}'"):  # fmt: skip
        build_reward(name, bogus=1)


def test_unknown_keyword_fails_before_loading_weights(tmp_path):
    with pytest.raises(ValueError, match="'chekpoint_dir'.*'videoalign'"):
        build_reward("videoalign", chekpoint_dir=str(tmp_path / "absent"))


def test_a_config_names_its_reward_and_options_come_only_with_a_name():
    @dataclass
    class Unregistered(RewardConfig):
        pass

    with pytest.raises(TypeError, match="Unregistered is not a registered reward config"):
        build_reward(Unregistered())
    with pytest.raises(TypeError, match="keyword options only with a reward name"):
        build_reward(ShapesAnalyticRewardConfig(), static_px=1.0)
    with pytest.raises(TypeError, match="takes a RewardConfig or a reward name"):
        build_reward({"name": "shapes_analytic"})


def test_a_config_edited_after_it_was_made_is_checked_again_when_built():
    config = ShapesAnalyticRewardConfig()
    config.combine = "max"
    with pytest.raises(ConfigError, match="'combine' must be one of"):
        build_reward(config)


def test_shared_fields_are_checked_when_the_config_is_made():
    with pytest.raises(ConfigError, match="'combine' must be one of"):
        ShapesAnalyticRewardConfig(combine="max")
    with pytest.raises(ConfigError, match="'dtype' must be one of"):
        VideoAlignConfig(dtype="float64")
    with pytest.raises(ConfigError, match="'activation' must be one of"):
        AestheticConfig(activation="tanh")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("reward:\n  name: shapes_learned\n  shapes_learned: {pth: x}\n",
         r"unknown key 'reward\.shapes_learned\.pth' in .*bad\.yaml \(did you mean 'path'\?\)"),
        ("reward:\n  name: shapes_learned\n  shapes_lerned: {path: x}\n",
         r"unknown key 'reward\.shapes_lerned' in .*bad\.yaml \(did you mean 'shapes_learned'\?\)"),
        ("reward:\n  name: videoalign\n  videoalign: {fps: fast}\n",
         r"wrong type for 'reward\.videoalign\.fps' in .*bad\.yaml"),
        ("reward:\n  name: nope\n", r"bad\.yaml: unknown reward name 'nope'; registered rewards: aesthetic, "),
        ("reward:\n  shapes_learned: {path: x}\n", r"bad\.yaml at 'reward\.name'.*missing mandatory value"),
        ("reward:\n  name: shapes_analytic\n  shapes_analytic: {combine: max}\n",
         r"bad\.yaml: 'combine' must be one of"),
    ],
    ids=["unknown-field", "unknown-section", "wrong-type", "unknown-name", "no-name", "bad-value"],
)  # fmt: skip
def test_bad_yaml_selection_names_the_key_and_the_file(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path / "bad.yaml", text), schema=Schema)


# ---------------------------------------------------------------- selection semantics


def test_selection_composes_from_fragments_and_overrides(tmp_path):
    """A base fragment may carry several rewards' sections; ``name`` picks one; `--set` edits it."""
    _write(tmp_path / "rewards.yaml", "name: shapes_learned\nshapes_analytic: {static_px: 0.5}\n"
                                      "videoalign: {checkpoint_dir: ckpt/VideoReward, fps: null}\n")  # fmt: skip
    main = _write(tmp_path / "main.yaml", "base: [{reward: ./rewards.yaml}]\nseed: 3\n")
    cfg = load_config(main, schema=Schema)
    assert cfg.reward.name == "shapes_learned" and cfg.reward.shapes_learned is None
    assert cfg.reward.config() == ShapesLearnedRewardConfig()  # no section: the config's defaults
    assert cfg.reward.videoalign == VideoAlignConfig(checkpoint_dir="ckpt/VideoReward", fps=None)

    cfg = load_config(
        main, ["reward.name=shapes_analytic", "reward.shapes_analytic.combine=text"], schema=Schema
    )
    assert cfg.reward.config() == ShapesAnalyticRewardConfig(static_px=0.5, combine="text")
    reward = build_reward(cfg.reward.config())
    assert type(reward).__name__ == "ShapesAnalyticReward" and reward.config == cfg.reward.config()


def test_a_reward_registers_on_its_config_and_the_selection_is_derived_from_the_registry(monkeypatch):
    """Registering a config class is all a new reward needs: it builds by name and by config, and a
    regenerated `RewardSelection` has its typed section (the shipped one has the built-in sections)."""
    monkeypatch.setattr(RewardConfig, "_choices", dict(RewardConfig._choices))

    @RewardConfig.register("analytic_again", target="streamvid.core.rewards.shapes_analytic:ShapesAnalyticReward")
    @dataclass
    class AnalyticAgainConfig(ShapesAnalyticRewardConfig):
        pass

    assert "analytic_again" in registered_rewards()
    assert reward_config_class("analytic_again") is AnalyticAgainConfig
    assert type(build_reward("analytic_again", static_px=0.5).config) is AnalyticAgainConfig
    selection = configs_module.make_reward_selection()
    assert typing.get_type_hints(selection)["analytic_again"] == AnalyticAgainConfig | None
    picked = selection(name="analytic_again", analytic_again=AnalyticAgainConfig(static_px=0.5))
    assert type(build_reward(picked.config())).__name__ == "ShapesAnalyticReward"
    # the shipped selection was made at import: the new name is selectable with its defaults
    assert RewardSelection(name="analytic_again").config() == AnalyticAgainConfig()


def test_registry_rules(monkeypatch):
    monkeypatch.setattr(RewardConfig, "_choices", dict(RewardConfig._choices))

    @RewardConfig.register("dummy", target="streamvid.no_such_module:Reward")
    @dataclass
    class DummyConfig(RewardConfig):
        pass

    with pytest.raises(ImportError, match="streamvid.no_such_module:Reward"):
        build_reward("dummy")  # the target is imported only when built
    with pytest.raises(ValueError, match="'dummy' is already registered by DummyConfig"):
        RewardConfig.register("dummy", target="other.module:Reward")(ShapesAnalyticRewardConfig)
    with pytest.raises(ValueError, match="DummyConfig is already registered as reward 'dummy'"):
        RewardConfig.register("dummy_again", target="other.module:Reward")(DummyConfig)
    with pytest.raises(ValueError, match="module:Attr"):
        RewardConfig.register("bad", target="no_colon")
    with pytest.raises(TypeError, match="not a RewardConfig subclass"):
        RewardConfig.register("plain", target="collections:OrderedDict")(dict)


def test_loading_a_selection_imports_no_adapter(tmp_path):
    path = _write(
        tmp_path / "r.yaml", "reward:\n  name: videoalign\n  videoalign: {checkpoint_dir: x, fps: 4}\n"
    )
    code = (
        "import sys, dataclasses\n"
        "from streamvid.core.config import load_config\n"
        "from streamvid.core.rewards import RewardSelection\n"
        "@dataclasses.dataclass\n"
        "class S:\n"
        "    reward: RewardSelection | None = None\n"
        f"cfg = load_config({str(path)!r}, schema=S)\n"
        "assert cfg.reward.config().fps == 4.0\n"
        "mods = ('transformers', 'streamvid.core.rewards.videoalign', 'streamvid.core.rewards.clip_frames',\n"
        "        'streamvid.core.rewards.shapes_analytic', 'streamvid.core.rewards.shapes_learned')\n"
        "print(sorted(m for m in mods if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]"]


def test_missing_reward_weights_are_named_before_anything_is_built(tmp_path):
    """`RewardSelection.check_paths`: a required path left empty, or a given path that does not exist, is one
    `ConfigError` naming ``<where>.<reward>.<field>``; existing paths and unset optional ones pass."""
    with pytest.raises(ConfigError, match=r"^reward\.videoalign\.checkpoint_dir: required"):
        RewardSelection(name="videoalign").check_paths()
    with pytest.raises(ConfigError, match=r"^short_reward\.aesthetic\.head_path: not found: /nope"):
        RewardSelection(name="aesthetic", aesthetic=AestheticConfig(model_dir=str(tmp_path), head_path="/nope")
                        ).check_paths("short_reward")
    with pytest.raises(ConfigError, match=r"^reward\.shapes_learned\.path: not found"):
        RewardSelection(name="shapes_learned", shapes_learned=ShapesLearnedRewardConfig(path="/nope")).check_paths()
    RewardSelection(name="shapes_learned").check_paths()  # None: the shipped checkpoint
    RewardSelection(name="videoalign", videoalign=VideoAlignConfig(checkpoint_dir=str(tmp_path))).check_paths()
    RewardSelection(name="shapes_analytic").check_paths()  # no weights at all
