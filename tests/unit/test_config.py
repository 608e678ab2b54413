"""Behaviour of `streamvid.core.config`: composition order, `base:` fragments, errors, resolved-config dumps."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from omegaconf import DictConfig, ListConfig

from streamvid.core.config import ConfigError, check_choice, load_config, save_resolved_config
from streamvid.core.generator_config import GeneratorConfig
from streamvid.core.model_config import WanModelConfig


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass
class Schema:
    seed: int = 0
    name: str = "default"
    mode: str = "train"
    model: WanModelConfig = field(default_factory=WanModelConfig)
    optim: Optim | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, ("train", "eval"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A throwaway repository root with `configs/` and `experiments/`."""
    (tmp_path / "configs" / "model").mkdir(parents=True)
    (tmp_path / "experiments").mkdir()
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides, schema=Schema)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_empty_file_gives_schema_defaults(repo: Path) -> None:
    cfg = load_config(write(repo / "experiments/e.yaml", ""), schema=Schema)
    assert cfg == Schema()


def test_composition_order_defaults_base_file_overrides(repo: Path) -> None:
    write(repo / "configs/common.yaml", "seed: 1\nname: from_base\ntags: [a]\n")
    exp = write(repo / "experiments/e.yaml", "base: [common.yaml]\nseed: 2\n")
    assert load_config(exp, schema=Schema) == Schema(seed=2, name="from_base", tags=["a"])
    cfg = load_config(exp, ["seed=3", "tags=[x, y]"], schema=Schema)
    assert (cfg.seed, cfg.name, cfg.mode, cfg.tags) == (3, "from_base", "train", ["x", "y"])


def test_later_base_entries_override_earlier(repo: Path) -> None:
    write(repo / "configs/a.yaml", "seed: 1\nname: a\n")
    write(repo / "configs/b.yaml", "seed: 2\n")
    cfg = load_config(write(repo / "experiments/e.yaml", "base: [a.yaml, b.yaml]\n"), schema=Schema)
    assert (cfg.seed, cfg.name) == (2, "a")


def test_nested_base_chain_and_file_relative_paths(repo: Path) -> None:
    write(repo / "configs/c.yaml", "seed: 1\nname: c\nmode: eval\n")
    write(repo / "configs/sub/b.yaml", "base: [c.yaml]\nseed: 2\nname: b\n")
    write(repo / "experiments/group/a.yaml", "base: [../../configs/sub/b.yaml]\nseed: 3\n")
    exp = write(repo / "experiments/group/e.yaml", "base: ./a.yaml\n")  # a single entry needs no list
    assert load_config(exp, schema=Schema) == Schema(seed=3, name="b", mode="eval")


def test_fragment_mounted_under_a_key(repo: Path) -> None:
    write(repo / "configs/model/base.yaml", "num_layers: 3\nffn_dim: 64\n")
    write(repo / "configs/model/m.yaml", "base: [./base.yaml]\nnum_layers: 5\nnum_attention_heads: 2\n")
    write(repo / "configs/optim.yaml", "lr: 0.5\n")
    exp = write(
        repo / "experiments/e.yaml",
        "base:\n  - {model: model/m.yaml}\n  - optim: optim.yaml\nmodel:\n  ffn_dim: 128\n",
    )
    cfg = load_config(exp, ["model.patch_size=[1,4,4]"], schema=Schema)
    assert isinstance(cfg.model, WanModelConfig) and isinstance(cfg.optim, Optim)
    assert (cfg.model.num_layers, cfg.model.num_attention_heads, cfg.model.ffn_dim) == (5, 2, 128)
    assert cfg.model.patch_size == (1, 4, 4)
    assert cfg.optim == Optim(lr=0.5)
    assert cfg.model.text_dim == WanModelConfig().text_dim  # untouched fields keep schema defaults


def test_result_is_typed_all_the_way_down(repo: Path) -> None:
    cfg = load_config(write(repo / "experiments/e.yaml", "optim: {lr: 0.1}\n"), schema=Schema)

    def check(obj: object) -> None:
        assert not isinstance(obj, (DictConfig, ListConfig))
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                check(getattr(obj, f.name))

    check(cfg)
    assert type(cfg.model.patch_size) is tuple and type(cfg.optim.betas) is tuple and type(cfg.tags) is list


def test_unknown_key_names_key_file_and_valid_keys(repo: Path) -> None:
    message = error_of(write(repo / "experiments/e.yaml", "sed: 1\n"))
    assert "'sed'" in message and "e.yaml" in message and "did you mean 'seed'" in message
    assert "valid keys at top level: seed, name, mode, model, optim, tags" in message

    message = error_of(write(repo / "experiments/f.yaml", "model:\n  num_layer: 2\n"))
    assert "'model.num_layer'" in message and "f.yaml" in message
    assert "valid keys under 'model':" in message and "num_layers" in message and "patch_size" in message


def test_unknown_key_in_a_mounted_fragment_names_the_fragment(repo: Path) -> None:
    write(repo / "configs/model/bad.yaml", "layers: 2\n")
    message = error_of(write(repo / "experiments/e.yaml", "base: [{model: model/bad.yaml}]\n"))
    assert "'model.layers'" in message and "bad.yaml" in message and "e.yaml" not in message


def test_unknown_override_key_names_command_line(repo: Path) -> None:
    message = error_of(write(repo / "experiments/e.yaml", ""), ("model.layers=2",))
    assert "'model.layers'" in message and "command line" in message and "num_layers" in message


def test_wrong_type_names_key_expected_and_got(repo: Path) -> None:
    message = error_of(write(repo / "experiments/e.yaml", "seed: abc\n"))
    assert "'seed'" in message and "expected int" in message and "'abc'" in message and "e.yaml" in message

    message = error_of(write(repo / "experiments/f.yaml", "model:\n  patch_size: [1, x, 2]\n"))
    assert "'model.patch_size'" in message and "tuple[int, int, int]" in message and "'x'" in message

    message = error_of(write(repo / "experiments/g.yaml", ""), ("model.num_layers=many",))
    assert "'model.num_layers'" in message and "expected int" in message and "command line" in message


def test_choice_and_post_init_validation(repo: Path) -> None:
    message = error_of(write(repo / "experiments/e.yaml", "mode: bogus\n"))
    assert "'mode'" in message and "'train', 'eval'" in message and "'bogus'" in message
    message = error_of(write(repo / "experiments/f.yaml", "model: {attention_head_dim: 33}\n"))
    assert "attention_head_dim" in message and "33" in message


@pytest.mark.parametrize("bad", ["seed", "=3", "model..x=1", "seed 3"])
def test_override_without_key_value_syntax_fails(repo: Path, bad: str) -> None:
    message = error_of(write(repo / "experiments/e.yaml", ""), (bad,))
    assert f"'{bad}'" in message and "key=value" in message


def test_missing_files_are_named(repo: Path) -> None:
    assert "nowhere.yaml" in error_of(repo / "experiments/nowhere.yaml")
    message = error_of(write(repo / "experiments/e.yaml", "base: [{model: model/nope.yaml}]\n"))
    assert "model/nope.yaml" in message and "e.yaml" in message


def test_circular_base_fails(repo: Path) -> None:
    write(repo / "configs/a.yaml", "base: [b.yaml]\n")
    write(repo / "configs/b.yaml", "base: [a.yaml]\n")
    assert "circular" in error_of(write(repo / "experiments/e.yaml", "base: [a.yaml]\n"))


def test_saved_config_loads_back_equal(repo: Path) -> None:
    exp = write(repo / "experiments/e.yaml", "seed: 7\noptim: {lr: 0.25}\nmodel: {num_layers: 2}\n")
    cfg = load_config(exp, ["tags=[a]", "model.patch_size=[1,1,1]"], schema=Schema)
    saved = save_resolved_config(cfg, repo / "runs/r1")
    assert saved == repo / "runs/r1/config.yaml"
    text = saved.read_text()
    assert "# git_rev: " in text and "# schema: " in text and "base:" not in text
    assert load_config(saved, schema=Schema) == cfg


def test_save_survives_missing_git(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(repo / "empty-bin"))
    saved = save_resolved_config(Schema(seed=4), repo / "out")
    assert "# git_rev: unavailable" in saved.read_text()
    assert load_config(saved, schema=Schema) == Schema(seed=4)


@dataclass
class _Run:
    generator: GeneratorConfig | None = None


def test_optional_nested_dataclass_filled_from_yaml(tmp_path):
    """An optional (None by default) sub-config with nested dataclasses is built from YAML."""
    path = tmp_path / "run.yaml"
    path.write_text("generator:\n  model:\n    num_layers: 3\n")
    cfg = load_config(path, schema=_Run)
    assert cfg.generator.model.num_layers == 3 and cfg.generator.sampler.cache.chunk_frames == 3
    assert load_config(tmp_path / "run.yaml", ["generator=null"], schema=_Run).generator is None
