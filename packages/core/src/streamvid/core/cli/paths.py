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

__all__ = ["check_output_dir", "check_output_file", "replacing_note", "write_resolved_config"]


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


def replacing_note(paths: Sequence[str | os.PathLike]) -> str | None:
    """The one terminal line a command prints before it replaces existing outputs (None when none exists).

    The console scripts replace their outputs on a rerun (the same command makes the same files); this line says
    so instead of overwriting silently: ``note: replacing outputs/x.mp4, outputs/x.config.yaml``.
    """
    existing = [str(p) for p in paths if Path(p).is_file()]
    if not existing:
        return None
    shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
    return f"note: replacing {shown}"


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
