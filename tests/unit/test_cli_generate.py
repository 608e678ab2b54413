"""`streamvid-generate`: writes a video and its resolved config (and nothing else); bad input -> one line, exit code 2,
before any work. The `*_script_*` tests run the real console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import console_scripts
import pytest
import torch
from console_scripts import read_only, snapshot

from streamvid.core.causal_wan import CausalWanModel
from streamvid.core.checkpoints import save_model
from streamvid.core.cli.generate import GenerateConfig, main
from streamvid.core.config import load_config
from streamvid.core.generator import build_generator
from streamvid.core.video_io import read_video

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "generate" / "tiny_random.yaml"


def test_writes_video_and_resolved_config(tmp_path):
    out = tmp_path / "clip.mp4"
    assert main(["--config", str(CONFIG), "--prompt", "a red circle moving left", "--out", str(out), "--frames", "6"]) == 0
    video, fps = read_video(out)
    assert video.shape == (6, 3, 32, 32) and fps == pytest.approx(8)
    resolved = load_config(tmp_path / "clip.config.yaml", schema=GenerateConfig)
    assert resolved.num_frames == 6 and resolved.generator.model.num_layers == 2


def test_same_seed_same_video_and_checkpoint_round_trip(tmp_path):
    """A saved checkpoint reproduces the generator that wrote it, frame for frame."""
    cfg = load_config(CONFIG, schema=GenerateConfig)
    gen = build_generator(cfg.generator, vocabulary=["red", "circle"])
    first = next(gen.stream_video(["red circle"], 3, seed=5))
    again = next(gen.stream_video(["red circle"], 3, seed=5))
    assert (first - again).abs().max() == 0
    assert (first - next(gen.stream_video(["red circle"], 3, seed=6))).abs().max() > 0
    save_model(gen.model, tmp_path / "ckpt")
    gen.text_encoder.save(tmp_path / "text")
    cfg2 = load_config(
        CONFIG, [f"generator.checkpoint={tmp_path / 'ckpt'}", f"generator.text_encoder.path={tmp_path / 'text'}"],
        schema=GenerateConfig,
    )
    gen2 = build_generator(cfg2.generator)
    assert (next(gen2.stream_video(["red circle"], 3, seed=5)) - first).abs().max() <= 1e-6


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "missing.yaml"], "config file not found: missing.yaml"),
        (["--frames", "7"], "--frames 7 must be a positive multiple of the chunk size 3"),
        (["--set", "generator.sampler.cache.windw=3"], "unknown key 'generator.sampler.cache.windw'"),
        (["--set", "generator.codec.kind=jpeg"], "codec.kind"),
        (["--set", "generator.checkpoint=/nonexistent/model.safetensors"], "not found"),
    ],
)
def test_user_errors_exit_2_with_one_message(tmp_path, capsys, args, message):
    base = {"--config": str(CONFIG), "--prompt": "a red circle", "--out": str(tmp_path / "x.mp4")}
    argv = [a for k, v in base.items() if k not in args for a in (k, v)] + args
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_checkpoint_mismatch_names_keys(tmp_path, capsys):
    other = CausalWanModel(num_attention_heads=2, attention_head_dim=24, in_channels=12, out_channels=12,
                           text_dim=32, freq_dim=64, ffn_dim=64, num_layers=3)
    save_model(other, tmp_path / "ckpt")
    argv = ["--config", str(CONFIG), "--prompt", "x", "--out", str(tmp_path / "x.mp4"),
            "--set", f"generator.checkpoint={tmp_path / 'ckpt'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unexpected keys: blocks.2." in err and "shape mismatches" in err and "Traceback" not in err


def test_console_script_reports_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "streamvid.core.cli.generate", "--config", str(CONFIG), "--prompt", "x",
         "--out", str(tmp_path / "x.webm")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("streamvid-generate: error: --out")
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------------------
# The real console script (.venv/bin/streamvid-generate): exit code, one line on stderr, nothing lost.



def run_script(*args) -> subprocess.CompletedProcess:
    return console_scripts.run_script("streamvid-generate", *args)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a user error (exit code 2)."""
    return console_scripts.error_line(proc, "streamvid-generate")


def test_script_writes_video_and_config_and_touches_nothing_else(tmp_path):
    """A `config.yaml` (and anything else) already in the folder survives; the resolved config holds the prompt and
    reproduces the video; the untrained model is announced in one line."""
    (tmp_path / "config.yaml").write_text("keep: me\n")
    (tmp_path / "notes.config.yaml").write_text("mine\n")
    (tmp_path / "old.mp4").write_bytes(b"not touched")
    before = snapshot(tmp_path)
    proc = run_script("--config", CONFIG, "--prompt", "a red circle moving left", "--out", tmp_path / "red.mp4",
                      "--frames", "6")
    assert proc.returncode == 0, proc.stderr
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"red.mp4", "red.config.yaml"}  # no temporary file left behind
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "random (untrained) weights" in notes[0]
    assert "Traceback" not in proc.stderr and "on 1 thread" in proc.stderr
    resolved = load_config(tmp_path / "red.config.yaml", schema=GenerateConfig)
    assert resolved.prompt == "a red circle moving left" and resolved.num_frames == 6

    # The resolved config alone makes the same video (seeded random initialisation, prompt recorded).
    assert main(["--config", str(tmp_path / "red.config.yaml"), "--out", str(tmp_path / "again.mp4")]) == 0
    first, _ = read_video(tmp_path / "red.mp4")
    again, _ = read_video(tmp_path / "again.mp4")
    assert first.shape == (6, 3, 32, 32) and torch.equal(first, again)


@pytest.mark.parametrize("case", ["empty prompt", "blank prompt", "no prompt", "parent is a file", "out is a directory",
                                  "unknown extension", "config target is a directory", "bad threads"])
def test_script_user_errors_are_one_line_before_any_work(tmp_path, case):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "config.yaml").write_text("keep: me\n")
    (folder / "afile").write_text("a file\n")
    (folder / "dir.mp4").mkdir()
    (folder / "clip.config.yaml").mkdir()
    args = {"--config": CONFIG, "--prompt": "a red circle", "--out": folder / "clip.mp4"}
    extra, expected = {
        "empty prompt": ({"--prompt": ""}, "the prompt is blank"),
        "blank prompt": ({"--prompt": " \t "}, "the prompt is blank"),
        "no prompt": ({"--prompt": None}, "no prompt: give --prompt"),
        "parent is a file": ({"--out": folder / "afile" / "x.mp4"}, "afile is a file, not a directory"),
        "out is a directory": ({"--out": folder / "dir.mp4"}, "dir.mp4 is a directory"),
        "unknown extension": ({"--out": folder / "x.webm"}, "the extension must be .mp4 or .gif"),
        "config target is a directory": ({}, "clip.config.yaml, which is a directory"),
        "bad threads": ({"--threads": "0"}, "--threads must be a positive integer or 'auto'"),
    }[case]
    args.update(extra)
    before = snapshot(folder)
    line = error_line(run_script(*[a for k, v in args.items() if v is not None for a in (k, v)]))
    assert expected in line
    assert snapshot(folder) == before and sorted(p.name for p in folder.iterdir()) == [
        "afile", "clip.config.yaml", "config.yaml", "dir.mp4"]


def test_script_refuses_a_read_only_folder_before_generating(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "config.yaml").write_text("keep: me\n")
    with read_only(folder):
        line = error_line(run_script("--config", CONFIG, "--prompt", "a red circle", "--out", folder / "clip.mp4"))
        assert f"directory {folder} is not writable" in line
        assert sorted(p.name for p in folder.iterdir()) == ["config.yaml"]
    # A missing folder under a read-only one is refused too (under a writable one it is created).
    with read_only(folder):
        line = error_line(run_script("--config", CONFIG, "--prompt", "x", "--out", folder / "new" / "clip.mp4"))
        assert "is not writable" in line


def test_threads_option(tmp_path, capsys):
    """`--threads N` is used as given; `auto` takes 1 thread for small models, torch's default for large ones."""
    from torch import nn

    from streamvid.core.cli.generate import AUTO_THREADS_MAX_PARAMS, auto_threads

    default = torch.get_num_threads()
    try:
        argv = ["--config", str(CONFIG), "--prompt", "a red circle", "--out", str(tmp_path / "x.mp4"), "--frames", "3"]
        assert main([*argv, "--threads", "2"]) == 0
        assert "on 2 threads" in capsys.readouterr().err
        assert main(argv) == 0
        assert "on 1 thread)" in capsys.readouterr().err
        torch.set_num_threads(3)
        big = nn.Linear(AUTO_THREADS_MAX_PARAMS // 1000, 1000, bias=False, device="meta")  # 1e8 params, no memory
        assert auto_threads(big) == 3 and auto_threads(nn.Linear(10, 10)) == 1
    finally:
        torch.set_num_threads(default)


def test_trained_checkpoint_with_random_text_encoder_warns_in_one_line(tmp_path, capsys):
    cfg = load_config(CONFIG, schema=GenerateConfig)
    save_model(build_generator(cfg.generator, vocabulary=["red"]).model, tmp_path / "ckpt")
    argv = ["--config", str(CONFIG), "--prompt", "a red circle", "--out", str(tmp_path / "x.mp4"), "--frames", "3",
            "--set", f"generator.checkpoint={tmp_path / 'ckpt'}"]
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if line.startswith(("warning:", "note:"))]
    assert len(warnings) == 1 and warnings[0].startswith("warning: generator.text_encoder.path is null")


def test_prompt_switches_outside_the_stream_are_refused_before_building(capsys):
    code = main(["--config", str(CONFIG), "--prompt", "a red circle", "--out", "unused.mp4", "--frames", "6",
                 "--set", "prompt_switches={2: a blue square}"])
    assert code == 2
    assert "prompt_switches.2: a switch must name a chunk in 1..1" in capsys.readouterr().err
