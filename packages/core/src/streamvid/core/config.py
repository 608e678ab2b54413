"""Typed configuration: dataclass schema <- YAML fragments <- YAML file <- command-line overrides.

A config is a (possibly nested) dataclass. `load_config` composes it once and returns an instance of that
dataclass; code never sees an OmegaConf `DictConfig`.

Composition order, later wins::

    schema defaults  <-  fragments listed under `base:`  <-  the file itself  <-  CLI dot-list overrides

YAML conventions:

- `base:` (top level of a file, optional) lists fragments merged *before* the file, in order (later entries
  override earlier ones). Fragments may have their own `base:`. An entry is either

  - a path string: the fragment is merged at the root, or
  - a one-item mapping `{key: path}`: the fragment is mounted under `key` (dotted keys such as
    `trainer.optim` mount deeper). A mounted fragment's own `base:` entries are mounted under the same key.

  Paths starting with `./` or `../` are relative to the including file; any other relative path is relative
  to the repository's `configs/` directory (e.g. `model/tiny.yaml`). A single entry may be written without
  the list brackets. `base` is therefore a reserved key at the top level of every YAML file.
- Overrides are `dotted.key=value` strings, values parsed as YAML (`model.patch_size=[1,2,2]`, `seed=3`).
- `${...}` interpolations are resolved when the typed object is built.

Every error is a `ConfigError` whose single-line message names the key, the source (file or "command line")
and what was expected.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import subprocess
import typing
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

__all__ = ["ConfigError", "check_at_least", "check_choice", "load_config", "resolved_config_yaml",
           "save_resolved_config"]

T = TypeVar("T")

COMMAND_LINE = "command line"
"""Source name used in error messages for CLI overrides."""


class ConfigError(ValueError):
    """A config could not be composed or validated; the message is one line naming key, source and cause."""


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    """Raise `ConfigError` unless `value` is one of `choices`; call from a schema's `__post_init__`.

    OmegaConf does not validate `Literal` annotations, so string choices are typed `str` and checked here.
    """
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"'{name}' must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_at_least(section: str, minimum: float, **values: float | None) -> None:
    """Raise `ConfigError` naming each of `values` (field name -> value) below `minimum` (None is not checked).

        check_at_least("trainer", 1, max_steps=-5, batch_size=4)
        # ConfigError: trainer.max_steps must be >= 1, got -5
    """
    bad = [f"{section}.{name}" if section else name for name, v in values.items() if v is not None and v < minimum]
    if bad:
        got = ", ".join(str(values[name.rpartition(".")[2]]) for name in bad)
        raise ConfigError(f"{' and '.join(bad)} must be >= {minimum}, got {got}")


def load_config(
    path: str | Path, overrides: Sequence[str] = (), *, schema: type[T], check: Callable[[T], None] | None = None
) -> T:
    """Compose `path` (with its `base:` fragments) and `overrides` over `schema`'s defaults.

    Args:
        path: the YAML file to load.
        overrides: dot-list strings such as `["model.num_layers=4", "seed=3"]`.
        schema: the dataclass type describing the config.
        check: optional further validation of the typed config (raises `ConfigError`), e.g. the checks that
            need the machine (a CUDA device) and so do not belong in `__post_init__`.

    Returns:
        An instance of `schema` (nested dataclasses, lists, tuples; never a `DictConfig`).

    Raises:
        ConfigError: unknown key, wrong type, missing file, bad override syntax, missing mandatory value,
            or a `__post_init__` / `check` validation failure. A validation failure that only the overrides
            cause names the first override that causes it (``--set n=0``); otherwise it names the file.
    """
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        raise ConfigError(f"schema must be a dataclass type, got {schema!r}")
    path = Path(path)
    layers = _file_layers(path.resolve(), mount=(), stack=())
    parsed = [_parse_override(item) for item in overrides]
    try:
        return _build(schema, layers, parsed, path, check)
    except _InvalidConfig as err:
        culprits = _failing_overrides(schema, layers, parsed, overrides, path, check, err.message)
        if not culprits:
            raise ConfigError(f"invalid config {_show(path)}{err.where}: {err.message}") from None
        named = ", ".join(f"--set {item}" for item in culprits)
        raise ConfigError(f"invalid value from the command line ({named}): {err.message}") from None


class _InvalidConfig(Exception):
    """A composed config failed validation (`__post_init__`, a missing value or `check`)."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message, self.where = message, where


def _build(schema: type[T], layers: list[tuple[dict, str]], overrides: list[dict], path: Path,
           check: Callable[[T], None] | None) -> T:
    """Schema defaults <- file layers <- overrides, typed and validated (`_InvalidConfig` on a failed check)."""
    cfg = OmegaConf.structured(schema)
    _make_writable(cfg)
    for data, source in layers:
        _merge(cfg, copy.deepcopy(data), source, prefix="")
    for data in overrides:
        _merge(cfg, copy.deepcopy(data), COMMAND_LINE, prefix="")
    OmegaConf.set_struct(cfg, True)
    obj = _to_object(cfg)
    if check is not None:
        try:
            check(obj)
        except ConfigError as err:
            raise _InvalidConfig(_one_line(err)) from None
    return obj


def _failing_overrides(schema: type[T], layers: list[tuple[dict, str]], parsed: list[dict], overrides: Sequence[str],
                       path: Path, check: Callable[[T], None] | None, message: str) -> list[str]:
    """The overrides behind a validation failure: [] when the file alone fails; else each override without which
    the failure (`message`) goes away or changes, or all of them when none does alone."""
    if not parsed or _fails(schema, layers, [], path, check):
        return []
    culprits = [item for i, item in enumerate(overrides)
                if _fails(schema, layers, parsed[:i] + parsed[i + 1:], path, check) != message]
    return culprits or list(overrides)


def _fails(schema: type[T], layers: list[tuple[dict, str]], parsed: list[dict], path: Path,
           check: Callable[[T], None] | None) -> str | None:
    """The validation message of this composition, or None when it validates."""
    try:
        _build(schema, layers, parsed, path, check)
    except _InvalidConfig as err:
        return err.message
    except ConfigError as err:  # not expected: each override merged alone before
        return str(err)
    return None


def save_resolved_config(cfg: Any, out_dir: str | Path) -> Path:
    """Write `out_dir/config.yaml`: the typed config as YAML, headed by comment lines with the git revision.

    The file loads back with `load_config(path, schema=type(cfg))` to an equal dataclass. Git information is
    best effort ("unavailable" without git or outside a repository); this function never fails because of it.
    """
    text = resolved_config_yaml(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "config.yaml"
    target.write_text(text)
    return target


def resolved_config_yaml(cfg: Any) -> str:
    """`save_resolved_config`'s text: the typed config as YAML under the schema / git-revision comment lines."""
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        raise ConfigError(f"save_resolved_config expects a dataclass instance, got {type(cfg).__name__}")
    schema = type(cfg)
    header = [
        "# Resolved config written by streamvid.core.config.save_resolved_config.",
        f"# schema: {schema.__module__}.{schema.__qualname__}",
        f"# git_rev: {_git_revision()}",
    ]
    return "\n".join(header) + "\n" + OmegaConf.to_yaml(OmegaConf.structured(cfg), resolve=True)


# ----------------------------------------------------------------------------------------------------------
# Composition


def _file_layers(
    path: Path, mount: tuple[str, ...], stack: tuple[Path, ...], included_from: Path | None = None
) -> list[tuple[dict, str]]:
    """Return `(data, source)` layers for `path`: its `base:` fragments (recursively) then the file itself."""
    if path in stack:
        chain = " -> ".join(_show(p) for p in (*stack, path))
        raise ConfigError(f"circular base: chain {chain}")
    data = _read_yaml(path, included_from)
    entries = data.pop("base", None)
    layers: list[tuple[dict, str]] = []
    for entry_path, entry_mount in _base_entries(entries, path):
        target = _resolve_base(entry_path, path)
        layers += _file_layers(target, (*mount, *entry_mount), (*stack, path), included_from=path)
    for key in reversed(mount):
        data = {key: data}
    layers.append((data, _show(path)))
    return layers


def _read_yaml(path: Path, included_from: Path | None) -> dict:
    """Load one YAML file as a plain dict (empty file -> {}), interpolations left unresolved."""
    if not path.is_file():
        where = f" (in base: of {_show(included_from)})" if included_from else ""
        raise ConfigError(f"config file not found: {_show(path)}{where}")
    try:  # OmegaConf's YAML loader: `1e-6` is a float (PyYAML reads a string) and duplicate keys fail
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"{_show(path)}: invalid YAML: {_one_line(err)}") from None
    except UnicodeDecodeError as err:  # a binary file (an image, a checkpoint) given as the config
        raise ConfigError(f"{_show(path)}: not a YAML text file (not UTF-8: byte 0x{err.object[err.start]:02x} at "
                          f"offset {err.start})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{_show(path)}: top level must be a mapping, got {type(data).__name__}")
    return data


def _base_entries(entries: object, path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """Normalise a `base:` value to `[(fragment_path, mount_keys)]`."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        entries = [entries]
    out = []
    for entry in entries:
        if isinstance(entry, str):
            out.append((entry, ()))
        elif isinstance(entry, dict) and len(entry) == 1:
            ((key, value),) = entry.items()
            if not (isinstance(key, str) and isinstance(value, str)):
                raise ConfigError(f"{_show(path)}: base entry {entry!r} must map a key to a path string")
            out.append((value, tuple(key.split("."))))
        else:
            raise ConfigError(
                f"{_show(path)}: base entry {entry!r} must be a path or a one-item mapping {{key: path}}"
            )
    return out


def _resolve_base(entry: str, including: Path) -> Path:
    """`./x`, `../x` -> relative to the including file; other relative paths -> relative to `configs/`."""
    candidate = Path(entry)
    if candidate.is_absolute():
        return candidate
    if entry.startswith(("./", "../")):
        return (including.parent / candidate).resolve()
    configs_dir = _configs_dir(including)
    if configs_dir is None:
        raise ConfigError(
            f"{_show(including)}: base entry '{entry}' is relative to configs/, but no configs/ directory "
            "was found above this file (use ./ or ../ for paths relative to the file)"
        )
    return (configs_dir / candidate).resolve()


def _configs_dir(path: Path) -> Path | None:
    """The `configs/` directory of the repository holding `path`: the nearest ancestor having one."""
    for parent in path.parents:
        if parent.name == "configs" and parent.is_dir():
            return parent
        if (parent / "configs").is_dir():
            return parent / "configs"
    return None


def _parse_override(item: str) -> dict:
    """Parse `a.b=value` into `{"a": {"b": value}}`, the value read as YAML."""
    key = item.partition("=")[0].strip()
    if "=" not in item or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", key):
        raise ConfigError(f"invalid override '{item}': expected dotted.key=value, e.g. model.num_layers=4")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist([item]), resolve=False)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"invalid override '{item}': {_one_line(err)}") from None


def _merge(cfg: DictConfig, data: dict, source: str, prefix: str) -> None:
    """Merge plain `data` into `cfg` key by key so that errors can name the exact key and its source."""
    structured = OmegaConf.get_type(cfg) not in (dict, None)
    known = set(cfg.keys())  # `key in cfg` is False for ??? values; `.keys()` lists them
    # A schema may map renamed keys to a migration (`_legacy_keys`, e.g. `CacheLayout.window_frames`); they
    # are applied after the layer's other keys, so the migration sees this layer's values.
    legacy = getattr(OmegaConf.get_type(cfg), "_legacy_keys", {}) if structured else {}
    renamed = {key: data[key] for key in data if key not in known and key in legacy}
    for key, value in data.items():
        full_key = f"{prefix}{key}"
        if key in renamed:
            continue
        if key not in known:
            if structured:
                raise ConfigError(_unknown_key_message(cfg, full_key, prefix, source))
            _assign(cfg, key, value, full_key, source)
            continue
        node = _node(cfg, key)
        if isinstance(value, dict) and isinstance(node, DictConfig):
            if _is_unset(node):
                ref_type = _ref_type(node)
                if dataclasses.is_dataclass(ref_type):
                    # Set, not merge: merging builds the node from the type, read-only where a nested
                    # dataclass is frozen (e.g. `SamplerConfig`), and then cannot write its defaults.
                    default = OmegaConf.structured(ref_type)
                    _make_writable(default)
                    cfg[key] = default
                else:
                    _assign(cfg, key, {}, full_key, source)
                node = _node(cfg, key)
                _make_writable(node)
            _merge(node, value, source, prefix=f"{full_key}.")
        else:
            _assign(cfg, key, value, full_key, source)
    for key, value in renamed.items():
        try:
            new_key, new_value = legacy[key](value, cfg)
        except (TypeError, ValueError):
            raise ConfigError(f"wrong type for '{prefix}{key}' (old name) in {source}: got {value!r}") from None
        if new_key in data:
            raise ConfigError(f"both '{prefix}{key}' (old name) and '{prefix}{new_key}' in {source}; keep only "
                              f"'{prefix}{new_key}'")
        warnings.warn(f"'{prefix}{key}' in {source} is an old name: read as {prefix}{new_key}={new_value} "
                      f"(see the field's docstring)", FutureWarning, stacklevel=2)
        _assign(cfg, new_key, new_value, f"{prefix}{new_key}", source)


def _assign(cfg: DictConfig, key: str, value: Any, full_key: str, source: str) -> None:
    """Set `cfg[key] = value` (via merge, which converts lists to tuples where the schema says so)."""
    try:
        cfg.merge_with({key: value})
    except ConfigKeyError as err:  # e.g. an unknown key inside a list of dataclasses
        raise ConfigError(f"invalid value for '{full_key}' in {source}: {_one_line(err)}") from None
    except OmegaConfBaseException:
        key_type = _key_type(cfg)
        if key_type in (int, float) and not isinstance(key, key_type):  # a typed dict's key, not its value
            raise ConfigError(f"wrong key type for '{full_key}' in {source}: expected {_type_name(key_type)} "
                              f"keys, got {key!r} ({type(key).__name__})") from None
        raise ConfigError(
            f"wrong type for '{full_key}' in {source}: expected {_expected_type(cfg, key)}, "
            f"got {value!r} ({type(value).__name__})"
        ) from None


def _unknown_key_message(cfg: DictConfig, full_key: str, prefix: str, source: str) -> str:
    valid = list(map(str, cfg.keys()))
    key = full_key[len(prefix) :]
    hint = difflib.get_close_matches(key, valid, n=1)
    where = f"under '{prefix[:-1]}'" if prefix else "at top level"
    did_you_mean = f" (did you mean '{hint[0]}'?)" if hint else ""
    return f"unknown key '{full_key}' in {source}{did_you_mean}; valid keys {where}: {', '.join(valid)}"


def _expected_type(cfg: DictConfig, key: str) -> str:
    """The annotation of `key` in `cfg`'s dataclass (or the element type of a typed dict), as text."""
    schema = OmegaConf.get_type(cfg)
    if dataclasses.is_dataclass(schema):
        try:
            return _type_name(typing.get_type_hints(schema)[key])
        except (KeyError, NameError, TypeError):
            pass
    return _type_name(_element_type(cfg))


def _type_name(annotation: Any) -> str:
    if annotation is Any:
        return "Any"
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return re.sub(r"(?:\w+\.)+(\w+)", r"\1", text)  # typing.Optional[a.b.C] -> Optional[C]


def _to_object(cfg: DictConfig) -> Any:
    """Build the typed dataclass; missing values and `__post_init__` failures become `_InvalidConfig`."""
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError as err:
        raise _InvalidConfig(str(err)) from None
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        raise _InvalidConfig(_one_line(err), f" at '{key}'" if key else "") from None
    except (ValueError, TypeError) as err:
        raise _InvalidConfig(_one_line(err)) from None


def _make_writable(node: DictConfig | ListConfig) -> None:
    """Clear the read-only flag that OmegaConf sets for frozen dataclasses, on `node` and all children."""
    OmegaConf.set_readonly(node, False)
    if _is_unset(node):
        return
    for key in node.keys() if isinstance(node, DictConfig) else range(len(node)):
        child = _node(node, key)
        if isinstance(child, (DictConfig, ListConfig)):
            _make_writable(child)


# ----------------------------------------------------------------------------------------------------------
# OmegaConf's private API. OmegaConf has no public way to read a child node (not its value: a `???` or None
# node has none) or a node's declared types, which the key-by-key merge and its error messages need. These five
# accessors are the only private uses; packages/core pins the OmegaConf release they were written against and
# tests/unit/test_omegaconf_contract.py checks each one, so an upgrade that changes them fails there first.


def _node(cfg: DictConfig | ListConfig, key: Any) -> Any:
    """The child node at `key` (a `DictConfig`, `ListConfig` or value node), also when its value is ??? or None."""
    return cfg._get_node(key)


def _is_unset(node: Any) -> bool:
    """True for a node whose value is None or ??? (missing)."""
    return node._is_none() or node._is_missing()


def _ref_type(node: Any) -> Any:
    """The type the schema declares for `node` (e.g. a dataclass for an optional nested config set to null)."""
    return node._metadata.ref_type


def _key_type(cfg: DictConfig) -> Any:
    """The declared key type of a typed dict node (`dict[int, str]` -> int)."""
    return cfg._metadata.key_type


def _element_type(cfg: DictConfig | ListConfig) -> Any:
    """The declared value type of a typed dict or list node (`dict[int, str]` -> str)."""
    return cfg._metadata.element_type


# ----------------------------------------------------------------------------------------------------------
# Small helpers


def _git_revision() -> str:
    """`<sha>` or `<sha> (dirty)` for the checkout holding this file; "unavailable" when git cannot tell."""
    cwd = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unavailable"
    return f"{sha} (dirty)" if status else sha


def _show(path: Path | None) -> str:
    """A path relative to the working directory when possible (shorter messages)."""
    if path is None:
        return "?"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _one_line(err: BaseException) -> str:
    text = str(err).split("\n    full_key:")[0]
    return " ".join(text.split())
