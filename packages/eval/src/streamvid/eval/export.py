"""Export videos for the official VBench: one flat folder of ``{prompt}-{i}.mp4`` plus a seed manifest.

VBench's standard mode builds ``f"{prompt}-{i}{ext}"`` for ``i`` in 0..4 and looks the name up in
``os.listdir`` of one flat folder (anchors §3.3); a misnamed video only prints "missing" and is skipped. So:

- **fps**: videos are written at ``fps`` (default :data:`VBENCH_FPS` = 16, the Wan2.1 / Self-Forcing
  convention of the leaderboard entries this repository compares with). VBench reads the rate from the file;
  only ``dynamic_degree`` depends on it (frame interval ``round(fps / 8)``). Frames are never resampled nor
  re-encoded: a source ``.mp4`` at another rate gets new timestamps on the same compressed frames
  (`retime_mp4`), one already at ``fps`` is copied byte for byte, so every frame-based score of the export
  equals the run's. A ``.gif`` source is encoded once.
- **Names over the limit are refused, never truncated**: a name longer than ``max_name_bytes`` (255 bytes of
  UTF-8 on ext4 / APFS / NTFS, the extension included) cannot exist, and a truncated name would not match what
  VBench looks for. VBench's own suite loses 72 of 946 prompts this way; use its ``custom_input`` mode with the
  ``prompt_file.json`` written here for those.
- **'/' (and NUL) in a prompt is refused** as well: VBench does not replace it, so ``"a/b-0.mp4"`` would be a
  path into a sub-folder that its flat ``os.listdir`` never sees. Nothing is written when any name is refused;
  the error lists every offending prompt.

Besides the videos the folder holds ``manifest.csv`` and ``manifest.json`` (prompt, seed, index, file: the
seeds VBench asks to record) and ``prompt_file.json`` (``{file: prompt}``, VBench's ``--prompt_file``).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from streamvid.core.atomic import atomic_write
from streamvid.core.config import ConfigError
from streamvid.core.video_io import mp4_fps, read_video, retime_mp4, write_video

__all__ = [
    "MAX_NAME_BYTES", "VBENCH_FPS", "ExportError", "ManifestEntry", "check_vbench_names", "discover_videos", "export_run",
    "export_vbench", "read_manifest", "vbench_filename", "write_manifest",
]

VBENCH_FPS = 16.0
"""Default frame rate of exported videos (Wan2.1 / Self-Forcing convention)."""
MAX_NAME_BYTES = 255
"""Longest file name (UTF-8 bytes, extension included) on common filesystems."""
MANIFEST_FIELDS = ("prompt", "seed", "index", "file")
VBENCH_NAME = re.compile(r"^(?P<prompt>.+)-(?P<index>\d+)\.(?P<ext>mp4|gif)$")
"""A VBench standard-mode file name: the prompt is everything before the last ``-<digits>``."""
VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".mov", ".avi", ".mkv", ".m4v")
"""File suffixes (any case) taken for videos in a folder without manifest: such a file must match ``VBENCH_NAME``."""


class ExportError(ConfigError):
    """Videos cannot be exported under VBench names; ``prompts`` lists the offending prompts."""

    def __init__(self, message: str, prompts: Sequence[str] = ()):
        super().__init__(message)
        self.prompts = list(prompts)


@dataclass(frozen=True)
class ManifestEntry:
    """One exported video: its prompt, seed (-1 when unknown), VBench index ``i`` and file name."""

    prompt: str
    seed: int
    index: int
    file: str
    """File name relative to the folder holding the manifest."""


def vbench_filename(prompt: str, index: int, ext: str = ".mp4") -> str:
    """VBench's standard-mode name ``f"{prompt}-{index}{ext}"`` (no escaping, no truncation)."""
    return f"{prompt}-{index}{ext}"


def check_vbench_names(items: Sequence[tuple[str, int]], ext: str = ".mp4",
                       max_name_bytes: int = MAX_NAME_BYTES) -> None:
    """Raise :class:`ExportError` unless every ``(prompt, index)`` gives a valid, unique flat file name."""
    too_long, bad_char, seen, dupes = {}, [], set(), []
    for prompt, index in items:
        name = vbench_filename(prompt, index, ext)
        size = len(name.encode("utf-8"))
        if size > max_name_bytes:
            too_long[prompt] = max(size, too_long.get(prompt, 0))
        if ("/" in prompt or "\0" in prompt) and prompt not in bad_char:
            bad_char.append(prompt)
        if name in seen:
            dupes.append(name)
        seen.add(name)
    problems, offenders = [], list(too_long) + [p for p in bad_char if p not in too_long]
    if too_long:
        listed = "; ".join(f"{p!r} ({n} bytes)" for p, n in too_long.items())
        problems.append(f"{len(too_long)} prompt(s) give names over {max_name_bytes} bytes "
                        f"(refused, not truncated; use VBench custom_input mode with prompt_file.json): {listed}")
    if bad_char:
        problems.append(f"{len(bad_char)} prompt(s) contain '/' or NUL, which VBench's flat folder cannot hold: "
                        + "; ".join(map(repr, bad_char)))
    if dupes:
        problems.append(f"duplicate names: {sorted(set(dupes))}")
    if problems:
        raise ExportError("VBench export refused: " + " | ".join(problems), offenders)


def write_manifest(entries: Sequence[ManifestEntry], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``manifest.csv`` and ``manifest.json`` (atomically) into ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    rows = [asdict(e) for e in entries]
    csv_path, json_path = out_dir / "manifest.csv", out_dir / "manifest.json"

    def _csv(f):
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)

    _atomic_text(csv_path, _csv)
    _atomic_text(json_path, lambda f: json.dump(rows, f, indent=1, ensure_ascii=False))
    return csv_path, json_path


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Read ``manifest.csv`` / ``manifest.json`` (columns prompt, seed, index, file); errors name the row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    if path.suffix.lower() == ".json":
        rows, where = json.loads(path.read_text(encoding="utf-8")), "item [{}]"
    else:
        with path.open(newline="", encoding="utf-8") as f:
            rows, where = list(csv.DictReader(f)), "line {}"
    entries = []
    for k, row in enumerate(rows):
        at = where.format(k + 2 if where.startswith("line") else k)
        missing = [c for c in MANIFEST_FIELDS if not isinstance(row, dict) or row.get(c) in (None, "")]
        if missing:
            raise ConfigError(f"{path}: {at}: missing {missing}; a manifest row has {list(MANIFEST_FIELDS)}")
        try:
            entries.append(ManifestEntry(str(row["prompt"]), int(row["seed"]), int(row["index"]), str(row["file"])))
        except ValueError:
            raise ConfigError(f"{path}: {at}: seed and index must be integers, got {row}") from None
    return entries


def discover_videos(folder: str | Path, seeds: Sequence[int] = ()) -> dict[tuple[str, int], tuple[int, Path]]:
    """Map ``(prompt, index) -> (seed, path)`` for a folder of videos.

    With ``manifest.csv`` / ``manifest.json`` in ``folder`` the manifest is the truth; otherwise files named
    ``{prompt}-{i}.mp4`` / ``.gif`` are taken, with ``seeds[i]`` as the seed when given, else -1 (unknown), and
    other files are ignored unless they look like videos (:data:`VIDEO_SUFFIXES`). Raises ``ConfigError`` naming
    the expected pattern when the folder holds no such video, or a video file whose name does not match it
    (it would be silently left out of the evaluation).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"videos folder not found: {folder}")
    for name in ("manifest.csv", "manifest.json"):
        if (folder / name).is_file():
            found = {(m.prompt, m.index): (m.seed, folder / m.file) for m in read_manifest(folder / name)}
            if not found:
                raise ConfigError(f"videos_dir {folder}: {name} lists no video")
            return found
    found, misnamed, others = {}, [], []
    for path in sorted(folder.iterdir()):
        if m := VBENCH_NAME.match(path.name):
            i = int(m["index"])
            found[(m["prompt"], i)] = (seeds[i] if i < len(seeds) else -1, path)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            misnamed.append(path.name)
        else:
            others.append(path.name)
    pattern = ("videos named {prompt}-{i}.mp4 (or .gif), e.g. 'a red circle moving left-0.mp4', "
               "or a manifest.csv / manifest.json (prompt, seed, index, file)")
    if misnamed:
        raise ConfigError(f"videos_dir {folder}: '{misnamed[0]}' does not match {{prompt}}-{{i}}.mp4 "
                          f"({len(misnamed)} of {len(misnamed) + len(found)} video files do not); expected {pattern}")
    if not found:
        held = f"it holds {len(others)} other file(s), e.g. '{others[0]}'" if others else "it is empty"
        raise ConfigError(f"videos_dir {folder} holds no video to evaluate ({held}); expected {pattern}")
    return found


def export_vbench(videos: Sequence[tuple[str | Path, str, int, int]], out_dir: str | Path, *,
                  fps: float = VBENCH_FPS, max_name_bytes: int = MAX_NAME_BYTES) -> list[ManifestEntry]:
    """Export ``(source_path, prompt, seed, index)`` videos to ``out_dir`` under VBench names.

    All names are checked before anything is written (:func:`check_vbench_names`). Returns the manifest
    entries (also written to ``manifest.csv`` / ``manifest.json``, with ``prompt_file.json``).
    """
    if fps <= 0:
        raise ConfigError(f"export fps must be > 0, got {fps}")
    check_vbench_names([(prompt, index) for _, prompt, _, index in videos], ".mp4", max_name_bytes)
    missing = [str(src) for src, *_ in videos if not Path(src).is_file()]
    if missing:
        raise FileNotFoundError(f"VBench export: {len(missing)} source video(s) not found: {missing}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for src, prompt, seed, index in videos:
        name = vbench_filename(prompt, index)
        _export_one(Path(src), out_dir / name, fps)
        entries.append(ManifestEntry(prompt=prompt, seed=int(seed), index=int(index), file=name))
    write_manifest(entries, out_dir)
    _atomic_text(out_dir / "prompt_file.json",
                 lambda f: json.dump({e.file: e.prompt for e in entries}, f, indent=1, ensure_ascii=False))
    return entries


def export_run(run_dir: str | Path, out_dir: str | Path, *, fps: float = VBENCH_FPS,
               max_name_bytes: int = MAX_NAME_BYTES) -> list[ManifestEntry]:
    """Export every video of a ``streamvid-eval`` run (its ``scores.csv`` rows that have a video file)."""
    from streamvid.eval.report import read_scores

    table = read_scores(run_dir)
    rows = [r for r in table.itertuples() if isinstance(r.file, str) and r.file]
    videos = [(Path(run_dir) / r.file, r.prompt, int(r.seed), int(r.sample_index)) for r in rows]
    return export_vbench(videos, out_dir, fps=fps, max_name_bytes=max_name_bytes)


def _export_one(src: Path, dst: Path, fps: float) -> None:
    """``.mp4`` at ``fps``: copied; at another rate: retimed without re-encoding (the same decoded frames);
    a ``.gif`` source is encoded once."""
    if src.suffix.lower() == ".mp4":
        if abs(mp4_fps(src) - fps) < 1e-3:
            with atomic_write(dst) as tmp:
                shutil.copyfile(src, tmp)
        else:
            retime_mp4(src, dst, fps)
        return
    video, _ = read_video(src)
    write_video(dst, video, fps=fps)


def _atomic_text(path: Path, write) -> None:
    """Write a text file with ``write(f)`` (`atomic_write`)."""
    with atomic_write(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        write(f)
