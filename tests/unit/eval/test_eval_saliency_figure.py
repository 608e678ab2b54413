"""The saliency picture: one row of frames plus one saliency row per reward axis; bad input exits 2."""

from __future__ import annotations

from PIL import Image

from streamvid.eval.saliency_figure import main


def test_writes_png_with_a_row_per_axis(tmp_path):
    out = tmp_path / "fig.png"
    assert main(["--out", str(out), "--index", "1", "--frames", "4", "--corruption", "noise"]) == 0
    width, height = Image.open(out).size
    assert width > 0 and height > width * 0.5  # 4 rows (frames + visual/motion/text) of 4 columns


def test_unknown_corruption_and_non_differentiable_reward(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x.png"), "--corruption", "smudge"]) == 2
    assert "--corruption 'smudge'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
