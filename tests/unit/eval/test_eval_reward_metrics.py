"""Rewards and the shapes-world oracle as metrics: values equal the reward / oracle called directly."""

from __future__ import annotations

import pytest

from streamvid.core.rewards import build_reward
from streamvid.core.world import ShapesDataset, WorldConfig, render_corrupted
from streamvid.eval.metrics import build, get_spec


@pytest.fixture(scope="module")
def item():
    data = ShapesDataset(WorldConfig(), split="val", size=2)
    return data, data[1]


def test_shapes_oracle_metric_reads_ground_truth(item):
    data, sample = item
    metric = build("shapes_oracle")
    truth = metric(sample["video"], prompt=sample["prompt"])
    assert truth["text"] == truth["colour"] == truth["shape"] == truth["direction"] == 1.0
    wrong = render_corrupted(data.attributes(1), "wrong_direction", WorldConfig(), seed=0)
    assert metric(wrong, prompt=sample["prompt"])["direction"] == 0.0
    assert not get_spec("shapes_oracle").needs_weights


def test_reward_metric_equals_reward(item):
    _, sample = item
    metric = build("reward", reward="shapes_analytic")
    got = metric(sample["video"], prompt=sample["prompt"])
    out = build_reward("shapes_analytic")(sample["video"][None], [sample["prompt"]])
    assert got["score"] == pytest.approx(float(out.score[0]), abs=1e-6)
    assert set(got) == {"score", *out.axes}
    assert got["text"] == pytest.approx(float(out.axes["text"][0]), abs=1e-6)


def test_reward_metric_unknown_reward_lists_known():
    with pytest.raises(ValueError, match="shapes_analytic"):
        build("reward", reward="no_such_reward")
