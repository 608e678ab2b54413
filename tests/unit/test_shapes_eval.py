"""`streamvid.distill.shapes_eval`: oracle-read samples of a shapes-world teacher (Euler + CFG) and student
(the streaming chunk loop), seams, and the picture grid."""

from __future__ import annotations

import json

import pytest
import torch

from streamvid.core.causal_wan import CausalWanModel
from streamvid.core.conv_flow import ConvFlowNet
from streamvid.core.world import WorldConfig, render, sample_attributes
from streamvid.distill.shapes_eval import evaluate_videos, main, seam_ratio

PROBE = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=12, out_channels=12,
             text_dim=64, freq_dim=32, ffn_dim=64, num_layers=1)  # fmt: skip


def test_seam_ratio_sees_jumps_at_chunk_boundaries():
    smooth = torch.linspace(0, 1, 12)[None, :, None].expand(2, 12, 5).clone()
    assert seam_ratio(smooth, 3) == pytest.approx(1.0)
    seamy = smooth.clone()
    seamy[:, 3:] += 0.5  # a jump between frames 2 and 3, the first chunk boundary
    seamy[:, 6:] += 0.5
    seamy[:, 9:] += 0.5
    assert seam_ratio(seamy, 3) > 5


def test_oracle_metrics_of_rendered_videos():
    world = WorldConfig()
    items = [sample_attributes(world, "val", i) for i in range(4)]
    videos = torch.stack([render(a, world) for a, _ in items])
    metrics, rows = evaluate_videos(videos, [p for _, p in items])
    assert metrics["colour_accuracy"] == metrics["shape_accuracy"] == metrics["direction_accuracy"] == 1.0
    assert metrics["no_object"] == 0 and len(rows) == 4


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_cli_writes_metrics_and_grids(tmp_path, kind, capsys):
    torch.manual_seed(0)
    model = ConvFlowNet(in_channels=12, text_dim=64, width=8, cond_dim=16) if kind == "teacher" else CausalWanModel(**PROBE)
    model.save_pretrained(tmp_path / "model")
    report = main([f"--{kind}", str(tmp_path / "model"), "--prompts", "2", "--teacher-steps", "2",
                   "--out", str(tmp_path / "eval")])  # fmt: skip
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["val"] == report["val"] and set(report) >= {"val", "heldout"}
    assert ("seam_ratio" in report["val"]) == (kind == "student")
    assert (tmp_path / "eval" / "samples_heldout.png").stat().st_size > 0
    err = capsys.readouterr().err  # a progress bar per split, moving per batch of videos
    assert "val videos: 100%" in err and "heldout videos: 100%" in err and "2/2" in err


def test_cli_missing_model_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--student", str(tmp_path / "nope"), "--out", str(tmp_path / "eval")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model directory not found" in err[0]


def test_a_student_directory_streams_through_streamvid_generate(tmp_path):
    """configs/generate/shapes_student.yaml runs a student saved by `streamvid-train student` (here random)."""
    from console_scripts import run_script

    torch.manual_seed(0)
    model = CausalWanModel(**{**PROBE, "num_attention_heads": 4, "attention_head_dim": 32, "ffn_dim": 512,
                              "num_layers": 3, "freq_dim": 64, "text_adaln": True, "learned_positions": (12, 8, 8)})  # fmt: skip
    model.save_pretrained(tmp_path / "student")
    proc = run_script("streamvid-generate", "--config", "configs/generate/shapes_student.yaml", "--prompt",
                      "a red circle moving left", "--out", tmp_path / "red.mp4",
                      "--set", f"generator.checkpoint={tmp_path / 'student'}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "red.mp4").stat().st_size > 0 and (tmp_path / "red.config.yaml").exists()
    assert "random" not in proc.stderr.lower()  # a trained checkpoint and a weight-free text encoder
