"""`streamvid-infer-t1` over a prompt file: one searched video per (prompt, seed), sharded over ranks, resumable.

    streamvid-infer-t1 --config CONFIG --prompts FILE --out-dir DIR [--set "seeds=[0, 1, 2, 3, 4]"]
    torchrun --nproc_per_node N .venv/bin/streamvid-infer-t1 --config CONFIG --prompts FILE --out-dir DIR

Run folder (``output_dir``)::

    config.yaml              the resolved run config (schema `InferT1BatchConfig`, git revision in its header)
    videos/<stem>.mp4 / .gif each video and the files one-video runs write next to it (``.scores.json``,
                             ``.tree.json``, ``.tree.png``, ``.ledger.json``, ``.config.yaml``: the one-video config
                             that regenerates it); ``<stem>`` = ``{slug}-{hash8}-s{seed}`` (`file_stem`)
    results.jsonl            one record per finished video, appended as it finishes (``results.rank{r}.jsonl`` per
                             rank)
    results.csv              every video of the plan in plan order: prompt, seed, final score, NFE, cost multiple,
                             wall seconds, file (relative to this folder)
    summary.md               counts, mean final score with its bootstrap CI, mean NFE and cost multiple

The search of a video depends only on (prompt, seed): ``search.seed`` is set to the seed, and the pipeline (text
vocabulary of every prompt of the file) and rewards are the same in every process, so a sharded run's videos and
scores equal a one-process run's. Sharding (`streamvid.core.sharding`): the plan is prompt-major (every seed of
prompt 0, then prompt 1, ...); rank r searches the videos whose plan index % world size == r, appends to its own
shard, and rank 0 merges every shard into ``results.csv`` / ``summary.md`` once all ranks are done.

Resume: a video with a record and its video file is skipped, whatever the world size that made it (every shard is
read), so adding seeds or prompts to the file searches only the new videos. Re-running into a folder made with
another generator, reward, strategy, search (seed aside), ``n``, frame count, switches or fps is refused. Every check
(prompt file, prompts against the rewards, output folder, checkpoint) comes before a model is built and before
``config.yaml`` is written.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from tqdm import tqdm

from streamvid.core import sharding
from streamvid.core.atomic import atomic_write
from streamvid.core.cli.paths import check_output_dir, write_resolved_config
from streamvid.core.config import ConfigError, load_config
from streamvid.core.prompts import PromptEntry, file_stem, load_prompts
from streamvid.core.stats import bootstrap_ci
from streamvid.tts.cli import PROG, InferT1Config, build_searcher, output_files, search_and_write

__all__ = ["BatchItem", "BatchResult", "InferT1BatchConfig", "plan", "read_results", "resolve_batch", "run_batch"]

SAME_RUN_FIELDS = ("generator", "reward", "short_reward", "strategy", "search", "n", "num_frames", "prompt_switches",
                   "fps")
"""What a resumed folder must share with the run (``search`` without its seed: the seeds name the videos)."""
RESULT_COLUMNS = ("prompt_index", "prompt_id", "prompt", "seed", "final", "nfe", "cost_multiple", "seconds", "file")


@dataclass
class InferT1BatchConfig(InferT1Config):
    """`streamvid-infer-t1`'s config with a prompt file: `InferT1Config` plus the prompts, seeds and run folder."""

    prompts: str | None = None
    """Prompt file (``.txt`` one prompt a line, blank lines and ``#`` comments skipped; ``.csv``; ``.json``; see
    `streamvid.core.prompts`): one video per prompt and seed. null: one video of ``prompt``."""
    seeds: list[int] | None = None
    """The search seeds: each prompt is searched once per seed (with ``search.seed`` = that seed); null:
    ``[search.seed]``."""
    output_dir: str | None = None
    """The run folder (``--out-dir``): videos/, results.csv, summary.md; a rerun resumes it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ConfigError(f"'seeds' must be a non-empty list of distinct integers, got {self.seeds}")

    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else [self.search.seed]

    def video_config(self, prompt: str | None = None, seed: int | None = None) -> InferT1Config:
        """The one-video config of ``prompt`` (default: ``self.prompt``) searched with ``seed`` (default:
        ``search.seed``): what ``<stem>.config.yaml`` holds and ``streamvid-infer-t1 --config`` regenerates."""
        cfg = InferT1Config(**{f.name: getattr(self, f.name) for f in fields(InferT1Config)})
        if prompt is not None:
            cfg = replace(cfg, prompt=prompt)
        return cfg if seed is None else replace(cfg, search=replace(cfg.search, seed=seed))


@dataclass(frozen=True)
class BatchItem:
    """One video of a run: a prompt of the file, a seed, and its index in the plan (what the ranks shard by)."""

    entry: PromptEntry
    seed: int
    index: int

    @property
    def key(self) -> str:
        return json.dumps([self.entry.prompt, self.seed], ensure_ascii=False)

    @property
    def stem(self) -> str:
        return f"{file_stem(self.entry.prompt)}-s{self.seed}"


@dataclass
class BatchResult:
    """What `run_batch` returns; ``rows`` (the results table) is None on ranks other than 0."""

    output_dir: Path
    rows: list[dict] | None
    counts: dict[str, int]
    """Planned / skipped / searched videos of this run, summed over every rank (the rank's own on others)."""


def resolve_batch(cfg: InferT1BatchConfig, args: argparse.Namespace) -> InferT1BatchConfig:
    """``cfg`` with the command line's prompt file, run folder, frames and seed; refuses what does not fit a prompt
    file's run (``--out``, a prompt as well, no folder, a folder that is a file). The search checks follow
    (`streamvid.tts.cli.check_search`)."""
    if args.out is not None:
        raise ConfigError("--out is one video's path: with a prompt file give --out-dir DIR (the run folder)")
    if args.prompts is not None:
        cfg = replace(cfg, prompts=args.prompts, prompt=None)
    if cfg.prompt is not None:
        raise ConfigError(f"the config sets both prompt and prompts ({cfg.prompts}): give --prompt for one video or "
                          "set prompt=null")
    if args.out_dir is not None:
        cfg = replace(cfg, output_dir=args.out_dir)
    if args.frames is not None:
        cfg = replace(cfg, num_frames=args.frames)
    if args.seed is not None:
        cfg = replace(cfg, seeds=[args.seed])
    if cfg.output_dir is None:
        raise ConfigError("no run folder for the prompt file: give --out-dir DIR (or set output_dir)")
    check_output_dir(cfg.output_dir, "--out-dir / output_dir")
    return cfg


def plan(cfg: InferT1BatchConfig) -> list[BatchItem]:
    """Every video of the run, prompt-major (each prompt's seeds in ``seeds`` order), over all ranks."""
    seeds = cfg.seed_list()
    entries = load_prompts(cfg.prompts)
    return [BatchItem(e, s, k * len(seeds) + j) for k, e in enumerate(entries) for j, s in enumerate(seeds)]


def read_results(out_dir: str | Path) -> dict[str, dict]:
    """The newest record per video key over every ``results*.jsonl`` shard."""
    newest: dict[str, dict] = {}
    for path in sorted(Path(out_dir).glob("results*.jsonl")):
        for rec in sharding.read_shard(path):
            if rec["key"] not in newest or rec["finished_at"] >= newest[rec["key"]]["finished_at"]:
                newest[rec["key"]] = rec
    return newest


def run_batch(cfg: InferT1BatchConfig) -> BatchResult:
    """Run (or resume) the prompt file's videos of ``cfg`` on this rank; rank 0 writes the merged table and the
    summary (see the module docstring)."""
    rank, world, owns_group = sharding.setup_process_group()
    threads = torch.get_num_threads()
    try:
        return _run(cfg, rank, world)
    finally:
        torch.set_num_threads(threads)
        if owns_group:
            torch.distributed.destroy_process_group()


def _run(cfg: InferT1BatchConfig, rank: int, world: int) -> BatchResult:
    out = Path(cfg.output_dir)
    items = plan(cfg)
    _check_same_run(cfg, out)
    mine = [it for it in items if it.index % world == rank]
    done = read_results(out)
    todo = [it for it in mine if not _finished(done.get(it.key), out)]
    # the one build, before config.yaml locks the folder (a checkpoint that does not fit fails here, exit 2)
    searcher = build_searcher(cfg, list(dict.fromkeys(it.entry.prompt for it in items))) if todo else None
    sharding.barrier(world)  # every rank has read the old config before rank 0 replaces it
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        write_resolved_config(cfg, out / "config.yaml")
    shard = sharding.shard_path(out, "results", rank, world)
    counts = dict(planned=len(mine), skipped=len(mine) - len(todo), searched=0)
    for item in tqdm(todo, desc=cfg.strategy, unit="video", file=sys.stderr, disable=rank != 0):
        file = f"videos/{item.stem}.mp4"
        summary = search_and_write(cfg.video_config(item.entry.prompt, item.seed), searcher,
                                   output_files(out / file), progress=False)
        sharding.append_record(shard, {
            "key": item.key, "prompt_index": item.entry.index, "prompt_id": item.entry.id,
            "prompt": item.entry.prompt, "seed": item.seed, "final": summary.final, "nfe": summary.nfe,
            "cost_multiple": summary.cost_multiple, "seconds": round(summary.seconds, 3), "file": file,
            "finished_at": time.time()})
        counts["searched"] += 1
    counts = sharding.sum_counts(counts, world)  # an all-reduce: every rank has finished its shard
    if rank != 0:
        return BatchResult(out, None, counts)
    records = read_results(out)
    rows = [{k: records[it.key][k] for k in RESULT_COLUMNS} for it in items if it.key in records]
    with atomic_write(out / "results.csv") as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    text = summary_markdown(cfg, rows, counts)
    with atomic_write(out / "summary.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"{PROG}: {out}: {len(rows)} videos of {len(items)}; this run searched {counts['searched']}, skipped "
          f"{counts['skipped']}; {text.splitlines()[-1]}", file=sys.stderr)
    print(f"{PROG}: wrote {out / 'results.csv'}, {out / 'summary.md'}", file=sys.stderr)
    return BatchResult(out, rows, counts)


def summary_markdown(cfg: InferT1BatchConfig, rows: list[dict], counts: dict[str, int], level: float = 0.95) -> str:
    """``summary.md``: the run, its counts, and a last line with the mean final score (percentile-bootstrap CI over
    the videos, `bootstrap_ci`), the mean NFE and cost multiple."""
    finals = [r["final"] for r in rows if r["final"] is not None]
    if finals:
        lo, hi = bootstrap_ci(finals, level=level, seed=0)
        final = f"mean final score {sum(finals) / len(finals):.4f} ({level:.0%} CI {lo:.4f} to {hi:.4f}, {len(finals)} videos)"
    else:
        final = "mean final score n/a (no video has one: one beam, nothing picked)"
    nfe = sum(r["nfe"] for r in rows) / max(len(rows), 1)
    cost = sum(r["cost_multiple"] for r in rows) / max(len(rows), 1)
    seconds = sum(r["seconds"] for r in rows)
    return (f"# {PROG}: {cfg.strategy} over {cfg.prompts}\n\n"
            f"{len(rows)} videos ({len({r['prompt'] for r in rows})} prompts x seeds {cfg.seed_list()}), "
            f"{cfg.num_frames} latent frames at {cfg.fps} fps; search wall time {seconds:.1f} s in all. The last run searched "
            f"{counts['searched']} and skipped {counts['skipped']} already made. Per video: results.csv.\n\n"
            f"{final}, mean NFE {nfe:.1f} ({cost:.3f}x plain)\n")


def _finished(rec: dict | None, out: Path) -> bool:
    return rec is not None and (out / rec["file"]).is_file()


def _check_same_run(cfg: InferT1BatchConfig, out: Path) -> None:
    old_path = out / "config.yaml"
    if not old_path.is_file():
        return
    try:
        old = load_config(old_path, schema=InferT1BatchConfig)
    except ConfigError as err:
        raise ConfigError(f"output_dir {out} holds a config.yaml that is not a {PROG} prompt-file run's ({err}): "
                          "choose another folder") from None

    def identity(c: InferT1BatchConfig, name: str):
        value = getattr(c, name)
        return replace(value, seed=0) if name == "search" else value

    changed = [f for f in SAME_RUN_FIELDS if identity(old, f) != identity(cfg, f)]
    if changed:
        raise ConfigError(f"output_dir {out} holds a run with different {', '.join(changed)}; its videos and results "
                          "would mix with this run's: choose another folder or delete that one")
