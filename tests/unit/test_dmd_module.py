"""`DMDModule` on the shipped shapes-world student, teacher and learned reward: the generator loss equals vanilla
DMD written out by hand, Stream-R1 with neutral weights is plain DMD exactly, weights are per sample, and reward
failures fall back to weight 1."""

from __future__ import annotations

import math

import pytest
import torch

from streamvid.core.config import load_config
from streamvid.core.schedule import add_noise
from streamvid.core.score_model import ScoreModel
from streamvid.distill.dmd_config import DMDStageConfig

CONFIG = "configs/train/shapes_r1.yaml"


def _module(*overrides: str):
    from streamvid.distill.r1_stage import build_dmd_module

    cfg = load_config(CONFIG, ["trainer.batch_size=2", *overrides], schema=DMDStageConfig)
    torch.manual_seed(0)
    return build_dmd_module(cfg)


def _weights(module, x):
    """`DMDModule.reward_weights` of a rollout ``x`` (decoded as the generator step decodes it)."""
    return module.reward_weights(module._codec[0].decode(x).clamp(0, 1), PROMPTS, x.shape)


def _student_grads(module, prompts, seed=3, exit_step=1):
    from streamvid.distill.dmd_module import _gen

    module.nets.zero_grad(set_to_none=True)
    loss, logs, _ = module.generator_loss(prompts, _gen(seed), exit_step, seed)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in module.student.parameters() if p.grad is not None], logs


PROMPTS = ["a red circle moving left", "one small blue square gliding up"]


@pytest.fixture(scope="module")
def plain():
    return _module("stream_r1.reward_weighting=false", "stream_r1.spatial_reward=false")


def test_generator_loss_is_vanilla_dmd_written_out(plain):
    """The module's loss and gradients equal 0.5 MSE(x, sg(x - grad)) computed here from the same draws
    (methods.md A.2.2)."""
    from streamvid.distill.dmd_module import _gen

    loss, grads, _ = _student_grads(plain, PROMPTS)
    plain.nets.zero_grad(set_to_none=True)
    g = _gen(3)
    x, _ = plain._rollout(PROMPTS, 1, 3, grad=True)
    sigma = plain._score_sigma(2, g)
    eps = torch.randn(x.shape, generator=g)
    cond, uncond = plain.encode(PROMPTS), plain.encode(["", ""])
    with torch.no_grad():
        x_t = add_noise(x.detach(), eps, sigma.view(2, 1, 1, 1, 1)).transpose(1, 2)
        real = ScoreModel(plain.nets["real"]).x0(x_t, sigma, cond, uncond, 1.0).transpose(1, 2).double()
        fake = ScoreModel(plain.nets["critic"]).x0(x_t, sigma, cond).transpose(1, 2).double()
        norm = (x.detach().double() - real).abs().mean(dim=(1, 2, 3, 4)).view(2, 1, 1, 1, 1)
        grad = torch.nan_to_num((fake - real) / norm)
    vanilla = 0.5 * torch.nn.functional.mse_loss(x.double(), (x.double() - grad).detach())
    vanilla.backward()
    ref = [p.grad for p in plain.student.parameters() if p.grad is not None]
    # Equal up to summation order (mean over samples of per-sample means vs one mean), in float64.
    assert torch.allclose(loss, vanilla.detach(), rtol=1e-12, atol=0)
    assert len(ref) == len(grads)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-9) for a, b in zip(grads, ref, strict=True))
    assert sum(float(a.abs().sum()) for a in grads) > 0


def test_stream_r1_with_neutral_weights_is_plain_dmd_exactly(plain):
    """beta = 0 (exp(0 r) = 1) and zero saliency strengths (W = 1): the same gradients, bit for bit."""
    neutral = _module("stream_r1.beta=0.0", "stream_r1.spatial_reward_strength=0.0",
                      "stream_r1.temporal_saliency_strength=0.0")
    loss_a, grads_a, _ = _student_grads(plain, PROMPTS)
    loss_b, grads_b, logs = _student_grads(neutral, PROMPTS)
    assert logs["reward_weight"] == 1.0 and logs["spatial_weight_min"] == logs["spatial_weight_max"] == 1.0
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))


def test_inter_weight_is_exp_beta_r_per_sample():
    module = _module("stream_r1.spatial_reward=false", "stream_r1.reward_mode=MQ")
    x, _ = module._rollout(PROMPTS, 3, 5, grad=False)
    out = _weights(module, x)
    inter, intra, logs = out.inter, out.intra, out.logs
    with torch.no_grad():
        raw = module._reward[0](module._codec[0].decode(x).clamp(0, 1), PROMPTS).axes["motion"].double()
    mu, sd = module.cfg.stream_r1.reward_norm["motion"]
    expected = torch.exp(2.0 * (raw - mu) / sd).float()
    assert intra is None and torch.allclose(inter, expected, rtol=1e-5)
    assert inter[0] != inter[1]  # one weight per rollout, not batch element 0's for all
    assert logs["reward_mq"] == pytest.approx(float(((raw - mu) / sd).mean()), rel=1e-5)


def test_intra_weights_are_mean_one_on_the_latent_grid_and_floored():
    from streamvid.distill.dmd_module import _gen

    module = _module()
    x, _ = module._rollout(PROMPTS, 3, 5, grad=False)
    out = _weights(module, x)
    intra, logs = out.intra, out.logs
    assert intra.shape == (2, 12, 1, 16, 16)
    assert torch.allclose(intra.mean(dim=(1, 2, 3, 4)), torch.ones(2), atol=1e-4)
    assert logs["spatial_weight_min"] > 0 and math.isfinite(logs["spatial_weight_max"])
    # the generator step hands the first rollout's map to the samples callback (pixel codec: F == T)
    _, _, diagnostics = module.generator_loss(PROMPTS, _gen(3), 1, 3)
    assert diagnostics["weight_map"]["weights"].shape == (1, 12, 16, 16)
    assert diagnostics["weight_map"]["pixels"].shape[:2] == (1, 12)
    assert diagnostics["per_sample"]["prompt"] == PROMPTS and len(diagnostics["per_sample"]["reward_weight"]) == 2


def test_reward_failure_and_non_finite_rewards_fall_back_to_weight_one():
    module = _module()
    x, _ = module._rollout(PROMPTS, 3, 5, grad=False)
    real_reward = module._reward[0]

    class Broken:
        axes, differentiable = real_reward.axes, True

        def __call__(self, video, prompts):
            raise RuntimeError("reward server down")

    module._reward = (Broken(),)
    with pytest.warns(UserWarning, match="reward failed"):
        assert _weights(module, x) is None  # no weights: plain DMD for the step
    assert module.counters["reward/failures"] == 2

    class NaNForOne:
        axes, differentiable = real_reward.axes, True

        def __call__(self, video, prompts):
            out = real_reward(video, prompts)
            out.axes["motion"] = out.axes["motion"] * torch.tensor([float("nan"), 1.0])
            return out

    module._reward = (NaNForOne(),)
    with pytest.warns(UserWarning, match="non-finite reward"):
        out = _weights(module, x)
    inter, intra = out.inter, out.intra
    assert out.valid.tolist() == [False, True] and inter[0] == 1.0 and inter[1] != 1.0
    assert torch.equal(intra[0], torch.ones_like(intra[0])) and not torch.equal(intra[1], torch.ones_like(intra[1]))
