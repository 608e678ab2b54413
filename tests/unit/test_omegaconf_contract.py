"""The five OmegaConf private accessors `streamvid.core.config` uses behave as written against the pinned release.

OmegaConf has no public API for a child node whose value is ??? or None, nor for a node's declared types; the
config loader reads them through `_node`, `_is_unset`, `_ref_type`, `_key_type` and `_element_type`. An OmegaConf
upgrade that changes any of them fails here, naming which, before a merge silently misbehaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import omegaconf
from omegaconf import DictConfig, ListConfig, OmegaConf

from streamvid.core import config as C


@dataclass
class Inner:
    width: int = 4


@dataclass
class Schema:
    inner: Inner | None = None
    required: int = omegaconf.MISSING
    table: dict[int, str] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    value: float = 1.5


def _cfg() -> DictConfig:
    return OmegaConf.structured(Schema)


def test_the_pinned_release_is_installed():
    pyproject = (Path(C.__file__).parents[3] / "pyproject.toml").read_text()  # packages/core
    assert f'"omegaconf=={version("omegaconf")}"' in pyproject


def test_node_reads_unset_children_without_resolving_them():
    cfg = _cfg()
    inner, required, names = C._node(cfg, "inner"), C._node(cfg, "required"), C._node(cfg, "names")
    assert isinstance(inner, DictConfig) and isinstance(names, ListConfig)
    assert C._is_unset(inner) and C._is_unset(required) and not C._is_unset(names)
    assert not C._is_unset(C._node(cfg, "value")) and C._node(cfg, "value")._value() == 1.5


def test_ref_type_of_a_null_nested_dataclass_is_the_dataclass():
    assert C._ref_type(C._node(_cfg(), "inner")) is Inner


def test_key_and_element_types_of_typed_containers():
    cfg = _cfg()
    table = C._node(cfg, "table")
    assert C._key_type(table) is int and C._element_type(table) is str
    assert C._element_type(C._node(cfg, "names")) is str


def test_the_merge_built_on_them_fills_a_null_dataclass_and_names_bad_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("required: 2\ninner: {width: 8}\ntable: {1: a}\n")
    cfg = C.load_config(path, schema=Schema)
    assert cfg.inner == Inner(width=8) and cfg.table == {1: "a"} and cfg.required == 2
    path.write_text("required: 2\ntable: {x: a}\n")
    try:
        C.load_config(path, schema=Schema)
    except C.ConfigError as err:
        assert "wrong key type for 'table.x'" in str(err) and "expected int keys" in str(err)
    else:
        raise AssertionError("a str key in a dict[int, str] was accepted")
