"""Shapes world oracle: pixel measurements recover the attributes; scores rank truth above corruptions."""

from __future__ import annotations

import pytest
import torch

from streamvid.core.world import (
    CORRUPTION_AXES,
    ShapeAttributes,
    ShapesDataset,
    WorldConfig,
    measure,
    measure_batch,
    render,
    render_corrupted,
    score,
    score_batch,
    score_details,
)
from streamvid.core.world.corrupt import add_noise, freeze_frames, gaussian_blur
from streamvid.core.world.render import make_background


def _accuracy(cfg: WorldConfig, split: str, n: int) -> tuple[dict[str, float], float]:
    ds = ShapesDataset(cfg, split, n)
    hits = {"colour": 0, "shape": 0, "direction": 0}
    worst = 0.0
    for i in range(n):
        item = ds[i]
        reading = measure(item["video"])
        hits["colour"] += reading.colour == item["colour"]
        hits["shape"] += reading.shape == item["shape"]
        hits["direction"] += reading.segment_directions(cfg.num_segments) == item["directions"]
        worst = max(worst, float((reading.positions - item["positions"]).abs().max()))
    return {k: v / n for k, v in hits.items()}, worst


def test_oracle_recovers_attributes_on_200_videos():
    acc, worst = _accuracy(WorldConfig(), "val", 200)
    assert min(acc.values()) >= 0.95, acc
    assert worst < 0.5


@pytest.mark.parametrize(
    "cfg",
    [WorldConfig(num_frames=48, num_segments=4, texture=0.03), WorldConfig(size_min=6.0, speed_min=1.0)],
)
def test_oracle_recovers_attributes_on_long_textured_and_varied_videos(cfg):
    acc, worst = _accuracy(cfg, "heldout", 20)
    assert min(acc.values()) >= 0.95, acc
    assert worst < 0.5


def test_truth_scores_high_and_speed_measured():
    ds = ShapesDataset(WorldConfig(), "train", 10)
    for i in range(10):
        item = ds[i]
        details = score_details(item["video"], item["prompt"])
        assert min(details.as_dict().values()) > 0.95, (item["prompt"], details.parts)
        assert abs(details.reading.speed - item["speed"]) < 0.05
        assert details.reasons == []


@pytest.fixture(scope="module")
def truth_and_corruptions():
    cfg = WorldConfig()
    ds = ShapesDataset(cfg, "val", 50)
    rows = []
    for i in range(50):
        item, attrs = ds[i], ds.attributes(i)
        truth = score(item["video"], item["prompt"])
        corrupted = {
            k: score(render_corrupted(attrs, k, cfg, seed=i), item["prompt"]) for k in CORRUPTION_AXES
        }
        rows.append((truth, corrupted))
    return rows


@pytest.mark.parametrize("kind", list(CORRUPTION_AXES))
def test_truth_beats_each_corruption_on_its_axis(truth_and_corruptions, kind):
    axis = CORRUPTION_AXES[kind]
    wins = sum(truth[axis] > corrupted[kind][axis] for truth, corrupted in truth_and_corruptions)
    assert wins >= 0.95 * len(truth_and_corruptions), (kind, wins)


def test_corruptions_leave_the_other_axes_mostly_alone(truth_and_corruptions):
    # blur and noise keep the text right; a wrong colour keeps motion and visual quality
    for truth, corrupted in truth_and_corruptions:
        assert corrupted["blur"]["text"] == truth["text"] == 1.0
        assert corrupted["wrong_colour"]["motion"] > 0.95 and corrupted["wrong_colour"]["visual"] > 0.95


def test_corruption_helpers_are_deterministic_and_shape_preserving():
    cfg = WorldConfig()
    attrs = ShapeAttributes("cyan", "square", 8.0, (6.0, 16.0), 2.0, (("right", 12),))
    video = render(attrs, cfg)
    for kind in CORRUPTION_AXES:
        a, b = render_corrupted(attrs, kind, cfg, seed=1), render_corrupted(attrs, kind, cfg, seed=1)
        assert a.shape == video.shape and torch.equal(a, b) and not torch.equal(a, video), kind
    assert torch.allclose(gaussian_blur(video, 1.0).sum((-2, -1)), video.sum((-2, -1)), rtol=1e-3)
    assert add_noise(video, 0.1).min() >= 0 and add_noise(video, 0.1).max() <= 1
    frozen = freeze_frames(video, 2, 3)
    assert torch.equal(frozen[3:6], video[2].expand(3, -1, -1, -1)) and torch.equal(frozen[6:], video[6:])
    with pytest.raises(ValueError, match="freeze"):
        freeze_frames(video, 10, 3)
    # reversing the direction of a single segment is the time-reversed clip
    reversed_video = render_corrupted(attrs, "wrong_direction", cfg)
    torch.testing.assert_close(reversed_video, video.flip(0), atol=1e-5, rtol=0)


def test_empty_and_partly_empty_videos_score_without_errors():
    cfg = WorldConfig()
    blank = make_background(cfg)[None].repeat(12, 1, 1, 1)
    details = score_details(blank, "a red circle moving left")
    assert details.as_dict() == {"text": 0.0, "motion": 0.0, "visual": 0.0}
    assert "no object in any frame" in details.reasons
    reading = measure(blank)
    assert reading.colour is None and reading.positions.isnan().all() and not reading.present.any()
    assert len(reading.reasons) == 13  # one per frame, then the summary
    ds = ShapesDataset(cfg, "val", 1)
    video = ds[0]["video"].clone()
    video[3:6] = blank[:3]
    details = score_details(video, ds[0]["prompt"])
    assert details.text == 1.0 and 0 < details.motion < 1 and 0 < details.visual < 1
    assert sum("no object" in r for r in details.reasons) == 3


def test_text_score_counts_each_mismatch():
    cfg = WorldConfig()
    attrs = ShapeAttributes("red", "circle", 8.0, (6.0, 6.0), 2.0, (("right", 6), ("down", 6)))
    video = render(attrs, cfg)
    assert score(video, "a red circle moving right, then down")["text"] == 1.0
    assert score(video, "a red square moving right, then down")["text"] == pytest.approx(2 / 3)
    assert score(video, "a blue circle moving right, then up")["text"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="cannot parse"):
        score(video, "something else")


def test_batched_variants_match_single():
    ds = ShapesDataset(WorldConfig(), "val", 3)
    videos = torch.stack([ds[i]["video"] for i in range(3)])
    prompts = [ds[i]["prompt"] for i in range(3)]
    videos[1] = gaussian_blur(videos[1], 1.5)
    batch = score_batch(videos, prompts)
    assert set(batch) == {"text", "motion", "visual"} and batch["text"].shape == (3,)
    for i in range(3):
        single = score(videos[i], prompts[i])
        assert all(batch[k][i].item() == pytest.approx(single[k]) for k in single)
    readings = measure_batch(videos)
    assert [r.colour for r in readings] == [ds[i]["colour"] for i in range(3)]
    with pytest.raises(ValueError, match="B prompts"):
        score_batch(videos, prompts[:2])
