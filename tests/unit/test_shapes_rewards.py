"""Shapes-world rewards: the analytic (differentiable oracle) and the learned reward (its training stage is
tested in `test_shapes_reward_stage.py`)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from reward_helpers import TINY_NET

from streamvid.core.rewards import build_reward, saliency
from streamvid.core.rewards.shapes_learned import (
    DEFAULT_CHECKPOINT,
    ShapesLearnedReward,
    ShapesRewardNet,
)
from streamvid.core.world import (
    CORRUPTION_AXES,
    PromptSpec,
    ShapesDataset,
    WorldConfig,
    parse_prompt,
    render_corrupted,
    score_batch,
)
from streamvid.distill.shapes_reward_config import ShapesRewardStageConfig
from streamvid.distill.shapes_reward_data import make_examples
from streamvid.distill.shapes_reward_metrics import spearman

AXES = ("visual", "motion", "text")


def tiny_shapes_learned_instance() -> ShapesLearnedReward:
    """A randomly initialised tiny learned reward, in memory."""
    torch.manual_seed(0)
    return ShapesLearnedReward(ShapesLearnedReward.config_class(), ShapesRewardNet(TINY_NET))


@pytest.fixture(scope="module")
def clean():
    cfg = WorldConfig()
    ds = ShapesDataset(cfg, "val", 30)
    items = [ds[i] for i in range(30)]
    videos = torch.stack([it["video"] for it in items])
    return cfg, ds, videos, [it["prompt"] for it in items]


# ---------------------------------------------------------------- analytic


def test_analytic_scores_clean_videos_high_like_the_oracle(clean):
    _, _, videos, prompts = clean
    with torch.no_grad():
        out = build_reward("shapes_analytic")(videos, prompts)
    oracle = score_batch(videos, prompts)
    for axis in AXES:
        assert out.axes[axis].min() > 0.9, (axis, out.axes[axis])
        assert (out.axes[axis] - oracle[axis]).abs().max() < 0.1, axis


@pytest.mark.parametrize("kind", list(CORRUPTION_AXES))
def test_analytic_ranks_truth_above_corruption_on_its_axis(clean, kind):
    """30 videos per corruption, default strengths: the truth must win on the matching axis >= 90 %."""
    cfg, ds, videos, prompts = clean
    reward = build_reward("shapes_analytic")
    bad = torch.stack([render_corrupted(ds.attributes(i), kind, cfg, seed=i) for i in range(len(prompts))])
    axis = CORRUPTION_AXES[kind]
    with torch.no_grad():
        truth, corrupted = reward(videos, prompts).axes[axis], reward(bad, prompts).axes[axis]
    assert (truth > corrupted).float().mean() >= 0.9, (kind, truth, corrupted)


def test_analytic_text_drops_for_a_wrong_shape_in_the_prompt(clean):
    _, _, videos, prompts = clean
    wrong = []
    for p in prompts:
        spec = parse_prompt(p)
        other = next(s for s in ("square", "circle", "triangle") if s != spec.shape)
        wrong.append(PromptSpec(spec.colour, other, spec.segments).canonical)
    reward = build_reward("shapes_analytic")
    with torch.no_grad():
        right, bad = reward(videos, prompts).axes["text"], reward(videos, wrong).axes["text"]
    assert (right > bad + 0.2).float().mean() >= 0.9


def test_analytic_saliency_sits_on_the_object(clean):
    cfg, _, videos, prompts = clean
    videos, prompts = videos[:6], prompts[:6]
    maps = saliency(build_reward("shapes_analytic"), videos, prompts)
    background = torch.tensor(cfg.background).view(1, 1, 3, 1, 1)
    obj = ((videos - background).abs().amax(2) > 0.02).float()  # [B, T, H, W]
    near = F.max_pool2d(obj.flatten(0, 1)[:, None], 5, 1, 2).view(obj.shape) > 0  # dilated by 2 px
    for axis, m in maps.items():
        total = m.flatten(1).sum(1)
        assert (total > 0).all(), axis
        inside = (m * near).flatten(1).sum(1) / total
        assert (inside > 0.5).all(), (axis, inside)


# ---------------------------------------------------------------- learned


def test_shipped_checkpoint_is_small_and_met_its_training_target():
    files = {p.name for p in DEFAULT_CHECKPOINT.iterdir()}
    assert {"reward.safetensors", "reward.json", "metrics.json"} <= files
    assert (DEFAULT_CHECKPOINT / "reward.safetensors").stat().st_size <= 2 * 1024 * 1024
    metrics = json.loads((DEFAULT_CHECKPOINT / "metrics.json").read_text())
    assert min(metrics["spearman"].values()) >= 0.8, metrics["spearman"]


@pytest.mark.parametrize("axis", AXES)
def test_shipped_checkpoint_tracks_the_oracle_on_fresh_videos(axis):
    """Spearman with the oracle on 64 fresh ``val`` examples focused on ``axis`` (clean or corrupted on it).

    The bound, 0.7, is looser than the training report's 0.8 (on 256 examples per axis) to leave room for
    sampling noise. Focused sets, because on the full mixture the oracle's exact ties (every flawless video
    scores 1) cap any tie-free predictor's Spearman near 0.7 on the visual axis.
    """
    reward = build_reward("shapes_learned")
    videos, prompts, targets = make_examples("val", range(64), 4242, ShapesRewardStageConfig(), focus=axis)
    with torch.no_grad():
        pred = reward(videos, prompts).axes[axis]
    assert spearman(pred, targets["axes"][:, AXES.index(axis)]) >= 0.7


def test_save_load_round_trip(tmp_path, clean):
    _, _, videos, prompts = clean
    reward = tiny_shapes_learned_instance()
    reward.save(tmp_path / "ckpt", extra={"note": "tiny"})
    loaded = build_reward("shapes_learned", path=str(tmp_path / "ckpt"))
    assert loaded.net.config == TINY_NET
    assert json.loads((tmp_path / "ckpt" / "reward.json").read_text())["note"] == "tiny"
    with torch.no_grad():
        a, b = reward(videos[:4], prompts[:4]), loaded(videos[:4], prompts[:4])
    assert torch.equal(a.score, b.score)


def test_missing_checkpoint_names_the_directory_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*reward\.json.*reward\.safetensors"):
        build_reward("shapes_learned", path=str(tmp_path / "nowhere"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "reward.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"missing \['reward\.safetensors'\]"):
        build_reward("shapes_learned", path=str(tmp_path / "half"))


def test_features_are_trunk_embeddings_independent_of_the_prompt(clean):
    _, _, videos, prompts = clean
    reward = tiny_shapes_learned_instance()
    with torch.no_grad():
        a = reward.features(videos[:3], prompts[:3])
        b = reward.features(videos[:3], ["a white square moving up"] * 3)
        alone = reward.features(videos[1:2])
    assert a.shape == (3, TINY_NET.dim) and torch.equal(a, b)
    assert torch.allclose(alone, a[1:2], atol=1e-6)
