"""Shapes world: renderer geometry and anti-aliasing, and the deterministic dataset and its splits."""

from __future__ import annotations

import math

import pytest
import torch

from streamvid.core.config import ConfigError
from streamvid.core.world import (
    PALETTE,
    SHAPES,
    ShapeAttributes,
    ShapesDataset,
    WorldConfig,
    collate_items,
    coverage,
    render,
    render_batch,
    segment_frame_ranges,
    trajectory,
)
from streamvid.core.world.dataset import colour_shape_pairs
from streamvid.core.world.render import shape_extent

AREA = {"square": 1.0, "circle": math.pi / 4, "triangle": 0.5}


def _centroids(cov: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centroids ``[N, 2]`` (x, y) of coverage maps ``[N, H, W]``."""
    h, w = cov.shape[-2:]
    xs, ys = torch.arange(w) + 0.5, torch.arange(h) + 0.5
    area = cov.sum((1, 2))
    return torch.stack([(cov * xs).sum((1, 2)) / area, (cov * ys[:, None]).sum((1, 2)) / area], 1)


def test_render_shape_range_dtype_and_determinism():
    cfg = WorldConfig()
    attrs = ShapeAttributes("red", "circle", 8.0, (6.3, 15.7), 2.0, (("right", 12),))
    video = render(attrs, cfg)
    assert video.shape == (12, 3, 32, 32) and video.dtype == torch.float32
    assert video.min() >= 0 and video.max() <= 1
    assert torch.equal(video, render(attrs, cfg))
    # background is the configured plain colour far from the object
    assert torch.allclose(video[:, :, 0, 0], torch.tensor(cfg.background).expand(12, 3))


@pytest.mark.parametrize("shape", SHAPES)
def test_coverage_area_centroid_and_antialiasing(shape):
    size = 8.0
    centres = torch.tensor([[16.0, 16.0], [16.3, 15.55], [10.71, 20.2]])
    n = len(centres)
    cov = coverage(centres, torch.full((n,), size), torch.full((n,), SHAPES.index(shape)), 32, 32)
    assert cov.shape == (n, 32, 32)
    # analytic area coverage: the right area and the centroid at the given position, sub-pixel
    torch.testing.assert_close(cov.sum((1, 2)), torch.full((n,), AREA[shape] * size**2), rtol=5e-3, atol=0)
    torch.testing.assert_close(_centroids(cov), centres, rtol=0, atol=0.02)
    # anti-aliased edges: partially covered pixels exist
    partial = ((cov > 0.05) & (cov < 0.95)).sum((1, 2))
    assert (partial[1:] >= 8).all()  # off-grid positions (a square at 16, 16 has pixel-aligned edges)
    # a sub-pixel shift changes the image
    assert not torch.equal(cov[0], cov[1])


def test_triangle_is_upward_with_centroid_at_a_third():
    cov = coverage(torch.tensor([[16.0, 16.0]]), torch.tensor([12.0]), torch.tensor([2]), 32, 32)[0]
    rows = cov.sum(1)  # width per row grows downwards: apex up
    filled = rows.nonzero()[:, 0]
    assert rows[filled[0]] < rows[filled[-1]]
    left, top, right, bottom = shape_extent("triangle", 12.0)
    assert (filled[0], filled[-1] + 1) == (int(16 + top), int(16 + bottom))


def test_trajectory_segments_and_render_batch():
    segs = (("left", 4), ("up", 4), ("right", 4))
    pos = trajectory((20.0, 20.0), 2.0, segs)
    steps = pos[1:] - pos[:-1]
    expected = torch.tensor([[-2.0, 0]] * 3 + [[0, -2.0]] * 4 + [[2.0, 0]] * 4)
    torch.testing.assert_close(steps, expected)
    assert segment_frame_ranges(12, 3) == [(0, 4), (4, 8), (8, 12)]
    cfg = WorldConfig()
    a = ShapeAttributes("blue", "triangle", 7.5, (20.0, 20.0), 2.0, segs)
    b = ShapeAttributes("white", "square", 7.0, (5.0, 9.5), 1.5, (("down", 12),), texture_seed=3)
    batch = render_batch([a, b], cfg)
    assert batch.shape == (2, 12, 3, 32, 32)
    torch.testing.assert_close(batch, torch.stack([render(a, cfg), render(b, cfg)]))


def test_textured_background_is_static_and_faint():
    cfg = WorldConfig(texture=0.03)
    attrs = ShapeAttributes("green", "square", 8.0, (6.0, 6.0), 2.0, (("right", 12),), texture_seed=5)
    video = render(attrs, cfg)
    corner = video[:, :, 28:, 28:]  # never covered
    assert torch.equal(corner, corner[:1].expand_as(corner))
    assert 0 < (corner - 0.1).abs().max() <= 0.03 + 1e-6


def test_config_rejects_paths_that_cannot_fit():
    with pytest.raises(ConfigError, match="leave the frame"):
        WorldConfig(speed_max=3.0)
    with pytest.raises(ConfigError, match="colours"):
        WorldConfig(colours=("pink",))


def _bbox_inside(item: dict, cfg: WorldConfig) -> bool:
    left, top, right, bottom = shape_extent(item["shape"], item["size"])
    p = item["positions"]
    eps = 1e-4
    return bool(
        (p[:, 0] + left >= cfg.margin - eps).all()
        and (p[:, 0] + right <= cfg.width - cfg.margin + eps).all()
        and (p[:, 1] + top >= cfg.margin - eps).all()
        and (p[:, 1] + bottom <= cfg.height - cfg.margin + eps).all()
    )


def test_dataset_objects_stay_in_frame():
    cfg = WorldConfig()
    ds = ShapesDataset(cfg, "train", 300)
    bg = torch.tensor(cfg.background).view(1, 3, 1, 1)
    for i in range(len(ds)):
        item = ds[i]
        assert _bbox_inside(item, cfg), (i, item["prompt"])
        # nothing clipped: every frame shows the shape's full analytic area (alpha recovered from pixels)
        fg = torch.tensor(PALETTE[item["colour"]]).view(1, 3, 1, 1)
        alpha = ((item["video"] - bg) * (fg - bg)).sum(1) / ((fg - bg) ** 2).sum()
        area = AREA[item["shape"]] * item["size"] ** 2
        assert (alpha.sum((1, 2)) - area).abs().max() < 5e-3 * area, (i, item["prompt"])


def test_long_multi_segment_paths_stay_in_frame_and_turn():
    cfg = WorldConfig(num_frames=48, num_segments=4, texture=0.02)
    ranges = segment_frame_ranges(cfg.num_frames, cfg.num_segments)
    ds = ShapesDataset(cfg, "train", 100)
    for i in range(len(ds)):
        attrs = ds.attributes(i)
        item = {"shape": attrs.shape, "size": attrs.size}
        item["positions"] = trajectory(attrs.start, attrs.speed, attrs.segments)
        assert _bbox_inside(item, cfg), (i, attrs)
        assert all(a != b for a, b in zip(attrs.directions, attrs.directions[1:]))
        assert [n for _, n in attrs.segments] == [b - a for a, b in ranges]
    item = ds[0]
    assert item["segment_ids"].tolist() == [k for k, (a, b) in enumerate(ranges) for _ in range(b - a)]
    assert item["video"].shape == (48, 3, 32, 32)


def test_dataset_is_deterministic_per_item_and_split():
    cfg = WorldConfig()
    a, b = ShapesDataset(cfg, "train", 20), ShapesDataset(cfg, "train", 20)
    for i in (0, 7, 19):
        x, y = a[i], b[i]
        assert torch.equal(x["video"], y["video"]) and x["prompt"] == y["prompt"]
    assert a[-1]["prompt"] == a[19]["prompt"]
    assert not torch.equal(a[0]["video"], a[1]["video"])
    val = ShapesDataset(cfg, "val", 20)
    assert [val[i]["prompt"] for i in range(20)] != [a[i]["prompt"] for i in range(20)]
    other_seed = ShapesDataset(WorldConfig(seed=1), "train", 20)
    assert [other_seed[i]["prompt"] for i in range(20)] != [a[i]["prompt"] for i in range(20)]
    with pytest.raises(IndexError):
        a[20]


def test_heldout_split_has_no_train_pair():
    cfg = WorldConfig()
    train_pairs = set(colour_shape_pairs(cfg, "train"))
    held_pairs = set(colour_shape_pairs(cfg, "heldout"))
    assert held_pairs and not (train_pairs & held_pairs)
    assert {c for c, _ in train_pairs} == set(cfg.colours) and {s for _, s in train_pairs} == set(SHAPES)
    seen = {(a.colour, a.shape) for a in map(ShapesDataset(cfg, "train", 300).attributes, range(300))}
    held = {(a.colour, a.shape) for a in map(ShapesDataset(cfg, "heldout", 50).attributes, range(50))}
    assert seen == train_pairs  # 300 draws cover all 18 training pairs
    assert held <= held_pairs and not (seen & held)
    with pytest.raises(ValueError, match="split"):
        ShapesDataset(cfg, "test", 5)


def test_collate_items():
    ds = ShapesDataset(WorldConfig(), "val", 4)
    batch = collate_items([ds[i] for i in range(4)])
    assert batch["video"].shape == (4, 12, 3, 32, 32)
    assert batch["positions"].shape == (4, 12, 2) and batch["direction_ids"].shape == (4, 12)
    assert batch["speed"].shape == (4,) and isinstance(batch["prompt"], list) and len(batch["prompt"]) == 4
