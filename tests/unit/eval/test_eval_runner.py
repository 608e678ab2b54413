"""The evaluation runner: resume skips finished videos, failures are recorded and the run goes on, a folder of
videos evaluates like generated ones, and 2 sharded processes give the 1-process table."""

from __future__ import annotations

import json
import math
import os
import socket
import time
import zlib
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from streamvid.core.config import ConfigError, load_config
from streamvid.eval.metrics import MetricSpec, register
from streamvid.eval.metrics import registry as metric_registry
from streamvid.eval.report import read_scores
from streamvid.eval.runner import EvalConfig, WorkItem, plan, run_eval

REPO = Path(__file__).resolve().parents[3]
SMOKE = REPO / "configs" / "eval" / "tiny_random_smoke.yaml"
PROMPTS = ("a red circle moving left", "a blue square moving up", "a green triangle moving down")


class FakeGenerator:
    """`stream_video` stand-in: a random texture, fixed by (prompt, seed), rolling right 1 px per frame."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[tuple[str, int]] = []
        self.fail_on = fail_on

    def stream_video(self, prompts, num_frames, seed):
        self.calls.append((prompts[0], seed))
        if self.fail_on and self.fail_on in prompts[0]:
            raise RuntimeError(f"generation exploded for {prompts[0]!r}")
        g = torch.Generator().manual_seed(seed * 7919 + zlib.crc32(prompts[0].encode()))
        base = torch.rand(3, 16, 16, generator=g)
        for start in range(0, num_frames, 3):
            yield torch.stack([base.roll(t, dims=2) for t in range(start, start + 3)]).unsqueeze(0)


def make_cfg(root: Path, *overrides: str, prompts=PROMPTS) -> EvalConfig:
    root.mkdir(parents=True, exist_ok=True)
    (root / "prompts.txt").write_text("\n".join(prompts) + "\n")
    return load_config(SMOKE, [f"prompts={root / 'prompts.txt'}", f"output_dir={root / 'run'}", "progress=false",
                               "seeds=[0,1]", "metrics=[sharpness,brightness_drift]", "windows=null", "num_frames=6",
                               *overrides], schema=EvalConfig)


@pytest.fixture
def raising_metric():
    """A registered metric that raises for prompts containing 'blue' (removed again after the test)."""

    def fn(frames, prompt):
        if "blue" in prompt:
            raise ValueError("cannot score blue")
        return float(frames.mean())

    register(MetricSpec("raises_on_blue", fn, inputs=("frames", "prompt")), overwrite=True)
    yield "raises_on_blue"
    metric_registry._REGISTRY.pop("raises_on_blue")


def test_plan_seeds_and_names(tmp_path):
    items = plan(make_cfg(tmp_path))
    assert [(it.entry.index, it.sample_index, it.seed) for it in items] == [
        (p, i, s) for p in range(3) for i, s in enumerate([0, 1])]
    assert [it.seed for it in plan(make_cfg(tmp_path, "seeds=null", "samples_per_prompt=3", "base_seed=10"))][:3] \
        == [10, 11, 12]
    name = WorkItem(items[0].entry, 1, 5).video_name()
    assert name.startswith("a_red_circle_moving_left-") and name.endswith("-1-s5.mp4")


def test_resume_skips_finished_videos_and_scores_only_what_is_missing(tmp_path):
    cfg = make_cfg(tmp_path)
    gen = FakeGenerator()
    first = run_eval(cfg, generator=gen)
    assert len(gen.calls) == 6 and first.counts["generated"] == 6 and (first.table["status"] == "ok").all()
    assert len(list((tmp_path / "run" / "videos").glob("*.mp4"))) == 6

    again = run_eval(cfg, generator=gen)
    assert len(gen.calls) == 6 and again.counts["skipped"] == 6
    pd.testing.assert_frame_equal(first.table, again.table)

    # A crash between writing a video and its record: the record line is cut short. The rerun redoes only that
    # video, from its file (no generation).
    shard = tmp_path / "run" / "scores.jsonl"
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text("".join(lines[:-1]) + lines[-1][:40])
    with pytest.warns(UserWarning, match="unreadable record"):
        resumed = run_eval(cfg, generator=gen)
    assert len(gen.calls) == 6 and resumed.counts["scored"] == 1 and resumed.counts["skipped"] == 5
    assert resumed.table.iloc[-1]["source"] == "file"

    # Adding a metric scores just that metric from the kept videos.
    more = make_cfg(tmp_path, "metrics=[sharpness,brightness_drift,colour_drift]")
    with pytest.warns(UserWarning):
        extended = run_eval(more, generator=gen)
    assert len(gen.calls) == 6 and extended.counts["scored"] == 6
    assert extended.table["colour_drift"].notna().all()
    assert extended.table["sharpness"].tolist() == resumed.table["sharpness"].tolist()


def test_failures_are_recorded_and_the_run_continues(tmp_path, raising_metric):
    cfg = make_cfg(tmp_path, f"metrics=[sharpness,{raising_metric}]")
    result = run_eval(cfg, generator=FakeGenerator(fail_on="green"))
    table = result.table.set_index("prompt")
    assert len(table) == 6 and result.counts["failed"] == 4
    blue, green, red = (table.loc[p] for p in (PROMPTS[1], PROMPTS[2], PROMPTS[0]))
    assert (blue["status"] == "failed").all() and blue["error"].str.contains(
        "metric raises_on_blue: ValueError: cannot score blue").all()
    assert blue["sharpness"].notna().all()  # the other metrics of a failed video are still computed
    assert (green["status"] == "failed").all() and green["error"].str.contains("video: RuntimeError").all()
    assert green["file"].isna().all() or not any((tmp_path / "run" / f).exists() for f in green["file"].dropna())
    assert (red["status"] == "ok").all() and red[raising_metric].notna().all()
    summary = result.summary.set_index("metric")
    assert summary.loc["sharpness", "n"] == 2  # ok videos only
    assert "## Failed videos" in (tmp_path / "run" / "summary.md").read_text()

    retry = run_eval(cfg, generator=FakeGenerator())  # failed videos are retried; the blue metric still fails
    assert retry.counts == {"planned": 6, "skipped": 2, "generated": 2, "scored": 2, "failed": 2}


def test_videos_dir_evaluates_an_exported_run(tmp_path):
    gen_cfg = make_cfg(tmp_path / "gen", "export.enabled=true", "export.fps=8")
    generated = run_eval(gen_cfg, generator=FakeGenerator()).table
    export_dir = tmp_path / "gen" / "run" / "vbench"
    assert (export_dir / "manifest.csv").is_file() and len(list(export_dir.glob("*-[01].mp4"))) == 6
    (export_dir / f"{PROMPTS[0]}-1.mp4").unlink()  # a missing video is a failed row, not a silent skip

    folder_cfg = load_config(REPO / "configs" / "eval" / "videos_folder.yaml", [
        f"videos_dir={export_dir}", f"output_dir={tmp_path / 'folder'}", "metrics=[sharpness,brightness_drift]",
        "progress=false"], schema=EvalConfig)
    table = run_eval(folder_cfg).table
    assert list(zip(table["prompt"], table["seed"])) == list(zip(generated["prompt"], generated["seed"]))
    missing = table[table["status"] == "failed"]
    assert len(missing) == 1 and "FileNotFoundError" in missing["error"].iloc[0]
    ok = table["status"] == "ok"
    # The export copies the mp4 files (same fps) and every run scores decoded files: identical scores.
    for name in ("sharpness", "brightness_drift"):
        assert table.loc[ok, name].tolist() == generated.loc[ok, name].tolist()


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"\(--set metrics=\[no_such_metric\]\): unknown metric 'no_such_metric'"):
        make_cfg(tmp_path, "metrics=[no_such_metric]")
    with pytest.raises(ConfigError, match="either 'generator' or 'videos_dir'"):
        make_cfg(tmp_path, f"videos_dir={tmp_path}")
    with pytest.raises(ConfigError, match="'metric_options' for \\['sharp'\\]"):
        make_cfg(tmp_path, "metric_options={sharp: {}}")
    with pytest.raises(ConfigError, match="window of 9 frames exceeds num_frames 6"):
        run_eval(make_cfg(tmp_path, "windows={window: 9}"), generator=FakeGenerator())
    with pytest.raises(ConfigError, match="multiple of the chunk 3"):
        make_cfg(tmp_path, "num_frames=7")
    run_eval(make_cfg(tmp_path), generator=FakeGenerator())
    with pytest.raises(ConfigError, match="holds a run with different num_frames"):
        run_eval(make_cfg(tmp_path, "num_frames=9"), generator=FakeGenerator())


def test_windows_give_drift_columns_curves_and_a_plot(tmp_path):
    cfg = make_cfg(tmp_path, "num_frames=12", "windows={window: 4, metrics: [sharpness], clip_consistency: true}")
    table = run_eval(cfg, generator=FakeGenerator()).table
    windows = pd.read_csv(tmp_path / "run" / "windows.csv")
    assert len(windows) == 6 * 3 and set(windows["metric"]) == {"sharpness"}
    assert {"sharpness.drift", "sharpness.slope", "clip_consistency"} <= set(table.columns)
    assert "brightness_drift.drift" not in table.columns
    assert (tmp_path / "run" / "plots" / "windows.png").stat().st_size > 0
    first = windows[(windows["prompt_index"] == 0) & (windows["seed"] == 0)]["value"].to_numpy()
    assert table.loc[0, "sharpness.drift"] == pytest.approx(first[0] - first[-1])


def _shard_worker(rank: int, world: int, port: int, cfg: EvalConfig) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = run_eval(cfg, generator=FakeGenerator())
        (Path(cfg.output_dir).parent / f"counts.rank{rank}.json").write_text(json.dumps(result.counts))
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_sharded_processes_give_the_one_process_table(tmp_path):
    run_eval(make_cfg(tmp_path / "one"), generator=FakeGenerator())
    cfg = make_cfg(tmp_path / "two")
    # fork, not spawn: the children inherit the imported modules instead of re-importing diffusers (~6 s each)
    ctx = mp.start_processes(_shard_worker, args=(2, _free_port(), cfg), nprocs=2, join=False, start_method="fork")
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for process in ctx.processes:
                process.kill()
            pytest.fail("sharded run did not finish within 120 s")
    one, two = read_scores(tmp_path / "one" / "run"), read_scores(tmp_path / "two" / "run")
    pd.testing.assert_frame_equal(one.drop(columns="seconds"), two.drop(columns="seconds"))
    # rank 0 reports the whole run (issue 21: it counted its own videos only)
    counts = json.loads((tmp_path / "two" / "counts.rank0.json").read_text())
    assert counts["planned"] == counts["generated"] == counts["scored"] == len(one) and counts["skipped"] == 0
    # resumed by one process (another world size): every video is found in the rank shards, nothing is redone
    again = run_eval(make_cfg(tmp_path / "two"), generator=FakeGenerator())
    assert again.counts["skipped"] == len(one) and again.counts["generated"] == again.counts["scored"] == 0
    pd.testing.assert_frame_equal(read_scores(tmp_path / "two" / "run").drop(columns="seconds"),
                                  one.drop(columns="seconds"))
    for rank, prompts in ((0, {0, 2}), (1, {1})):
        shard = (tmp_path / "two" / "run" / f"scores.rank{rank}.jsonl").read_text().splitlines()
        assert {json.loads(line)["prompt_index"] for line in shard} == prompts
    assert not math.isnan(one["sharpness"].sum())
