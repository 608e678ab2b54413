"""Contract tests run over every registered reward, plus the registry itself.

Each registered name needs a builder of a tiny test instance in `reward_helpers.TINY_BUILDERS` (a function of a
scratch folder, returning the reward); a registered name without one fails
`test_every_registered_reward_has_a_tiny_builder` and its contract tests. The registry's own rules are tested in
`test_reward_configs.py`.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch
from reward_helpers import PROMPTS, TINY_BUILDERS, VIDEO_SHAPE

from streamvid.core.rewards import (
    AXES,
    BaseReward,
    RewardConfig,
    RewardModel,
    RewardOutput,
    build_reward,
    registered_rewards,
    reward_config_class,
    saliency,
)
from streamvid.core.world.corrupt import CORRUPTION_AXES
from streamvid.core.world.degenerate import DEGENERATE_AXES


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("reward_contract")


@pytest.fixture(scope="module", params=registered_rewards())
def reward(request, scratch):
    name = request.param
    if name not in TINY_BUILDERS:
        pytest.fail(
            f"registered reward '{name}' has no tiny test builder: add one to TINY_BUILDERS in tests/reward_helpers.py"
        )
    return TINY_BUILDERS[name](scratch / name)


@pytest.fixture
def video():
    return torch.rand(VIDEO_SHAPE, generator=torch.Generator().manual_seed(0))


def _call(reward, video, prompts, grad: bool = False) -> RewardOutput:
    with torch.set_grad_enabled(grad):
        return reward(video, prompts)


def test_every_registered_reward_has_a_tiny_builder():
    missing = [n for n in registered_rewards() if n not in TINY_BUILDERS]
    assert not missing, f"add tiny test builders for {missing} to TINY_BUILDERS in tests/reward_helpers.py"


def test_shapes_axes_and_finiteness(reward, video):
    assert isinstance(reward, RewardModel)
    assert reward.axes and set(reward.axes) <= set(AXES)
    out = _call(reward, video, PROMPTS)
    assert isinstance(out, RewardOutput) and set(out.axes) == set(reward.axes)
    for value in (out.score, *out.axes.values()):
        assert value.shape == (VIDEO_SHAPE[0],) and value.is_floating_point()
        assert torch.isfinite(value).all()


def test_batch_in_batch_out_matches_one_by_one(reward, video):
    batch = _call(reward, video, PROMPTS)
    for i in range(VIDEO_SHAPE[0]):
        alone = _call(reward, video[i : i + 1], PROMPTS[i : i + 1])
        assert torch.allclose(alone.score, batch.score[i : i + 1], rtol=1e-4, atol=1e-4)
        for axis in reward.axes:
            assert torch.allclose(alone.axes[axis], batch.axes[axis][i : i + 1], rtol=1e-4, atol=1e-4)


def test_every_sample_is_scored(reward, video):
    """Changing one sample's pixels changes only that sample's score (no element-0 shortcut)."""
    before = _call(reward, video, PROMPTS).score
    changed = video.clone()
    changed[2] = 1.0 - changed[2]
    after = _call(reward, changed, PROMPTS).score
    assert torch.allclose(after[:2], before[:2], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(after[2], before[2], atol=1e-6)


def test_deterministic(reward, video):
    a, b = _call(reward, video, PROMPTS), _call(reward, video, PROMPTS)
    assert torch.equal(a.score, b.score) and all(torch.equal(a.axes[k], b.axes[k]) for k in a.axes)


def _check_flag(reward, video) -> RewardOutput:
    """Outputs require grad iff differentiable; non-differentiable modules run with autograd disabled."""
    seen: list[bool] = []
    inner = (
        list(reward.modules())[1:] if isinstance(reward, torch.nn.Module) else []
    )  # the reward's submodules
    handles = [m.register_forward_hook(lambda *_: seen.append(torch.is_grad_enabled())) for m in inner]
    try:
        out = _call(reward, video.clone().requires_grad_(True), PROMPTS, grad=True)
    finally:
        for h in handles:
            h.remove()
    assert out.differentiable == reward.differentiable
    tensors = (out.score, *out.axes.values())
    if reward.differentiable:
        assert all(t.requires_grad for t in tensors)
    else:
        assert not any(t.requires_grad for t in tensors) and not any(seen)
        with pytest.raises(TypeError, match="differentiable"):
            saliency(reward, video, PROMPTS)
    return out


def test_differentiable_flag_is_honoured(reward, video):
    _check_flag(reward, video)
    if isinstance(reward, BaseReward) and reward.differentiable:
        frozen = copy.copy(reward)  # same weights, scored under no_grad
        frozen.differentiable = False
        out = _check_flag(frozen, video)
        assert torch.allclose(out.score, _call(reward, video, PROMPTS).score, atol=1e-6)


def test_saliency_shapes_and_nonzero_gradients(reward, video):
    """A differentiable reward gives a non-zero, finite map per axis; any other is refused (TypeError)."""
    if not reward.differentiable:
        with pytest.raises(TypeError, match="differentiable"):
            saliency(reward, video, PROMPTS)
        return
    maps = saliency(reward, video, PROMPTS)
    assert set(maps) == set(reward.axes)
    for axis, m in maps.items():
        assert m.shape == (VIDEO_SHAPE[0], VIDEO_SHAPE[1], VIDEO_SHAPE[3], VIDEO_SHAPE[4]), axis
        assert torch.isfinite(m).all() and (m >= 0).all() and not m.requires_grad
        assert (m.flatten(1).sum(1) > 0).all(), f"axis '{axis}' has an all-zero saliency for some sample"
    one = saliency(reward, video, PROMPTS, axes=[reward.axes[0]])
    assert torch.allclose(one[reward.axes[0]], maps[reward.axes[0]], rtol=1e-4, atol=1e-7)


def test_rejects_bad_inputs(reward, video):
    with pytest.raises(ValueError):
        reward(video, PROMPTS[:2])
    with pytest.raises(TypeError):
        reward(video[:1], PROMPTS[0])
    with pytest.raises(ValueError):
        reward(video[:, :, :1], PROMPTS)


# ---------------------------------------------------------------- registry


def test_unknown_name_lists_known_rewards():
    with pytest.raises(ValueError, match=r"unknown reward 'nope'.*aesthetic.*clip_frames.*videoalign"):
        build_reward("nope")


def test_importing_the_interface_does_not_import_adapters():
    code = ("import sys, streamvid.core.rewards as r; r.registered_rewards(); "
            "print('transformers' in sys.modules, 'streamvid.core.rewards.videoalign' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_config_classes_are_importable_without_their_adapters():
    code = ("import sys, streamvid.core.rewards as r\n"
            "configs = [r.VideoAlignConfig(), r.CLIPFrameScoreConfig(), r.AestheticConfig(),\n"
            "           r.ShapesAnalyticRewardConfig(), r.ShapesLearnedRewardConfig(), r.RewardSelection('videoalign')]\n"
            "adapters = ('videoalign', 'clip_frames', 'shapes_analytic', 'shapes_learned')\n"
            "print(sorted(m for m in sys.modules if m.rsplit('.', 1)[-1] in adapters or m == 'transformers'))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]"]


@pytest.mark.parametrize("name", registered_rewards())
def test_every_registered_reward_has_a_typed_config(name):
    config_class = reward_config_class(name)
    assert dataclasses.is_dataclass(config_class) and issubclass(config_class, RewardConfig)
    with pytest.raises(ValueError, match=rf"unknown option\(s\) \['nope'\] for reward '{name}'.*valid: \["):
        build_reward(name, nope=1)


# ---------------------------------------------------------------- ranking on the shapes world

SHAPES_WORLD_REWARDS: dict[str, Callable[[], RewardModel]] = {
    "shapes_analytic": lambda: build_reward("shapes_analytic"),
    "shapes_learned": lambda: build_reward("shapes_learned"),  # the shipped checkpoint
}
"""Rewards with a shapes-world meaning, built as shipped: they must rank degenerate and corrupted videos below
clean ones. Rewards with no shapes-world meaning (VideoAlign, CLIP, untrained tiny instances) keep the
structural contract above only."""
RANKING_CLIPS = 16


@pytest.fixture(scope="module")
def shapes_world_clips():
    from streamvid.core.world import WorldConfig, render_corrupted, sample_attributes
    from streamvid.core.world.degenerate import degenerate_examples

    clean, prompts, kinds = degenerate_examples("val", RANKING_CLIPS)
    cfg = WorldConfig()
    attrs = [sample_attributes(cfg, "val", i)[0] for i in range(RANKING_CLIPS)]
    for kind in CORRUPTION_AXES:
        kinds[f"mild_{kind}"] = torch.stack([render_corrupted(a, kind, cfg, seed=i) for i, a in enumerate(attrs)])
    return clean, prompts, kinds


@pytest.fixture(scope="module", params=sorted(SHAPES_WORLD_REWARDS))
def shapes_world_scores(request, shapes_world_clips):
    """``(reward, {kind or 'clean': RewardOutput})`` of one shipped shapes-world reward on every clip set."""
    reward = SHAPES_WORLD_REWARDS[request.param]()
    clean, prompts, kinds = shapes_world_clips
    with torch.no_grad():
        return reward, {"clean": reward(clean, prompts)} | {k: reward(v, prompts) for k, v in kinds.items()}


def test_every_shapes_reward_is_ranked_on_the_shapes_world():
    missing = [n for n in registered_rewards() if n.startswith("shapes_") and n not in SHAPES_WORLD_REWARDS]
    assert not missing, f"add {missing} to SHAPES_WORLD_REWARDS in {__file__}"


def _ranked_below(reward, scores, kind: str, axes) -> list[str]:
    """Names of the checks where some clip of ``kind`` does not score strictly below its clean clip."""
    clean, bad = scores["clean"], scores[kind]
    failures = [] if (bad.score < clean.score).all() else [f"score ({bad.score.tolist()} vs {clean.score.tolist()})"]
    for axis in axes:
        if axis in reward.axes and not (bad.axes[axis] < clean.axes[axis]).all():
            failures.append(f"{axis} ({bad.axes[axis].tolist()} vs {clean.axes[axis].tolist()})")
    return failures


@pytest.mark.parametrize("kind", sorted(DEGENERATE_AXES))
def test_degenerate_videos_score_below_clean(shapes_world_scores, kind):
    """Each degenerate video (blank, constant, noise, static, ...) scores below the clean video it came from,
    on ``score`` and on every axis its kind lowers (`DEGENERATE_AXES`), for every one of 16 val clips."""
    reward, scores = shapes_world_scores
    failures = _ranked_below(reward, scores, kind, DEGENERATE_AXES[kind])
    assert not failures, f"{type(reward).__name__} ranks '{kind}' at or above clean on: {failures}"


@pytest.mark.parametrize("kind", sorted(CORRUPTION_AXES))
def test_mild_corruptions_score_below_clean_on_their_axis(shapes_world_scores, kind):
    reward, scores = shapes_world_scores
    axis = CORRUPTION_AXES[kind]
    clean, bad = scores["clean"].axes[axis], scores[f"mild_{kind}"].axes[axis]
    assert (bad < clean).all(), f"{type(reward).__name__} {axis}: {bad.tolist()} vs clean {clean.tolist()}"
