"""`streamvid-eval` end to end on the tiny randomly initialised generator: a run writes its folder, a rerun
resumes it, `--compare` pairs two runs, user errors are one line with exit code 2 (checked before any video, nothing
already written is lost; the `*_script_*` tests run the real console script), and `torchrun` with 2 ranks gives the
1-process table."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import console_scripts
import pandas as pd
import pytest
import torch
from console_scripts import read_only, snapshot

from streamvid.core.config import load_config
from streamvid.core.video_io import write_video
from streamvid.eval.cli import main
from streamvid.eval.report import read_scores
from streamvid.eval.runner import EvalConfig

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "eval" / "tiny_random_smoke.yaml"


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
     "(--set metrics=[sharpnes]): unknown metric 'sharpnes' in 'metrics' (did you mean 'sharpness'?); known metrics:"),
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


# ---------------------------------------------------------------------------------------------------------
# The real console script (.venv/bin/streamvid-eval): exit code, one line on stderr, nothing already written lost.

VIDEOS_FOLDER = REPO / "configs" / "eval" / "videos_folder.yaml"
PROMPT = "a red circle moving left"


def run_script(*args) -> subprocess.CompletedProcess:
    return console_scripts.run_script("streamvid-eval", *args)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a user error (exit code 2)."""
    return console_scripts.error_line(proc, "streamvid-eval")


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> list[str]:
    """`--config` arguments of a one-video suite on the smoke generator (3 frames, one metric: seconds)."""
    root = tmp_path_factory.mktemp("suite")
    (root / "prompts.txt").write_text(PROMPT + "\n")
    return ["--config", str(SMOKE), "--set", f"prompts={root / 'prompts.txt'}", "--set", "seeds=[0]",
            "--set", "num_frames=3", "--set", "windows=null", "--set", "metrics=[sharpness]", "--set", "progress=false"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """A checkpoint and text encoder that fit the smoke generator, one of another size, and a corrupt file."""
    from streamvid.core.causal_wan import CausalWanModel
    from streamvid.core.checkpoints import save_model
    from streamvid.core.generator import build_generator, prompt_vocabulary

    root = tmp_path_factory.mktemp("weights")
    cfg = load_config(SMOKE, schema=EvalConfig).generator
    gen = build_generator(cfg, vocabulary=prompt_vocabulary([PROMPT]))
    save_model(gen.model, root / "ckpt")
    gen.text_encoder.save(root / "text")
    save_model(CausalWanModel(**{**cfg.model.to_diffusers_kwargs(), "num_layers": 3}), root / "ckpt_3_layers")
    (root / "corrupt.safetensors").write_bytes(b"\x00not a safetensors file")
    return {"ckpt": root / "ckpt", "text": root / "text", "other size": root / "ckpt_3_layers",
            "unreadable": root / "corrupt.safetensors", "missing": root / "nowhere.safetensors"}


@pytest.mark.parametrize("case, expected", [
    ("missing", "checkpoint not found"),
    ("unreadable", "is not a readable safetensors file"),
    ("other size", "does not fit generator.model"),
])
def test_script_bad_checkpoint_fails_before_any_video(tmp_path, suite, weights, case, expected):
    run = tmp_path / "run"
    line = error_line(run_script(*suite, "--set", f"output_dir={run}", "--set", f"generator.checkpoint={weights[case]}",
                                 "--set", f"generator.text_encoder.path={weights['text']}"))
    assert "generator.checkpoint" in line and expected in line
    assert not run.exists()  # no video, and no config.yaml locking the folder to the bad config


@pytest.mark.slow
def test_script_trained_run_after_a_bad_one_and_random_text_encoder_refused(tmp_path, suite, weights):
    run = tmp_path / "run"
    good = ["--set", f"generator.checkpoint={weights['ckpt']}", "--set", f"generator.text_encoder.path={weights['text']}"]
    error_line(run_script(*suite, "--set", f"output_dir={run}", "--set", f"generator.checkpoint={weights['other size']}",
                          "--set", f"generator.text_encoder.path={weights['text']}"))
    proc = run_script(*suite, "--set", f"output_dir={run}", *good)  # the folder was not locked by the bad run
    assert proc.returncode == 0, proc.stderr
    assert "1 videos (0 failed)" in proc.stderr and "note:" not in proc.stderr and "warning:" not in proc.stderr
    assert read_scores(run)["status"].tolist() == ["ok"]

    # A trained checkpoint with a random text encoder is refused before anything is written ...
    refused = tmp_path / "refused"
    line = error_line(run_script(*suite, "--set", f"output_dir={refused}", "--set",
                                 f"generator.checkpoint={weights['ckpt']}"))
    assert "generator.text_encoder.path is null" in line and "allow_random_text_encoder=true" in line
    assert not refused.exists()
    # ... and, when allowed, said loudly on the terminal and in summary.md.
    other = tmp_path / "allowed"
    proc = run_script(*suite, "--set", f"output_dir={other}", "--set", f"generator.checkpoint={weights['ckpt']}",
                      "--set", "allow_random_text_encoder=true")
    assert proc.returncode == 0, proc.stderr
    assert sum(line.startswith(("warning: Text encoder randomly initialised", "note: Text encoder randomly initialised"))
               for line in proc.stderr.splitlines()) == 2
    assert "Text encoder randomly initialised" in (other / "summary.md").read_text()


def test_script_smoke_run_says_so_on_the_terminal(tmp_path, suite):
    proc = run_script(*suite, "--set", f"output_dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: Generator randomly initialised (generator.checkpoint is null): a smoke run, not results."]
    assert "smoke run, not results" in (tmp_path / "run" / "summary.md").read_text()
    assert "| sharpness " in proc.stdout


@pytest.mark.parametrize("case", ["empty", "misnamed", "only other files"])
def test_script_videos_dir_without_vbench_names_is_one_line(tmp_path, case):
    videos = tmp_path / "videos"
    videos.mkdir()
    if case == "misnamed":
        write_video(videos / f"{PROMPT}-0.mp4", torch.rand(4, 3, 16, 16), fps=8)
        write_video(videos / "clip_001.mp4", torch.rand(4, 3, 16, 16), fps=8)
    elif case == "only other files":
        (videos / "notes.txt").write_text("no videos here\n")
    line = error_line(run_script("--config", VIDEOS_FOLDER, "--set", f"videos_dir={videos}", "--set",
                                 f"output_dir={tmp_path / 'run'}", "--set", "progress=false"))
    assert "{prompt}-{i}.mp4" in line and str(videos) in line
    assert {"empty": "it is empty", "misnamed": "'clip_001.mp4' does not match",
            "only other files": "'notes.txt'"}[case] in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["a file", "under a file", "read-only"])
def test_script_unusable_output_dir_is_one_line(tmp_path, suite, case):
    target = tmp_path / "target"
    if case == "read-only":
        target.mkdir()
        (target / "config.yaml").write_text("keep: me\n")
    else:
        target.write_text("precious\n")
    before = snapshot(tmp_path)
    output_dir = target / "run" if case == "under a file" else target
    with read_only(target) if case == "read-only" else contextlib.nullcontext():
        line = error_line(run_script(*suite, "--set", f"output_dir={output_dir}"))
    assert line.startswith(f"streamvid-eval: error: output_dir {output_dir}")
    assert ("is not writable" if case == "read-only" else "is a file, not a directory") in line
    assert snapshot(tmp_path) == before


def test_script_failed_video_error_cell_is_the_one_line_cause(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / f"{PROMPT}-0.mp4", torch.rand(6, 3, 16, 16), fps=8)
    (videos / f"{PROMPT}-1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    proc = run_script("--config", VIDEOS_FOLDER, "--set", f"videos_dir={videos}", "--set",
                      f"output_dir={tmp_path / 'run'}", "--set", "metrics=[sharpness]", "--set", "progress=false")
    assert proc.returncode == 0, proc.stderr
    table = read_scores(tmp_path / "run").set_index("sample_index")
    assert table["status"].tolist() == ["ok", "failed"]
    error = table.loc[1, "error"]
    assert error.startswith("video: VideoReadError: cannot decode") and "\n" not in error and len(error) <= 500
    assert "Invalid data found when processing input" in error and "ffmpeg version" not in error
    assert error in (tmp_path / "run" / "summary.md").read_text()


def _scores(folder: Path, rows: list[tuple[str, int, str, float]]) -> Path:
    folder.mkdir(parents=True)
    pd.DataFrame([{"prompt": p, "sample_index": 0, "seed": s, "status": st, "sharpness": v} for p, s, st, v in rows]
                 ).to_csv(folder / "scores.csv", index=False)
    return folder


@pytest.mark.parametrize("case", ["no common pair", "no common ok pair"])
def test_script_compare_without_common_pairs_is_one_line(tmp_path, case):
    a = _scores(tmp_path / "a", [(PROMPT, 0, "ok", 1.0), (PROMPT, 1, "failed" if case != "no common pair" else "ok", 2.0)])
    b = _scores(tmp_path / "b", [(PROMPT, 5, "ok", 1.5)] if case == "no common pair" else [(PROMPT, 1, "ok", 1.5)])
    line = error_line(run_script("--compare", a, b, "--out", tmp_path / "cmp"))
    if case == "no common pair":
        assert "share no (prompt, seed) pair" in line and f"({PROMPT!r}, 0)" in line and f"({PROMPT!r}, 5)" in line
    else:
        assert "share 1 (prompt, seed) pairs but none where both videos are ok" in line
    assert not (tmp_path / "cmp").exists()


def test_script_compare_out_is_a_file(tmp_path):
    a = _scores(tmp_path / "a", [(PROMPT, 0, "ok", 1.0)])
    (tmp_path / "cmp").write_text("precious\n")
    line = error_line(run_script("--compare", a, a, "--out", tmp_path / "cmp"))
    assert "--out" in line and "is a file, not a directory" in line
    assert (tmp_path / "cmp").read_text() == "precious\n"
