"""The degenerate set of the shapes world: well-formed, deterministic, and rated low by the oracle itself."""

from __future__ import annotations

import pytest
import torch

from streamvid.core.world import WorldConfig, measure, sample_attributes, score_batch
from streamvid.core.world.degenerate import DEGENERATE_AXES, degenerate_examples, render_degenerate

AXES = ("visual", "motion", "text")


@pytest.fixture(scope="module")
def examples():
    return degenerate_examples("val", 12)


def test_every_kind_is_a_video_in_range(examples):
    clean, prompts, kinds = examples
    assert set(kinds) == set(DEGENERATE_AXES) and len(prompts) == clean.shape[0]
    for kind, videos in kinds.items():
        assert videos.shape == clean.shape, kind
        assert videos.min() >= 0 and videos.max() <= 1, kind
        assert not torch.equal(videos, clean), kind


def test_deterministic_in_the_seed():
    cfg = WorldConfig()
    attrs = sample_attributes(cfg, "val", 3)[0]
    for kind in DEGENERATE_AXES:
        a, b = render_degenerate(attrs, kind, cfg, seed=5), render_degenerate(attrs, kind, cfg, seed=5)
        assert torch.equal(a, b), kind
    noisy = [render_degenerate(attrs, "uniform_noise", cfg, seed=s) for s in (1, 2)]
    assert not torch.equal(*noisy)


def test_the_oracle_rates_each_kind_below_clean_on_its_claimed_axes(examples):
    """The claims of `DEGENERATE_AXES` are the oracle's: on each claimed axis the mean oracle score drops by
    at least 0.2 from the clean videos'."""
    clean, prompts, kinds = examples
    base = score_batch(clean, prompts)
    for kind, videos in kinds.items():
        scores = score_batch(videos, prompts)
        for axis in DEGENERATE_AXES[kind]:
            drop = float((base[axis] - scores[axis]).mean())
            assert drop >= 0.2, (kind, axis, drop)


def test_kinds_do_what_they_say():
    cfg = WorldConfig()
    attrs = sample_attributes(cfg, "val", 0)[0]
    static = render_degenerate(attrs, "static", cfg)
    assert torch.equal(static, static[:1].expand_as(static))
    vanishing = render_degenerate(attrs, "vanishing", cfg)
    assert measure(vanishing[: cfg.num_frames // 2]).colour == attrs.colour
    assert (vanishing[-1] - vanishing[-1, :, :1, :1]).abs().max() == 0  # background only
    two = measure(render_degenerate(attrs, "two_objects", cfg)[:1])
    assert int(two.components[0]) == 2
    assert render_degenerate(attrs, "black", cfg).max() == 0
