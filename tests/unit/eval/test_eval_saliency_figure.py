"""The saliency picture: one row of frames plus one saliency row per reward axis; bad input exits 2."""

from __future__ import annotations

from PIL import Image

from streamvid.eval import saliency_figure as sf
from streamvid.eval.saliency_figure import main


def test_writes_png_with_a_row_per_axis(tmp_path, monkeypatch):
    real, figures = sf.saliency_figure, []
    monkeypatch.setattr(sf, "saliency_figure", lambda *a, **k: figures.append(real(*a, **k)) or figures[-1])
    out = tmp_path / "fig.png"
    assert main(["--out", str(out), "--index", "1", "--frames", "4", "--corruption", "noise"]) == 0
    (fig,) = figures
    cells = {(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start): ax for ax in fig.axes}
    assert sorted(cells) == [(r, c) for r in range(4) for c in range(4)]  # frames + visual/motion/text, 4 frames
    assert [cells[0, c].get_title() for c in range(4)] == ["t=0", "t=4", "t=7", "t=11"]
    axes_rows = [cells[r, 0].get_ylabel().split("\n")[0] for r in range(1, 4)]
    assert sorted(axes_rows) == ["motion", "text", "visual"]
    assert all(cells[r, 0].get_images() for r in range(4))
    assert Image.open(out).size == (round(1.6 * 4 * 110), round(1.7 * 4 * 110))  # the PNG is that 4 x 4 figure


def test_unknown_corruption_and_non_differentiable_reward(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x.png"), "--corruption", "smudge"]) == 2
    assert "--corruption 'smudge'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
