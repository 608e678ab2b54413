"""Issue 21 §4, the defects a new user hit, each through the real console script: bad input is one `error:` line
naming what is wrong and where it came from (the file or `--set`), exit code 2, before any model is built."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import torch

from streamvid.core.video_io import read_video
from tests.console_scripts import ENV, error_line, run_script, script

REPO = Path(__file__).resolve().parents[2]
PNG = REPO / "docs" / "img" / "dmd_curve.png"
GENERATE = ("streamvid-generate", "--prompt", "a red circle moving left")
INFER = ("streamvid-infer-t1", "--config", "configs/infer/shapes_t1.yaml", "--prompt", "a red circle moving left")


def _error(cmd: tuple, *args) -> str:
    proc = run_script(*cmd, *args)
    return error_line(proc, cmd[0])


@pytest.mark.parametrize("cmd", [
    ("streamvid-generate", "--prompt", "x", "--out", "{tmp}/a.mp4"),
    ("streamvid-infer-t1", "--prompt", "x", "--out", "{tmp}/a.mp4"),
    ("streamvid-eval",),
    ("streamvid-train", "r1"),
], ids=lambda c: c[0])
def test_a_binary_config_is_one_line_naming_the_file(cmd, tmp_path):
    line = _error(tuple(str(a).format(tmp=tmp_path) for a in cmd), "--config", PNG)
    assert "dmd_curve.png: not a YAML text file (not UTF-8: byte 0x89 at offset 0)" in line


@pytest.mark.parametrize(("config", "overrides", "expected"), [
    ("configs/generate/tiny_random.yaml", ["generator.device=cuda"],
     "(--set generator.device=cuda): generator.device='cuda', but this torch has no CUDA device"),
    ("configs/generate/shapes_student.yaml", ["generator.height=64", "generator.width=64"],
     "(--set generator.height=64, --set generator.width=64): generator.height/width 64x64 make 16x16 tokens per frame, but "
     "generator.model.learned_positions cover 8x8"),
    ("configs/generate/tiny_random.yaml", ["generator.text_encoder.kind=shapes_bag"],
     "(--set generator.text_encoder.kind=shapes_bag): generator.text_encoder.kind=shapes_bag needs "
     "generator.model.text_dim >= 44 (one channel per shapes-world "
     "word), got 32"),
], ids=["cuda_on_cpu_torch", "positions_too_small", "bag_wider_than_text_dim"])
def test_overrides_that_cannot_build_are_refused_with_the_config(config, overrides, expected, tmp_path):
    if torch.cuda.is_available() and "cuda" in expected:
        pytest.skip("this torch has CUDA")
    sets = [a for o in overrides for a in ("--set", o)]
    line = _error(GENERATE, "--config", config, "--out", tmp_path / "a.mp4", *sets)
    assert f"error: invalid value from the command line {expected}" in line
    assert line.count("--set ") == len(overrides) and not (tmp_path / "a.mp4").exists()


def test_an_empty_config_names_the_fields_that_do_not_fit(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    line = _error(GENERATE, "--config", tmp_path / "empty.yaml", "--out", tmp_path / "a.mp4")
    assert line.endswith("invalid config " + str(tmp_path / "empty.yaml") + ": generator.model.in_channels/out_channels "
                         "(16/16) must equal the latent channels of generator.codec (pixel: 12)")


def test_eval_refuses_a_text_encoder_that_cannot_be_built(tmp_path):
    line = _error(("streamvid-eval",), "--config", "configs/eval/tiny_random_smoke.yaml", "--set",
                  f"output_dir={tmp_path}/run", "--set", "generator.text_encoder.kind=shapes_bag")
    assert "(--set generator.text_encoder.kind=shapes_bag): generator.text_encoder.kind=shapes_bag needs" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("cmd", "override", "expected"), [
    (INFER, "n=0", "(--set n=0): n must be >= 1, got 0"),
    (INFER, "strategy=foo", "(--set strategy=foo): 'strategy' must be one of"),
    (GENERATE + ("--config", "configs/generate/tiny_random.yaml"), "generator.sampler.cache.local_attn_frames=-1",
     "(--set generator.sampler.cache.local_attn_frames=-1): 'local_attn_frames' (-1) must be >= sink_frames + "
     "chunk_frames (0 + 3)"),
    (("streamvid-train", "r1", "--config", "configs/train/shapes_r1.yaml"), "trainer.max_steps=-5",
     "(--set trainer.max_steps=-5): trainer.max_steps must be >= 1, got -5"),
    (("streamvid-eval", "--config", "configs/eval/tiny_random_smoke.yaml"), "metrics=[sharpnes]",
     "(--set metrics=[sharpnes]): unknown metric 'sharpnes' in 'metrics' (did you mean 'sharpness'?)"),
], ids=["n", "strategy", "local_attn_frames", "max_steps", "metric_name"])
def test_errors_name_the_override_and_the_field(cmd, override, expected, tmp_path):
    out = ("--out", tmp_path / "a.mp4") if cmd[0] in ("streamvid-generate", "streamvid-infer-t1") else ()
    line = _error(cmd, *out, "--set", override)
    assert f"error: invalid value from the command line {expected}" in line
    assert "invalid config configs/" not in line  # the file is not blamed for the command line's value


def test_a_bad_value_in_the_file_still_names_the_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("base: " + str(REPO / "configs/infer/shapes_t1.yaml") + "\nn: 0\n")
    line = _error(("streamvid-infer-t1", "--prompt", "a red circle moving left"), "--config", cfg,
                  "--out", tmp_path / "a.mp4", "--set", "fps=4")
    assert line.endswith(f"invalid config {cfg}: n must be >= 1, got 0")


@pytest.mark.slow
def test_make_eval_scores_flicker_exports_the_same_frames_and_adds_no_unrequested_column(tmp_path):
    """`make eval`'s config with export on: temporal_flickering is a number for every (moving) shapes video, no
    clip_consistency column unless asked for, and the 16 fps VBench export decodes to the run's exact frames."""
    import pandas as pd

    out = tmp_path / "run"
    proc = run_script("streamvid-eval", "--config", "configs/eval/tiny_random_smoke.yaml", "--set", f"output_dir={out}",
                      "--set", "export.enabled=true", "--set", "seeds=[0]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 4 and scores["temporal_flickering"].notna().all()
    assert "clip_consistency" not in scores.columns and "sharpness.drift" in scores.columns
    manifest = pd.read_csv(out / "vbench" / "manifest.csv")
    for row in manifest.itertuples():
        source = scores[(scores["prompt"] == row.prompt) & (scores["seed"] == row.seed)]["file"].item()
        run_frames, run_fps = read_video(out / source)
        exported, fps = read_video(out / "vbench" / row.file)
        assert run_fps == 8 and fps == 16
        assert torch.equal(exported, run_frames)


def _run_with_umask(umask: int, *cmd) -> subprocess.CompletedProcess:
    return subprocess.run([str(script(cmd[0])), *map(str, cmd[1:])], capture_output=True, text=True, timeout=300,
                          env=ENV, preexec_fn=lambda: os.umask(umask))


@pytest.mark.slow
def test_infer_t1_takes_a_gif_and_frames_says_it_replaces_and_keeps_the_umask(tmp_path):
    """`--out x.gif` as streamvid-generate takes it, `--frames` as generate has it; a rerun says in one line that it
    replaces the files; every file gets the umask's mode (0664 under umask 002), none 0600."""
    out = tmp_path / "blue.gif"
    cmd = ("streamvid-infer-t1", "--config", "configs/infer/shapes_t1.yaml", "--prompt", "a blue square moving down",
           "--out", out, "--frames", "6", "--set", "strategy=best_of_n", "--set", "n=2")
    first = _run_with_umask(0o002, *cmd)
    assert first.returncode == 0, first.stderr[-2000:]
    names = ["blue.gif", "blue.mp4", "blue.scores.json", "blue.tree.json", "blue.tree.png", "blue.ledger.json",
             "blue.config.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert {oct(stat.S_IMODE((tmp_path / n).stat().st_mode)) for n in names} == {oct(0o664)}
    gif, _ = read_video(out)
    mp4, _ = read_video(tmp_path / "blue.mp4")
    assert gif.shape == mp4.shape == (6, 3, 32, 32)
    assert json.loads((tmp_path / "blue.scores.json").read_text())["strategy"] == "best_of_n"
    assert "num_frames: 6" in (tmp_path / "blue.config.yaml").read_text().splitlines()
    assert "note: replacing" not in first.stderr

    again = run_script(*cmd)
    assert again.returncode == 0, again.stderr[-2000:]
    notes = [line for line in again.stderr.splitlines() if line.startswith("note: replacing")]
    assert notes == [f"note: replacing {out}, {tmp_path / 'blue.mp4'}, {tmp_path / 'blue.scores.json'} and 4 more"]


def test_generate_says_it_replaces_an_existing_video(tmp_path):
    out = tmp_path / "red.mp4"
    cmd = (*GENERATE, "--config", "configs/generate/tiny_random.yaml", "--out", out, "--frames", "3")
    first = _run_with_umask(0o002, *cmd)
    assert first.returncode == 0 and "note: replacing" not in first.stderr, first.stderr[-2000:]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in tmp_path.iterdir()} == {oct(0o664)}
    again = run_script(*cmd)
    assert again.returncode == 0
    assert f"note: replacing {out}, {tmp_path / 'red.config.yaml'}" in again.stderr.splitlines()
