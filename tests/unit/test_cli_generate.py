"""`streamvid-generate`: writes a video and its resolved config; bad input -> one line, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamvid.core.causal_wan import CausalWanModel
from streamvid.core.checkpoints import save_model
from streamvid.core.cli.generate import GenerateConfig, main
from streamvid.core.config import load_config
from streamvid.core.generator import build_generator
from streamvid.core.video_io import read_video

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "generate" / "tiny.yaml"


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
