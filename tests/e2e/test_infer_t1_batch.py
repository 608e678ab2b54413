"""`streamvid-infer-t1 --prompts FILE --out-dir DIR`: one searched video per (prompt, seed) with the shipped shapes
student. Two torchrun ranks (gloo, CPU) resume a one-process run and make the same videos and scores as one process;
a rerun skips what is made and redoes what a crash lost; bad input is one line before any model is built."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
import torch
from console_scripts import ENV, script, snapshot

from streamvid.core.cli.paths import write_resolved_config
from streamvid.core.config import load_config
from streamvid.tts.batch import InferT1BatchConfig
from streamvid.tts.cli import main

CONFIG = "configs/infer/shapes_t1.yaml"
PROMPTS = ["a red circle moving left", "a blue square moving down"]
COMMON = ["--config", CONFIG, "--frames", "6", "--set", "seeds=[0, 1]"]  # 2 chunks: 2 prompts x 2 seeds stay fast


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """`main` sets torch's thread count from the config (1); give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _prompt_file(folder: Path, prompts: list[str], name: str = "prompts.txt") -> Path:
    path = folder / name
    path.write_text("# shapes prompts\n\n" + "\n".join(prompts) + "\n")
    return path


def _table(out: Path) -> list[dict]:
    with (out / "results.csv").open(newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _videos(out: Path) -> dict[str, bytes]:
    """Every per-video file but the ledger (its times differ run to run; its NFE is in results.csv)."""
    return {name: data for name, data in snapshot(out / "videos").items() if not name.endswith(".ledger.json")}


@pytest.mark.slow
def test_two_ranks_resume_a_one_process_run_and_match_one_process(tmp_path: Path, capsys):
    prompts, first = _prompt_file(tmp_path, PROMPTS), _prompt_file(tmp_path, PROMPTS[:1], "first.txt")
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*COMMON, "--prompts", str(prompts), "--out-dir", str(one)]) == 0
    assert "4 videos of 4; this run searched 4, skipped 0" in capsys.readouterr().err
    # the first prompt's two videos by one process, then the whole file by two ranks: each rank searches the one
    # video of its shard (plan index % 2) that is missing
    assert main([*COMMON, "--prompts", str(first), "--out-dir", str(two)]) == 0
    proc = subprocess.run([str(script("torchrun")), "--standalone", "--nproc_per_node", "2",
                           str(script("streamvid-infer-t1")), *COMMON, "--prompts", str(prompts), "--out-dir", str(two)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 videos of 4; this run searched 2, skipped 2" in proc.stderr
    lines = {p.name: p.read_text().count("\n") for p in two.glob("results*.jsonl")}
    assert lines == {"results.jsonl": 2, "results.rank0.jsonl": 1, "results.rank1.jsonl": 1}

    table = _table(one)
    assert [(r["prompt"], int(r["seed"])) for r in table] == [(p, s) for p in PROMPTS for s in (0, 1)]
    assert all(float(r["final"]) > 0 and int(r["nfe"]) > 0 for r in table)
    assert _table(two) == table  # same final scores, NFE, cost multiples and files, every video once
    assert len(_videos(one)) == 4 * 6 and _videos(two) == _videos(one)  # the same video bytes, scores and trees

    # A rerun with nothing to do writes no record ...
    shards = {p.name: p.read_bytes() for p in two.glob("results*.jsonl")}
    assert main([*COMMON, "--prompts", str(prompts), "--out-dir", str(two)]) == 0
    assert "this run searched 0, skipped 4" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in two.glob("results*.jsonl")} == shards
    # ... and one after a crash redoes what it lost: a video file (rank 1's) and a record cut short (one process's)
    (two / table[3]["file"]).unlink()
    records = (two / "results.jsonl").read_text()
    (two / "results.jsonl").write_text(records[: records.rindex("{") + 30])
    with pytest.warns(UserWarning, match="unreadable record"):
        assert main([*COMMON, "--prompts", str(prompts), "--out-dir", str(two)]) == 0
    assert "this run searched 2, skipped 2" in capsys.readouterr().err
    assert _table(two) == table and _videos(two) == _videos(one)
    summary = (two / "summary.md").read_text()
    assert "4 videos (2 prompts x seeds [0, 1])" in summary and "mean final score" in summary


def _other_run(folder: Path) -> list[str]:
    """A run folder made with strategy greedy (its config.yaml only)."""
    cfg = load_config(CONFIG, ["strategy=greedy", f"output_dir={folder}"], schema=InferT1BatchConfig)
    write_resolved_config(cfg, folder / "config.yaml")
    return ["--out-dir", str(folder)]


@pytest.mark.parametrize(("args", "needle"), [
    (["--prompts", "{tmp}/nowhere.txt", "--out-dir", "{tmp}/run"], "prompt file not found"),
    (["--prompts", "{tmp}/empty.txt", "--out-dir", "{tmp}/run"], "holds no prompts"),
    (["--prompts", "{tmp}/prompts.txt", "--prompt", PROMPTS[0], "--out-dir", "{tmp}/run"], "not both"),
    (["--prompts", "{tmp}/cat.txt", "--out-dir", "{tmp}/run"], "words outside the shapes vocabulary: cat"),
    (["--prompts", "{tmp}/prompts.txt", "--out-dir", "{tmp}/prompts.txt"], "is a file, not a directory"),
    (["--prompts", "{tmp}/prompts.txt", "--out", "{tmp}/x.mp4"], "--out is one video's path"),
    (["--prompts", "{tmp}/prompts.txt"], "no run folder"),
    (["--prompt", PROMPTS[0], "--out-dir", "{tmp}/run"], "--out-dir is the folder of a prompt file's run"),
    (["--prompts", "{tmp}/prompts.txt", "--out-dir", "{tmp}/run", "--set", "seeds=[1, 1]"], "distinct integers"),
    (["--prompts", "{tmp}/prompts.txt", "other run"], "holds a run with different strategy"),
    (["--prompts", "{tmp}/prompts.txt", "--out-dir", "{tmp}/run", "WORLD_SIZE=2"], "['RANK', 'MASTER_ADDR', 'MASTER_PORT'] unset"),
], ids=["missing-file", "empty-file", "prompt-and-prompts", "unscorable-prompt", "out-dir-is-a-file", "out-with-prompts",
        "no-out-dir", "out-dir-without-prompts", "repeated-seed", "another-run", "world-size-without-torchrun"])
def test_bad_input_is_one_line(tmp_path: Path, capsys, monkeypatch, args: list[str], needle: str):
    args = list(args)
    _prompt_file(tmp_path, PROMPTS)
    _prompt_file(tmp_path, [], "empty.txt")  # comments and a blank line only
    _prompt_file(tmp_path, ["a cat playing the piano"], "cat.txt")
    if "other run" in args:
        args = [a for a in args if a != "other run"] + _other_run(tmp_path / "other")
    if "WORLD_SIZE=2" in args:
        args.remove("WORLD_SIZE=2")
        monkeypatch.setenv("WORLD_SIZE", "2")
        for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            monkeypatch.delenv(name, raising=False)
    before = snapshot(tmp_path)
    assert main(["--config", CONFIG, *(a.format(tmp=tmp_path) for a in args)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamvid-infer-t1: error: ") and needle in lines[0], lines
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()  # nothing written

