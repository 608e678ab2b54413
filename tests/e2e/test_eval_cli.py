"""`streamvid-eval` end to end on the tiny randomly initialised generator: a run writes its folder, a rerun
resumes it, `--compare` pairs two runs, user errors are one line with exit code 2, and `torchrun` with 2 ranks
gives the 1-process table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from streamvid.core.config import load_config
from streamvid.eval.cli import main
from streamvid.eval.report import read_scores
from streamvid.eval.runner import EvalConfig

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "eval" / "shapes_smoke.yaml"


def test_run_resume_and_compare(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--config", str(SMOKE), "--set", f"output_dir={run}", "--set", "seeds=[3]", "--set", "progress=false"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "| temporal_flickering " in out and "| sharpness.drift " in out
    assert "4 videos (0 failed); this run generated 4, scored 4, skipped 0" in err
    table = read_scores(run)
    assert len(table) == 4 and (table["seed"] == 3).all() and (table["status"] == "ok").all()
    assert load_config(run / "config.yaml", schema=EvalConfig) == load_config(
        SMOKE, [f"output_dir={run}", "seeds=[3]", "progress=false"], schema=EvalConfig)
    assert "smoke run, not results" in (run / "summary.md").read_text()
    assert (run / "plots" / "windows.png").is_file() and len(list((run / "videos").glob("*.mp4"))) == 4

    assert main(args) == 0
    assert "this run generated 0, scored 0, skipped 4" in capsys.readouterr().err

    assert main(["--compare", str(run), str(run), "--out", str(tmp_path / "cmp")]) == 0
    comparison = pd.read_csv(tmp_path / "cmp" / "comparison.csv").set_index("metric")
    assert (comparison.loc["sharpness", "n_pairs"], comparison.loc["sharpness", "mean_diff"]) == (4, 0.0)
    assert comparison.loc["sharpness", "win_rate"] == 0.5  # every pair ties
    assert "B - A" in (tmp_path / "cmp" / "comparison.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--config", "missing.yaml"], "config file not found: missing.yaml"),
    (["--config", str(SMOKE), "--set", "metrics=[sharpnes]", "--set", "windows=null"],
     "metrics: unknown ['sharpnes']; registered:"),
    (["--config", str(SMOKE), "--set", "metrics=[sharpness]"], "'windows.metrics' ['warping_error'] are not in"),
    (["--config", str(SMOKE), "--set", "prompts={tmp}/bad.csv"], "bad.csv:3: empty prompt"),
    (["--config", str(SMOKE), "--set", "seeds=[1,1]"], "'seeds' must be a non-empty list of distinct integers"),
    (["--compare", "nowhere_a", "nowhere_b"], "no scores.csv in run folder nowhere_a"),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys, args, message):
    (tmp_path / "bad.csv").write_text('prompt\na red circle\n""\n')
    args = [a.format(tmp=tmp_path) for a in args]
    if "--config" in args:
        args += ["--set", f"output_dir={tmp_path / 'run'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamvid-eval: error: ") and err.count("\n") == 1 and message in err


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(tmp_path):
    common = ["--config", str(SMOKE), "--set", "progress=false", "--set", "seeds=[0]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = str(Path(sys.executable).with_name("streamvid-eval"))
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    subprocess.run([cli, *common, "--set", f"output_dir={tmp_path / 'one'}"], check=True, env=env,
                   capture_output=True, timeout=300)
    subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", cli, *common, "--set",
                    f"output_dir={tmp_path / 'two'}"], check=True, env=env, capture_output=True, timeout=300)
    one, two = read_scores(tmp_path / "one"), read_scores(tmp_path / "two")
    assert len(one) == 4 and sorted(p.name for p in (tmp_path / "two").glob("scores.rank*.jsonl")) == [
        "scores.rank0.jsonl", "scores.rank1.jsonl"]
    pd.testing.assert_frame_equal(one.drop(columns="seconds"), two.drop(columns="seconds"))
