"""Output paths of the console scripts: checked before any work is done, written without touching other files.

    out = check_output_file(args.out, "--out", (".mp4", ".gif"))    # ConfigError (exit 2) before generating
    ...
    write_resolved_config(cfg, out.with_name(f"{out.stem}.config.yaml"))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamvid.core.atomic import atomic_write
from streamvid.core.config import ConfigError, resolved_config_yaml

__all__ = ["check_output_dir", "check_output_file", "write_resolved_config"]


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """Raise `ConfigError` unless `path` is a writable directory or can be created as one; creates nothing.

    `what` names the setting in the message (``"--out"``, ``"output_dir"``). A missing directory is fine when its
    nearest existing ancestor is a writable directory (the caller creates it when it writes).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a directory")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing} would have to hold it)"
        raise ConfigError(f"{what} {path}: directory {existing} is not writable{where}")
    return path


def check_output_file(path: str | os.PathLike, what: str, suffixes: Sequence[str]) -> Path:
    """Raise `ConfigError` unless `path` has one of `suffixes` and can be written (see `check_output_dir`)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{what} {path}: the extension must be {' or '.join(suffixes)}")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; give a file name such as {path / ('video' + suffixes[0])}")
    check_output_dir(path.parent, f"{what} {path}: folder")
    return path


def write_resolved_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config (`save_resolved_config`'s YAML) to `path` atomically; no other file is touched.

    Written through `atomic_write`, so `path` is either the old file or the complete new one, and a
    ``config.yaml`` already in that folder stays.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"cannot write the resolved config to {path}: it is a directory")
    text = resolved_config_yaml(cfg)
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return path
