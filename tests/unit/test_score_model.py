"""ScoreModel: flow / x0 at per-frame noise levels, CFG in the c + g (c - u) convention, stock and causal Wan agree
in bidirectional mode, and any module with CausalWanModel's call signature (a conv flow net) can be the score."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel

from streamvid.core.causal_wan import BlockCausal
from streamvid.core.score_model import ScoreModel, add_frame_noise, cfg_combine, frame_sigma

B, C, F, H, W = 2, 4, 4, 8, 8


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0, noise = torch.randn(B, C, F, H, W, generator=g), torch.randn(B, C, F, H, W, generator=g)
    cond, uncond = torch.randn(B, 5, 16, generator=g), torch.randn(1, 5, 16, generator=g)
    return x0, noise, cond, uncond


PER_FRAME = torch.tensor([[0.9, 0.7, 0.5, 0.1], [0.05, 0.2, 0.3, 0.99]])


@pytest.fixture
def stock(tiny_wan_kwargs, tiny_causal_wan):
    model = WanTransformer3DModel(**tiny_wan_kwargs).eval()
    model.load_state_dict(tiny_causal_wan.state_dict())
    return model


def test_layout_is_inferred_from_the_model(stock, tiny_causal_wan):
    assert ScoreModel(stock).timestep_layout == "per_token"
    assert ScoreModel(tiny_causal_wan).timestep_layout == "per_frame"
    with pytest.raises(TypeError, match="WanTransformer3DModel"):
        ScoreModel(torch.nn.Conv3d(4, 4, 1), timestep_layout="per_token")


@pytest.mark.parametrize("sigma", [PER_FRAME, torch.tensor([0.8, 0.3]), 0.6], ids=["per_frame", "per_sample", "float"])
@pytest.mark.parametrize("guidance", [0.0, 3.0])
def test_stock_and_causal_agree_in_bidirectional_mode(stock, tiny_causal_wan, sigma, guidance):
    """Same weights, fp32: the stock per-token path and the causal per-frame path give the same prediction."""
    x0, noise, cond, uncond = _data()
    x_t = add_frame_noise(x0, noise, sigma)
    with torch.no_grad():
        a = ScoreModel(stock).x0(x_t, sigma, cond, uncond, guidance)
        b = ScoreModel(tiny_causal_wan).x0(x_t, sigma, cond, uncond, guidance)
    assert a.shape == b.shape == x_t.shape
    assert (a - b).abs().max() <= 1e-5


def test_per_token_timesteps_reach_the_stock_model_as_diffusers_expects(stock):
    """Per-frame levels become diffusers' [B, F*H'W'] per-token timesteps (t = 1000 sigma); shared levels [B]."""
    seen = []
    stock.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    x0, noise, cond, _ = _data()
    with torch.no_grad():
        ScoreModel(stock).flow(add_frame_noise(x0, noise, PER_FRAME), PER_FRAME, cond)
        ScoreModel(stock).flow(x0, torch.tensor([0.8, 0.3]), cond)
    tokens = (H // 2) * (W // 2)
    assert torch.equal(seen[0], (PER_FRAME * 1000).repeat_interleave(tokens, dim=1))
    assert torch.equal(seen[1], torch.tensor([800.0, 300.0]))


def test_guidance_identities(tiny_causal_wan):
    x0, noise, cond, uncond = _data(1)
    x_t = add_frame_noise(x0, noise, PER_FRAME)
    score = ScoreModel(tiny_causal_wan)
    with torch.no_grad():
        c = score.flow(x_t, PER_FRAME, cond)
        u = score.flow(x_t, PER_FRAME, uncond)
        assert torch.equal(score.flow(x_t, PER_FRAME, cond, uncond, guidance=0.0), c)  # g = 0: conditional
        g = 3.0
        guided = score.flow(x_t, PER_FRAME, cond, uncond, guidance=g)
        assert torch.allclose(guided, c + g * (c - u), atol=1e-6)
        assert torch.allclose(guided, u + (g + 1) * (c - u), atol=1e-5)  # standard CFG with scale g + 1 = 4
        assert torch.allclose(score.flow(x_t, PER_FRAME, cond, uncond, guidance=-1.0), u, atol=1e-6)
        # guiding x0 == guiding the flow (x0 is affine in v at fixed x_t, sigma)
        x0_c, x0_u = score.x0(x_t, PER_FRAME, cond), score.x0(x_t, PER_FRAME, uncond)
        assert torch.allclose(score.x0(x_t, PER_FRAME, cond, uncond, g), cfg_combine(x0_c, x0_u, g), atol=1e-5)
    with pytest.raises(ValueError, match="uncond"):
        score.flow(x_t, PER_FRAME, cond, guidance=3.0)


def test_x0_and_flow_are_consistent(tiny_causal_wan):
    x0, noise, cond, _ = _data(2)
    x_t = add_frame_noise(x0, noise, PER_FRAME)
    score = ScoreModel(tiny_causal_wan)
    with torch.no_grad():
        v, x0_hat = score.flow(x_t, PER_FRAME, cond), score.x0(x_t, PER_FRAME, cond)
    sigma = PER_FRAME[:, None, :, None, None]
    assert torch.equal(x0_hat, x_t - sigma * v)  # x0 = x_t - sigma v, frame by frame
    assert torch.allclose(ScoreModel.x0_to_flow(x_t, x0_hat, PER_FRAME), v, atol=1e-5)
    # x_t = (1 - sigma) x0 + sigma eps and v = eps - x0: the true flow recovers the true x0
    assert torch.allclose(ScoreModel.flow_to_x0(x_t, noise - x0, PER_FRAME), x0, atol=1e-6)
    assert torch.allclose(x_t, (1 - sigma) * x0 + sigma * noise)


class ConvFlowNet(torch.nn.Module):
    """A conv flow net with CausalWanModel's call signature: per-frame timesteps `[B, F]` in [0, 1000], text FiLM."""

    def __init__(self, channels: int = C, text_dim: int = 16):
        super().__init__()
        self.conv = torch.nn.Conv3d(channels, channels, 3, padding=1)
        self.film = torch.nn.Linear(text_dim, channels)
        self.timesteps = []

    def forward(self, x, timestep, encoder_hidden_states=None, block_causal=None, return_dict=False):
        self.timesteps.append(timestep)
        scale = self.film(encoder_hidden_states.mean(1))[:, :, None, None, None]
        out = self.conv(x) * (1 + scale) + timestep[:, None, :, None, None] / 1000
        return (out,) if not return_dict else out


def test_any_module_with_the_causal_call_signature_is_a_score_model():
    torch.manual_seed(0)
    net = ConvFlowNet()
    score = ScoreModel(net)
    x0, noise, cond, uncond = _data(3)
    x_t = add_frame_noise(x0, noise, PER_FRAME)
    v = score.flow(x_t, PER_FRAME, cond, uncond, guidance=3.0)
    assert torch.equal(net.timesteps[0], PER_FRAME * 1000) and len(net.timesteps) == 2  # cond + uncond
    c = net(x_t, PER_FRAME * 1000, cond)[0]
    u = net(x_t, PER_FRAME * 1000, uncond.expand(B, -1, -1))[0]
    assert torch.allclose(v, c + 3.0 * (c - u), atol=1e-6)
    v.square().mean().backward()  # a critic trains through the wrapper
    assert net.conv.weight.grad is not None and net.film.weight.grad.abs().sum() > 0


class OracleFlow(torch.nn.Module):
    """Knows x0: returns the exact flow (x_t - x0) / sigma from the per-frame timestep it is given."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def forward(self, x, timestep, encoder_hidden_states=None, return_dict=False):
        return ((x - self.x0) / (timestep[:, None, :, None, None] / 1000),)


def test_a_perfect_flow_model_recovers_x0_at_every_level():
    x0, noise, cond, _ = _data(4)
    score = ScoreModel(OracleFlow(x0))
    x_t = add_frame_noise(x0, noise, PER_FRAME)
    assert torch.allclose(score.x0(x_t, PER_FRAME, cond), x0, atol=1e-5)
    assert torch.allclose(score.flow(x_t, PER_FRAME, cond), noise - x0, atol=1e-4)


def test_causal_text_context_and_model_kwargs(tiny_causal_wan):
    x0, noise, cond, _ = _data(5)
    x_t = add_frame_noise(x0, noise, PER_FRAME)
    score = ScoreModel(tiny_causal_wan)
    mask = BlockCausal(2)
    with torch.no_grad():
        from_states = score.flow(x_t, PER_FRAME, cond, block_causal=mask)
        from_context = score.flow(x_t, PER_FRAME, tiny_causal_wan.encode_text(cond), block_causal=mask)
        direct = tiny_causal_wan(x_t, PER_FRAME * 1000, cond, block_causal=mask).sample
    assert (from_states - from_context).abs().max() <= 1e-6
    assert (from_states - direct).abs().max() <= 1e-6
    with pytest.raises(TypeError, match="CausalWanModel"):
        ScoreModel(ConvFlowNet()).flow(x_t, PER_FRAME, tiny_causal_wan.encode_text(cond))


def test_sigma_validation():
    assert torch.equal(frame_sigma(0.5, 2, 3), torch.full((2, 3), 0.5))
    assert torch.equal(frame_sigma(torch.tensor([0.1, 0.2]), 2, 3)[:, 2], torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        frame_sigma(1.5, 2, 3)
    with pytest.raises(ValueError, match="entries"):
        frame_sigma(torch.tensor([0.1, 0.2, 0.3]), 2, 3)
    with pytest.raises(ValueError, match=r"\[B, F\]"):
        frame_sigma(torch.zeros(2, 4), 2, 3)
