"""The evaluation run: prompts x seeds -> videos (generated or read) -> per-video scores -> tables and plots.

Output folder (``EvalConfig.output_dir``)::

    config.yaml           resolved config (git revision in its header)
    videos/*.mp4          generated videos, ``{slug}-{hash8}-{i}-s{seed}.mp4`` (generator mode only)
    scores.jsonl          one JSON record per video, appended as it finishes (``scores.rank{r}.jsonl`` per rank)
    scores.csv / .parquet per-video table (parquet only with pyarrow / fastparquet); ``file`` is relative to
                          this folder for generated videos, absolute for ``videos_dir`` ones
    windows.csv           per-window metric values (when ``windows`` is set)
    summary.csv / .md     mean, std, bootstrap CI per metric (``streamvid.eval.report``)
    plots/windows.png     metric per window (when ``windows`` is set)
    vbench/               VBench export (when ``export.enabled``)

Scores are computed on the decoded video file, as VBench scores its mp4 files, never on the generator's
in-memory frames: H.264 changes pixel-level metrics noticeably (sharpness, warping error), so scoring memory
would make a fresh run, a resumed one and a ``videos_dir`` run over its export disagree. Scored this way they
agree exactly.

Resume: a video whose record is ``ok`` with every configured metric is skipped; a record missing some
metrics gets only those, computed from its video file; a failed one is retried (``retry_failed``). A generation
error or metric exception marks that video ``failed`` with its one-line cause and the run goes on. Re-running
into a folder made with another generator, frame count, fps or metric options is refused (the tables would mix).

Checks before the first video (and before ``config.yaml`` is written, so a bad run never locks its folder):
``output_dir`` is a writable directory (or can be made), the prompts and metrics load, a ``videos_dir`` holds
videos named ``{prompt}-{i}.mp4`` or a manifest, and the generator builds -- its checkpoint is found, readable
and fits ``generator.model``. A trained checkpoint with a randomly initialised learned text encoder is refused
unless ``allow_random_text_encoder``; such runs and random-weight smoke runs carry a note (``EvalResult.notes``,
``summary.md``, the terminal).

Sharding: when ``torch.distributed`` is initialised, or ``WORLD_SIZE`` > 1 with ``RANK`` / ``MASTER_ADDR`` /
``MASTER_PORT`` (``torchrun``; a gloo group is created), rank r takes prompts with index % world == r, writes
its own shard, and rank 0 merges every shard into the tables after a barrier. Each video depends only on
``(prompt, seed)`` (batch size 1, seeded initialisation), so the merged table equals a 1-process run's.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from streamvid.core.atomic import atomic_write
from streamvid.core.cli.errors import one_line
from streamvid.core.cli.paths import check_output_dir, write_resolved_config
from streamvid.core.config import ConfigError, load_config
from streamvid.core.prompts import PromptEntry, file_stem, load_prompts
from streamvid.core.sharding import (
    append_record,
    barrier,
    read_shard,
    setup_process_group,
    shard_path,
    sum_counts,
)
from streamvid.core.video_io import read_video, write_video
from streamvid.eval.export import check_vbench_names, discover_videos, export_run
from streamvid.eval.report import write_report
from streamvid.eval.runner_config import EvalConfig, ExportConfig, ReportConfig, WindowsConfig

__all__ = [
    "EvalConfig", "EvalResult", "ExportConfig", "ReportConfig", "WindowsConfig", "WorkItem", "plan", "read_records",
    "records_table", "run_eval",
]

_SAME_RUN_FIELDS = ("generator", "init_seed", "num_frames", "fps", "videos_dir", "metric_options", "windows")
ERROR_CELL_CHARS = 500
"""Longest error text kept per failed video (one line; the cause, not a tool's banner)."""
SMOKE_NOTE = "Generator randomly initialised (generator.checkpoint is null): a smoke run, not results."
RANDOM_TEXT_NOTE = ("Text encoder randomly initialised (generator.text_encoder.path is null, "
                    "allow_random_text_encoder is true): the checkpoint cannot follow the prompts; not results.")


@dataclass(frozen=True)
class WorkItem:
    """One video of the run: a prompt, its sample index ``i`` and seed (-1 = unknown, videos_dir mode)."""

    entry: PromptEntry
    sample_index: int
    seed: int
    source: Path | None = None
    """The existing video (videos_dir mode); None there means the file is missing."""

    @property
    def key(self) -> str:
        return json.dumps([self.entry.prompt, self.sample_index, self.seed], ensure_ascii=False)

    def video_name(self) -> str:
        return f"{file_stem(self.entry.prompt)}-{self.sample_index}-s{self.seed}.mp4"


@dataclass
class EvalResult:
    """What `run_eval` returns; ``table`` / ``summary`` are None on ranks other than 0."""

    output_dir: Path
    table: pd.DataFrame | None
    summary: pd.DataFrame | None
    counts: dict[str, int]
    """Planned / skipped / generated / scored / failed video counts of this run, summed over every rank (the
    rank's own on ranks other than 0)."""
    notes: list[str] = field(default_factory=list)
    """Caveats of the run (e.g. a randomly initialised generator), also written at the top of summary.md."""


def plan(cfg: EvalConfig) -> list[WorkItem]:
    """Every video of the run in table order (prompt index, then sample index), over all ranks."""
    entries = load_prompts(cfg.prompts) if cfg.prompts else None
    if cfg.videos_dir is None:
        return [WorkItem(e, i, s) for e in entries for i, s in enumerate(cfg.seed_list())]
    found = discover_videos(cfg.videos_dir, cfg.seeds or [])  # ConfigError for an empty or misnamed folder
    if entries is None:
        names = list(dict.fromkeys(p for p, _ in found))  # manifest order, else sorted file names
        entries = [PromptEntry(p, f"{k:04d}", k) for k, p in enumerate(names)]
    count = cfg.samples_per_prompt or (len(cfg.seeds) if cfg.seeds else None)
    items = []
    for e in entries:
        indices = range(count) if count else sorted(i for p, i in found if p == e.prompt) or [0]
        for i in indices:
            seed, path = found.get((e.prompt, i), (-1, None))
            items.append(WorkItem(e, i, seed, path))
    return items


def read_records(out_dir: str | Path) -> dict[str, dict]:
    """The newest record per video key over every ``scores*.jsonl`` shard (``ok`` beats ``failed``)."""
    best: dict[str, dict] = {}
    for path in sorted(Path(out_dir).glob("scores*.jsonl")):
        for rec in read_shard(path):  # a line cut short by a crash is skipped: that video is redone
            old = best.get(rec["key"])
            if old is None or (rec["status"] == "ok", rec["finished_at"]) >= (old["status"] == "ok", old["finished_at"]):
                best[rec["key"]] = rec
    return best


def run_eval(cfg: EvalConfig, *, generator: Any = None) -> EvalResult:
    """Run (or resume) the evaluation described by ``cfg``; see the module docstring for outputs.

    ``generator`` overrides building one from ``cfg.generator``: any object with
    ``stream_video([prompt], num_frames, seed)`` yielding pixel chunks ``[1, t, 3, H, W]`` in [0, 1].
    """
    rank, world, owns_group = setup_process_group()
    threads = torch.get_num_threads()
    try:
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        return _run(cfg, generator, rank, world)
    finally:
        torch.set_num_threads(threads)
        if owns_group:
            torch.distributed.destroy_process_group()


def _run(cfg: EvalConfig, generator: Any, rank: int, world: int) -> EvalResult:
    # Every check comes before the first video and before config.yaml is written: a bad run neither spends
    # compute nor locks its output_dir to a config that cannot work.
    out = check_output_dir(cfg.output_dir, "output_dir")
    items = plan(cfg)
    metrics = _build_metrics(cfg)
    if cfg.export.enabled:  # refuse bad VBench names before spending any compute
        check_vbench_names([(it.entry.prompt, it.sample_index) for it in items], ".mp4", cfg.export.max_name_bytes)
    if cfg.videos_dir is None and cfg.windows is not None and cfg.windows.frames(cfg.fps) > cfg.num_frames:
        raise ConfigError(f"windows: a window of {cfg.windows.frames(cfg.fps)} frames exceeds num_frames "
                          f"{cfg.num_frames}")
    _check_same_run(cfg, out)
    mine = [it for it in items if it.entry.index % world == rank]
    notes = _run_notes(cfg, built_here=generator is None)
    if generator is None and cfg.videos_dir is None:
        # the one build: every video `_process` generates is missing now (a missing or mismatched checkpoint
        # fails here, exit 2)
        if any(not (out / "videos" / it.video_name()).is_file() for it in mine):
            generator = _build_generator(cfg)
        _check_text_encoder(cfg, announce=rank == 0)
    barrier(world)  # every rank has read the old config before rank 0 replaces it
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_resolved_config(cfg, out / "config.yaml")
    existing = read_records(out)
    shard = shard_path(out, "scores", rank, world)
    counts = dict(planned=len(mine), skipped=0, generated=0, scored=0, failed=0)
    bar = tqdm(mine, desc="eval", unit="video", file=sys.stderr, disable=not cfg.progress or rank != 0)
    for item in bar:
        prev = existing.get(item.key)
        if prev is not None and (_complete(prev, cfg) or (prev["status"] != "ok" and not cfg.retry_failed)):
            counts["skipped"] += 1
            continue
        rec = _process(item, prev if prev and prev["status"] == "ok" else None, cfg, metrics, out, generator, counts)
        append_record(shard, rec)
        counts["failed" if rec["status"] != "ok" else "scored"] += 1
        bar.set_postfix(failed=counts["failed"])
    barrier(world)
    if rank != 0:
        sum_counts(counts, world)
        return EvalResult(out, None, None, counts, notes)
    counts = sum_counts(counts, world)
    table, windows = records_table(read_records(out), items)
    _write_tables(out, table, windows)
    rc = cfg.report
    write_report(table, out, windows=windows, n_boot=rc.n_boot, level=rc.level, seed=rc.seed, notes=notes)
    if cfg.export.enabled:
        export_run(out, cfg.export.dir or out / "vbench", fps=cfg.export.fps, max_name_bytes=cfg.export.max_name_bytes)
    summary = pd.read_csv(out / "summary.csv")
    return EvalResult(out, table, summary, counts, notes)


def _run_notes(cfg: EvalConfig, built_here: bool = True) -> list[str]:
    """Caveats printed with the summary: a randomly initialised generator or text encoder (generator mode)."""
    if cfg.videos_dir is not None:
        return []
    if cfg.generator.checkpoint is None:
        return [SMOKE_NOTE]
    te = cfg.generator.text_encoder
    if built_here and te.kind == "learned" and te.path is None:
        return [RANDOM_TEXT_NOTE]
    return []


def _check_text_encoder(cfg: EvalConfig, announce: bool) -> None:
    """Refuse a trained checkpoint with a randomly initialised text encoder: its scores would look like results."""
    te = cfg.generator.text_encoder
    if cfg.generator.checkpoint is None or te.kind != "learned" or te.path is not None:
        return
    if not cfg.allow_random_text_encoder:
        raise ConfigError(
            f"generator.checkpoint {cfg.generator.checkpoint} is set but generator.text_encoder.path is null: the "
            "text encoder would be randomly initialised and the trained model could not follow the prompts. Set "
            "generator.text_encoder.path to the encoder saved with the checkpoint (or allow_random_text_encoder=true "
            "to score it anyway, marked as not results)")
    if announce:
        print(f"warning: {RANDOM_TEXT_NOTE}", file=sys.stderr)


def _build_generator(cfg: EvalConfig):
    """The generator of ``cfg``: same seeded random initialisation on every rank and every rerun."""
    from streamvid.core.generator import build_generator, prompt_vocabulary

    vocab = prompt_vocabulary([e.prompt for e in load_prompts(cfg.prompts)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        return build_generator(cfg.generator, vocabulary=vocab)


def _process(item, prev, cfg, metrics, out, generator, counts) -> dict:
    """Get the video (read or generate) and score the metrics ``prev`` lacks; never raises for one video."""
    t0 = time.perf_counter()
    rec = {"key": item.key, "prompt": item.entry.prompt, "prompt_id": item.entry.id,
           "prompt_index": item.entry.index, "sample_index": item.sample_index, "seed": item.seed,
           "file": None, "source": None, "metrics": dict(prev["metrics"]) if prev else {},
           "windows": dict(prev["windows"]) if prev else {}}
    fps = float(cfg.fps)
    try:
        if cfg.videos_dir is not None:
            if item.source is None:
                raise FileNotFoundError(f"no video for index {item.sample_index} of {item.entry.prompt!r} in "
                                        f"{cfg.videos_dir} (expected '{item.entry.prompt}-{item.sample_index}.mp4')")
            frames, fps = read_video(item.source)
            rec["file"], rec["source"] = str(item.source.resolve()), "file"
        else:
            rec["file"] = f"videos/{item.video_name()}"
            rec["source"] = "file"
            if not (out / rec["file"]).is_file():
                write_video(out / rec["file"], _generate(item, cfg, generator), fps=fps)
                rec["source"] = "generator"
                counts["generated"] += 1
            frames, _ = read_video(out / rec["file"])  # score the decoded file, as VBench does (see above)
    except Exception as err:  # one bad video must not end the run
        return _finish(rec, [f"video: {_describe(err)}"], t0)
    errors = _score(frames, item.entry.prompt, fps, rec, cfg, metrics)
    return _finish(rec, errors, t0)


def _generate(item: WorkItem, cfg: EvalConfig, generator: Any) -> torch.Tensor:
    with torch.no_grad():
        chunks = [c[0].float().cpu() for c in generator.stream_video([item.entry.prompt], cfg.num_frames, item.seed)]
    return torch.cat(chunks, dim=0)


def _score(frames, prompt, fps, rec, cfg, metrics) -> list[str]:
    """Fill ``rec["metrics"]`` / ``rec["windows"]`` with what is missing; return the error messages."""
    from streamvid.eval.drift import clip_consistency, windowed_curve

    errors, values = [], rec["metrics"]
    for name, metric in metrics.items():
        if _has(values, name):
            continue
        try:
            values.update(_flatten(name, metric(frames, prompt=prompt, fps=fps)))
        except Exception as err:
            values[name] = math.nan
            errors.append(f"metric {name}: {_describe(err)}")
    w = cfg.windows
    for name in (w.metrics or list(metrics)) if w else []:
        if name in rec["windows"]:
            continue
        try:
            r = windowed_curve(frames, metrics[name], window=w.window, window_seconds=w.window_seconds,
                               stride=w.stride, fps=fps)
            rec["windows"][name] = {"start": r.starts, "time": r.times, "value": r.values.tolist()}
            values[f"{name}.drift"], values[f"{name}.slope"] = r.drift, r.slope
        except Exception as err:
            errors.append(f"windows {name}: {_describe(err)}")
    if w and w.clip_consistency and "clip_consistency" not in values:
        try:
            values["clip_consistency"] = clip_consistency(frames, window=w.window, window_seconds=w.window_seconds,
                                                          stride=w.stride, fps=fps)[0]
        except ValueError:  # a single window: consistency across clips does not apply
            values["clip_consistency"] = math.nan
    return errors


def _flatten(name: str, value: Any) -> dict[str, float]:
    if isinstance(value, dict):  # a metric returning several numbers -> one column each
        return {f"{name}.{k}": float(v) for k, v in value.items()}
    return {name: float(value)}


def _has(values: dict, name: str) -> bool:
    return name in values or any(k.startswith(f"{name}.") for k in values)


def _complete(rec: dict, cfg: EvalConfig) -> bool:
    names = (cfg.windows.metrics or cfg.metrics) if cfg.windows else []
    return rec["status"] == "ok" and all(_has(rec["metrics"], m) for m in cfg.metrics) and \
        all(n in rec["windows"] for n in names)


def _describe(err: BaseException) -> str:
    """``Type: message`` on one line, at most `ERROR_CELL_CHARS` (an error cell holds the cause, not a banner)."""
    return one_line(f"{type(err).__name__}: {err}", limit=ERROR_CELL_CHARS)


def _finish(rec: dict, errors: list[str], t0: float) -> dict:
    rec.update(status="failed" if errors else "ok", error="; ".join(errors) or None,
               seconds=round(time.perf_counter() - t0, 4), finished_at=time.time())
    return rec


def records_table(records: dict[str, dict], items: list[WorkItem]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-video scores table, per-window long table) for ``items`` in plan order."""
    rows, win_rows = [], []
    for it in items:
        rec = records.get(it.key)
        if rec is None:
            continue
        base = {k: rec[k] for k in ("prompt_index", "prompt_id", "prompt", "sample_index", "seed")}
        rows.append({**base, **{k: rec[k] for k in ("status", "error", "source", "file", "seconds")},
                     **rec["metrics"]})
        for metric, curve in rec["windows"].items():
            for k, (s, t, v) in enumerate(zip(curve["start"], curve["time"], curve["value"])):
                win_rows.append({**base, "metric": metric, "window": k, "start": s, "time": t, "value": v})
    return pd.DataFrame(rows), pd.DataFrame(win_rows)


def _write_tables(out: Path, table: pd.DataFrame, windows: pd.DataFrame) -> None:
    for name, frame in (("scores.csv", table), ("windows.csv", windows)):
        if name == "windows.csv" and frame.empty:
            continue
        with atomic_write(out / name) as tmp:
            frame.to_csv(tmp, index=False)
    with contextlib.suppress(ImportError):  # neither pyarrow nor fastparquet: CSV only
        table.to_parquet(out / "scores.parquet", index=False)


def _build_metrics(cfg: EvalConfig) -> dict:
    from streamvid.eval.metrics import build, list_metrics

    unknown = [m for m in cfg.metrics if m not in list_metrics()]
    if unknown:
        raise ConfigError(f"metrics: unknown {unknown}; registered: {', '.join(list_metrics())}")
    return {m: build(m, **cfg.metric_options.get(m, {})) for m in cfg.metrics}


def _check_same_run(cfg: EvalConfig, out: Path) -> None:
    old_path = out / "config.yaml"
    if not old_path.is_file():
        return
    old = load_config(old_path, schema=EvalConfig)

    def identity(c: EvalConfig, name: str):  # adding window metrics is fine; another window geometry is not
        value = getattr(c, name)
        return (value.window, value.window_seconds, value.stride) if name == "windows" and value else value

    changed = [f for f in _SAME_RUN_FIELDS if identity(old, f) != identity(cfg, f)]
    if changed:
        raise ConfigError(f"output_dir {out} holds a run with different {', '.join(changed)}; its videos and scores "
                          "would mix with this run's: choose another output_dir or delete that one")
