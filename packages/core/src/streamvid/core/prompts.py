"""Prompt suites: read a list of prompts (with optional ids) from ``.txt``, ``.csv`` or ``.json``.

Formats
-------
- ``.txt``: one prompt per line (VBench's ``prompts/*.txt``). Surrounding whitespace is stripped; blank lines
  and lines starting with ``#`` are skipped.
- ``.csv``: a header row with a ``prompt`` column and optionally an ``id`` column; other columns are ignored.
- ``.json``: a list whose items are all strings or all objects ``{"prompt": ..., "id": ...}`` (``id``
  optional). ``prompt_en`` is accepted for ``prompt`` so ``VBench_full_info.json`` loads as is.

Every error is a :class:`PromptFileError` (a ``ConfigError``, so console scripts print one line and exit 2)
that names the file and the line (``.txt`` / ``.csv``) or the item index (``.json``). Exact duplicate prompts
are refused: a suite is keyed by ``(prompt, seed)`` and VBench names files ``{prompt}-{i}.mp4``, so a duplicate
would overwrite the other's videos and scores. Prompts that differ only in case (VBench has both "A fantasy
landscape" and "a fantasy landscape") are distinct.

Read by ``streamvid-eval`` (``prompts:``) and ``streamvid-infer-t1 --prompts``; `file_stem` names a prompt's files in
both runs' ``videos/`` folders.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from streamvid.core.config import ConfigError

__all__ = ["PromptEntry", "PromptFileError", "file_stem", "load_prompts"]

SUFFIXES = (".txt", ".csv", ".json")


class PromptFileError(ConfigError):
    """A prompt file is missing, malformed, or holds an empty / duplicate prompt; names file and line."""


@dataclass(frozen=True)
class PromptEntry:
    """One prompt of a suite."""

    prompt: str
    """The text given to the generator and to text-aware metrics."""
    id: str
    """The file's ``id`` when it has one, else the 0-based position in the suite, zero-padded (``"0007"``)."""
    index: int
    """0-based position in the suite (sharding takes prompts with ``index % world_size == rank``)."""


def load_prompts(path: str | Path) -> list[PromptEntry]:
    """Read a prompt suite (see the module docstring for the formats) in file order."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise PromptFileError(f"prompt file {path}: unsupported extension '{path.suffix}'; expected {SUFFIXES}")
    if not path.is_file():
        raise PromptFileError(f"prompt file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise PromptFileError(f"prompt file {path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    reader = {".txt": _read_txt, ".csv": _read_csv, ".json": _read_json}[path.suffix.lower()]
    items = reader(path, text)  # [(where, prompt, id or None)]
    if not items:
        raise PromptFileError(f"prompt file {path} holds no prompts")
    return _check_unique(path, items)


def file_stem(prompt: str) -> str:
    """A file-name stem for ``prompt``: its first 40 characters as a lower-case slug, then 8 hex digits of its SHA-1
    (``"A red circle!"`` -> ``a_red_circle-<8 hex>``), so prompts that differ only in case or punctuation differ."""
    slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:40] or "prompt"
    return f"{slug}-{hashlib.sha1(prompt.encode()).hexdigest()[:8]}"


def _read_txt(path: Path, text: str) -> list[tuple[str, str, str | None]]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        prompt = line.strip()
        if prompt and not prompt.startswith("#"):
            items.append((f"line {number}", prompt, None))
    return items


def _read_csv(path: Path, text: str) -> list[tuple[str, str, str | None]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = reader.fieldnames or []
    if "prompt" not in fields:
        raise PromptFileError(f"{path}:1: the header must have a 'prompt' column; got {fields}")
    items = []
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row:  # more cells than header columns
                raise PromptFileError(f"{path}:{reader.line_num}: more cells than the {len(fields)} header columns")
            prompt = (row["prompt"] or "").strip()
            if not prompt:
                raise PromptFileError(f"{path}:{reader.line_num}: empty prompt")
            pid = (row.get("id") or "").strip() or None
            if "id" in fields and pid is None:
                raise PromptFileError(f"{path}:{reader.line_num}: empty id (the file has an 'id' column)")
            items.append((where, prompt, pid))
    except csv.Error as err:
        raise PromptFileError(f"{path}:{reader.line_num}: invalid CSV: {err}") from None
    return items


def _read_json(path: Path, text: str) -> list[tuple[str, str, str | None]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PromptFileError(f"{path}:{err.lineno}: invalid JSON: {err.msg} (column {err.colno})") from None
    if not isinstance(data, list):
        raise PromptFileError(f"{path}: top level must be a list of strings or of {{prompt, id}} objects")
    items = []
    for k, item in enumerate(data):
        where = f"item [{k}]"
        if isinstance(item, str):
            prompt, pid = item.strip(), None
        elif isinstance(item, dict):
            prompt = item.get("prompt", item.get("prompt_en"))
            if not isinstance(prompt, str):
                raise PromptFileError(f"{path}: {where} needs a string 'prompt'; got keys {sorted(item)}")
            prompt = prompt.strip()
            pid = item.get("id")
            if pid is not None and not isinstance(pid, (str, int)):
                raise PromptFileError(f"{path}: {where}: 'id' must be a string or integer, got {pid!r}")
            pid = None if pid is None else str(pid)
        else:
            raise PromptFileError(f"{path}: {where} must be a string or an object, got {type(item).__name__}")
        if not prompt:
            raise PromptFileError(f"{path}: {where}: empty prompt")
        items.append((where, prompt, pid))
    kinds = {isinstance(item, str) for item in data}
    if len(kinds) > 1:
        raise PromptFileError(f"{path}: mixes strings and objects; use one form for every item")
    return items


def _check_unique(path: Path, items: list[tuple[str, str, str | None]]) -> list[PromptEntry]:
    seen_prompt: dict[str, str] = {}
    seen_id: dict[str, str] = {}
    entries = []
    width = max(4, len(str(len(items) - 1)))
    for index, (where, prompt, pid) in enumerate(items):
        if prompt in seen_prompt:
            raise PromptFileError(f"{path}: {where}: duplicate prompt {prompt!r} (first at {seen_prompt[prompt]})")
        seen_prompt[prompt] = where
        pid = pid if pid is not None else f"{index:0{width}d}"
        if pid in seen_id:
            raise PromptFileError(f"{path}: {where}: duplicate id {pid!r} (first at {seen_id[pid]})")
        seen_id[pid] = where
        entries.append(PromptEntry(prompt=prompt, id=pid, index=index))
    return entries
