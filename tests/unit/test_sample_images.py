"""Training sample images (issue 21 §4): the grid shows each prompt whole (wrapped, never cut), and the intra
weight map PNG labels its two rows (frames, W with its range) and the rollout's prompt."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from streamvid.core.world import score_details
from streamvid.distill.dmd_callbacks import write_weight_map
from streamvid.distill.shapes_eval import LABEL_WIDTH, wrap_label, write_grid

LONG = ("a small bright red circle moving left, then up, then right, then down, then left again across the whole "
        "frame while a supercalifragilisticexpialidociousandthensomemorelettersinonewordthatisverylong word waits")


def _ink(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """Dark (text) pixels in ``box``."""
    return int((np.asarray(image.convert("L").crop(box)) < 128).sum())


def test_wrap_label_keeps_every_character_and_fits_the_width():
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = wrap_label(draw, LONG, LABEL_WIDTH - 8)
    assert len(lines) > 3 and all(draw.textlength(line) <= LABEL_WIDTH - 8 for line in lines)
    assert "".join(lines).replace(" ", "") == LONG.replace(" ", "")
    assert wrap_label(draw, "a red circle", 300) == ["a red circle"]


def test_the_grid_row_grows_to_hold_a_long_prompt(tmp_path):
    videos = torch.rand(2, 8, 3, 16, 16)
    prompts = ["a red circle moving left", LONG]
    rows = [score_details(v, p) for v, p in zip(videos, prompts)]
    write_grid(videos[:1], prompts[:1], rows[:1], tmp_path / "short.png")
    write_grid(videos, prompts, rows, tmp_path / "long.png")
    short, long = Image.open(tmp_path / "short.png"), Image.open(tmp_path / "long.png")
    assert short.size == (LABEL_WIDTH + 8 * 16 * 3, 16 * 3)
    row_h = long.height // 2
    assert row_h > 16 * 3  # taller than the frames: the wrapped prompt needs the room
    assert _ink(long, (0, row_h + 16 * 3, LABEL_WIDTH, 2 * row_h)) > 0  # text below where a frame-high row ends


def test_the_weight_map_labels_both_rows(tmp_path):
    last = {"pixels": torch.rand(1, 3, 3, 16, 16), "weights": torch.rand(1, 3, 8, 8) + 0.5, "prompt": LONG}
    write_weight_map(last, tmp_path / "w.png", step=7)
    image = Image.open(tmp_path / "w.png")
    assert image.width == LABEL_WIDTH + 3 * 16 * 4
    half = image.height // 2
    assert _ink(image, (0, 0, LABEL_WIDTH, half)) > 0 and _ink(image, (0, half, LABEL_WIDTH, image.height)) > 0
