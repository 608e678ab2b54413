"""`saliency`: exact gradients on an analytic reward, reductions, errors, and Qwen2-VL patch-order correctness."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from streamvid.core.rewards import BaseReward, RewardOutput, saliency
from streamvid.core.rewards.base import RewardConfig
from streamvid.core.rewards.qwen2vl_preprocess import Qwen2VLVideoPreprocessor, rows_to_grid


@dataclass
class _LinearConfig(RewardConfig):
    pass


class _LinearReward(BaseReward):
    """visual = <weight, video_b> with a fixed pixel weight map; motion = mean squared frame difference."""

    axes = ("visual", "motion")
    config_class = _LinearConfig

    def __init__(self, config: _LinearConfig, weight: torch.Tensor) -> None:
        super().__init__(config)
        self.weight = torch.nn.Parameter(weight)  # [T, C, H, W]

    def score_axes(self, video, prompts):
        visual = (video * self.weight).flatten(1).sum(1)
        motion = (video[:, 1:] - video[:, :-1]).pow(2).flatten(1).mean(1)
        return {"visual": visual, "motion": motion}


@pytest.fixture
def linear():
    weight = torch.randn(3, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    return _LinearReward(_LinearConfig(), weight)


def test_saliency_is_the_exact_per_sample_pixel_gradient(linear):
    video = torch.rand(2, 3, 3, 8, 10, generator=torch.Generator().manual_seed(1))
    original = video.clone()
    maps = saliency(linear, video, ["a", "b"])
    w = linear.weight.detach()
    assert torch.allclose(maps["visual"], w.norm(dim=1).expand(2, -1, -1, -1), atol=1e-6)  # L2 over channels
    abs_sum = saliency(linear, video, ["a", "b"], axes=["visual"], reduce="abs_sum")
    assert set(abs_sum) == {"visual"}
    assert torch.allclose(abs_sum["visual"], w.abs().sum(1).expand(2, -1, -1, -1), atol=1e-6)
    # motion depends on the sample's own frames only: compare with a per-sample autograd gradient
    x = video[1:2].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(linear(x, ["b"]).axes["motion"].sum(), x)
    assert torch.allclose(maps["motion"][1], g[0].norm(dim=1), atol=1e-7)
    assert torch.equal(video, original) and linear.weight.grad is None


def test_saliency_errors(linear):
    video = torch.rand(1, 3, 3, 8, 10)
    with pytest.raises(ValueError, match="no axes"):
        saliency(linear, video, ["a"], axes=["text"])
    with pytest.raises(ValueError, match="reduce"):
        saliency(linear, video, ["a"], reduce="max")
    frozen = _LinearReward(_LinearConfig(differentiable=False), linear.weight.detach().clone())
    with pytest.raises(TypeError, match="_LinearReward has differentiable=False"):
        saliency(frozen, video, ["a"])
    out = frozen(video.requires_grad_(True), ["a"])
    assert isinstance(out, RewardOutput) and not out.differentiable and not out.score.requires_grad


def test_combine_and_output_validation(linear):
    video = torch.rand(2, 3, 3, 8, 10)
    out = linear(video, ["a", "b"])
    assert torch.allclose(out.score, (out.axes["visual"] + out.axes["motion"]) / 2)
    assert out.differentiable and not out.detach().differentiable
    with torch.no_grad():
        assert not linear(video, ["a", "b"]).differentiable  # the caller disabled autograd
    with pytest.raises(ValueError, match="must be"):
        RewardOutput(torch.zeros(2, 1), {}, True)
    with pytest.raises(ValueError, match="not one of"):
        RewardOutput(torch.zeros(2), {"beauty": torch.zeros(2)}, True)


@dataclass
class _RowConfig(RewardConfig):
    row: int = 2


class _OnePatchReward(BaseReward):
    """visual = sum of one Qwen2-VL patch row (merge-window order) of the preprocessed video."""

    axes = ("visual",)
    config_class = _RowConfig

    def __init__(self, config: _RowConfig) -> None:
        super().__init__(config)
        self.pre = Qwen2VLVideoPreprocessor(fps=None, min_pixels=56 * 56, max_pixels=56 * 56)

    def score_axes(self, video, prompts):
        rows, grid = self.pre(video)
        n = rows.shape[0] // video.shape[0]
        return {"visual": rows.reshape(video.shape[0], n, -1)[:, self.config.row].sum(-1)}


def test_saliency_lands_on_the_right_patch_in_merge_window_order():
    """Row 2 of the 4x4 patch grid is the window's bottom-left patch (h=1, w=0), not raster (h=0, w=2)."""
    video = torch.rand(1, 2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    sal = saliency(_OnePatchReward(_RowConfig(row=2)), video, ["x"])["visual"][0]  # [T, 56, 56]
    hot = torch.zeros(56, 56, dtype=torch.bool)
    hot[14:28, 0:14] = True
    assert (sal[:, hot] > 0).all() and (sal[:, ~hot] == 0).all()
    # the reference's fix (methods.md A.6): per-row gradient norms mapped back with rows_to_grid
    pre = Qwen2VLVideoPreprocessor(fps=None, min_pixels=56 * 56, max_pixels=56 * 56)
    rows, grid = pre(video)
    rows = rows.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(rows[2].sum(), rows)
    grid_map = rows_to_grid(g.norm(dim=-1), tuple(grid[0].tolist()))[0]  # [h, w] = [4, 4]
    assert grid_map.nonzero().tolist() == [[1, 0]]
