"""DMD pieces (methods.md A.2.2-A.2.3, A.7): timesteps, the normalised gradient, the weighted loss, the critic loss,
and the Self-Forcing rollout on the chunk loop's steps."""

from __future__ import annotations

import pytest
import torch

from streamvid.core.schedule import shifted_timestep_table
from streamvid.distill.dmd import critic_flow_loss, dmd_gradient, dmd_loss, dmd_timesteps


def test_timesteps_are_shifted_clamped_and_on_the_grid():
    g = torch.Generator().manual_seed(0)
    t = dmd_timesteps(4096, g, shift=5.0)
    table = shifted_timestep_table(5.0)
    assert t.shape == (4096,)
    assert ((t[:, None] - table[None]).abs().min(dim=1).values == 0).all()  # every t is a grid entry
    assert t.min() > 19 and t.max() < 981  # clamped to [20, 980], then snapped to the nearest grid entry
    # u ~ U{0..999}/1000 shifted: P(sigma <= shift(0.5)) = 1/2 up to the grid and sampling error.
    median = 1000 * 5 * 0.5 / (1 + 4 * 0.5)
    assert abs(float((t <= median).float().mean()) - 0.5) < 0.03


def test_timesteps_hand_values():
    g = torch.Generator().manual_seed(1)
    t = dmd_timesteps(64, g, shift=1.0, min_t=500, max_t=501)
    assert torch.allclose(t, torch.full((64,), 500.0), atol=1.0)  # shift 1: identity, nearest grid entry to 500
    t = dmd_timesteps(8, g, shift=5.0, min_t=0, max_t=1)  # u = 0 -> clamped up to min_step 20
    table = shifted_timestep_table(5.0)
    assert torch.allclose(t, table[(table - 20).abs().argmin()].expand(8))


def test_dmd_gradient_normalisation_by_hand():
    x = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    real = torch.tensor([[0.0, 1.0], [1.0, -1.0]])
    fake = torch.tensor([[2.0, 1.0], [3.0, 1.0]])
    grad = dmd_gradient(x, fake, real)
    # sample 0: mean |x - real| = (1 + 2) / 2 = 1.5 -> (2, 0) / 1.5; sample 1: mean = 1 -> (2, 2)
    expected = torch.tensor([[2 / 1.5, 0.0], [2.0, 2.0]], dtype=torch.float64)
    assert grad.dtype == torch.float64 and torch.allclose(grad, expected)
    # x == real == fake: 0 / 0 -> nan_to_num -> 0
    zero = dmd_gradient(real, real, real)
    assert torch.isfinite(zero).all() and (zero == 0).all()


def test_weighted_loss_gradient_is_inter_times_intra_times_grad_over_n():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, requires_grad=True)
    grad = torch.randn(3, 2, 4, dtype=torch.float64)
    inter = torch.tensor([0.5, 1.0, 2.0])
    intra = torch.rand(3, 2, 1) + 0.5
    loss = dmd_loss(x, grad, inter, intra)
    (gx,) = torch.autograd.grad(loss, x)
    n_per_sample, b = 2 * 4, 3
    expected = (inter.view(3, 1, 1).double() * intra.double() * grad / (n_per_sample * b)).float()
    assert torch.allclose(gx, expected, atol=1e-7)
    # value: 0.5 * mean_b inter_b mean(intra grad^2)
    value = 0.5 * (inter.double() * (intra.double() * grad**2).flatten(1).mean(1)).mean()
    assert torch.allclose(loss, value)


def test_all_weights_one_is_vanilla_dmd_exactly():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 5, requires_grad=True)
    grad = torch.randn(2, 3, 5, dtype=torch.float64)
    vanilla = 0.5 * torch.nn.functional.mse_loss(x.double(), (x.double() - grad).detach())
    (g_vanilla,) = torch.autograd.grad(vanilla, x)
    for inter, intra in ((None, None), (torch.ones(2), torch.ones(2, 3, 1))):
        loss = dmd_loss(x, grad, inter, intra)
        (g,) = torch.autograd.grad(loss, x)
        assert torch.equal(loss, vanilla) and torch.equal(g, g_vanilla)


def test_critic_flow_loss_target_is_noise_minus_x():
    x, eps = torch.randn(2, 4), torch.randn(2, 4)
    v = (eps - x).clone().requires_grad_(True)
    assert critic_flow_loss(v, x, eps).item() == 0.0
    assert critic_flow_loss(v + 1.0, x, eps).item() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- rollout


def _tiny_sampler():
    from streamvid.core.causal_wan import CausalWanModel
    from streamvid.core.sampler import StreamingSampler
    from streamvid.core.sampler_config import SamplerConfig

    torch.manual_seed(0)
    model = CausalWanModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
                           out_channels=4, text_dim=8, freq_dim=16, ffn_dim=32, num_layers=2)
    return StreamingSampler.from_config(model, SamplerConfig()), model


def test_rollout_at_the_last_exit_step_is_the_inference_loop():
    from streamvid.core.sampler import GaussianNoise
    from streamvid.distill.rollout import self_forcing_rollout

    sampler, model = _tiny_sampler()
    text = torch.randn(2, 3, 8)
    with torch.no_grad():
        ref = sampler.generate(model.encode_text(text), (4, 4, 4), 6, batch_size=2, noise=GaussianNoise(7))
        out = self_forcing_rollout(sampler, text, (4, 4, 4), 6, exit_step=3, noise=GaussianNoise(7), grad=False)
    assert torch.equal(out, ref)


def test_rollout_gradient_flows_through_exit_steps_only():
    from streamvid.core.sampler import GaussianNoise
    from streamvid.distill.rollout import self_forcing_rollout

    sampler, model = _tiny_sampler()
    text = torch.randn(1, 3, 8)
    x = self_forcing_rollout(sampler, text, (4, 4, 4), 6, exit_step=1, noise=GaussianNoise(3))
    assert x.shape == (1, 6, 4, 4, 4) and x.requires_grad
    # The first chunk's output depends on the parameters only through its own exit step: its gradient equals
    # that of a one-chunk rollout (the second chunk's history is constant, so it adds nothing to chunk 0).
    g_two = torch.autograd.grad(x[:, :3].sum(), list(model.parameters()), allow_unused=True, retain_graph=True)
    y = self_forcing_rollout(sampler, text, (4, 4, 4), 3, exit_step=1, noise=GaussianNoise(3))
    g_one = torch.autograd.grad(y.sum(), list(model.parameters()), allow_unused=True)
    for a, b in zip(g_two, g_one, strict=True):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-6)
    # The second chunk's output reaches the text projection (the text path carries gradient).
    g = torch.autograd.grad(x[:, 3:].sum(), [model.condition_embedder.text_embedder.linear_1.weight])[0]
    assert g.abs().sum() > 0


def test_rollout_rejects_bad_exit_step_and_frames():
    from streamvid.core.sampler import GaussianNoise
    from streamvid.distill.rollout import self_forcing_rollout

    sampler, _ = _tiny_sampler()
    with pytest.raises(ValueError, match="exit_step"):
        self_forcing_rollout(sampler, torch.randn(1, 3, 8), (4, 4, 4), 6, 4, GaussianNoise(0))
    with pytest.raises(ValueError, match="multiple"):
        self_forcing_rollout(sampler, torch.randn(1, 3, 8), (4, 4, 4), 5, 0, GaussianNoise(0))
