"""Flow-matching training pieces: noise levels, loss, EMA, the Euler ODE sampler, the conv teacher, the bag of
words text encoder."""

from __future__ import annotations

import pytest
import torch

from streamvid.core.conv_flow import ConvFlowNet
from streamvid.core.euler import euler_solve
from streamvid.core.schedule import FewStepSchedule, euler_grid, logit_normal_sigmas, shift_sigma
from streamvid.core.score_model import ScoreModel
from streamvid.core.text.bag_of_words import BagOfWordsTextEncoder
from streamvid.distill.flow_matching import EMA, flow_matching_loss, frame_noise_levels


class KnowsX0(torch.nn.Module):
    """A perfect flow model for one target: x0 = the text token's first C entries, broadcast over the clip.
    v = (x_t - x0) / sigma (0 where sigma = 0, i.e. clean context)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, timestep, encoder_hidden_states=None, return_dict=False, block_causal=None):
        c = x.shape[1]
        x0 = encoder_hidden_states[:, 0, :c][:, :, None, None, None]
        sigma = (timestep / 1000)[:, None, :, None, None]
        v = torch.where(sigma > 0, (x - x0) / sigma.clamp_min(1e-8), torch.zeros_like(x))
        return (v,)


def _text(batch: int, c: int = 3, value: float = 0.5) -> torch.Tensor:
    return torch.full((batch, 1, c), value)


# ---------------------------------------------------------------- schedule


def test_shift_is_one_definition():
    s = torch.linspace(0, 1, 11)
    assert torch.allclose(shift_sigma(s, 1.0), s)
    assert torch.allclose(euler_grid(24, 5.0)[[0, 6, 12, 18]] * 1000, FewStepSchedule.from_steps().timesteps)
    grid = euler_grid(8, 3.0)
    assert grid[0] == 1 and grid[-1] == 0 and (grid[1:] < grid[:-1]).all()


def test_logit_normal_levels_shift_towards_noise():
    g = torch.Generator().manual_seed(0)
    plain = logit_normal_sigmas(20000, 1.0, g)
    shifted = logit_normal_sigmas(20000, 3.0, torch.Generator().manual_seed(0))
    assert plain.min() > 0 and plain.max() < 1
    assert abs(float(plain.median()) - 0.5) < 0.02
    assert torch.allclose(shifted, shift_sigma(plain, 3.0))


# ---------------------------------------------------------------- noise levels, loss, EMA


def test_frame_noise_levels_per_clip_and_per_chunk():
    g = torch.Generator().manual_seed(1)
    clip = frame_noise_levels(6, 12, 3, shift=3.0, p_chunk=0.0, generator=g)
    assert clip.shape == (6, 12) and (clip == clip[:, :1]).all()
    chunk = frame_noise_levels(6, 12, 3, shift=3.0, p_chunk=1.0, generator=g)
    blocks = chunk.view(6, 4, 3)
    assert (blocks == blocks[..., :1]).all() and not (chunk == chunk[:, :1]).all()
    again = frame_noise_levels(6, 12, 3, 3.0, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(again, frame_noise_levels(6, 12, 3, 3.0, 0.5, torch.Generator().manual_seed(7)))
    with pytest.raises(ValueError, match="chunk_frames=5"):
        frame_noise_levels(1, 12, 5, 3.0)


def test_flow_matching_loss_is_zero_for_the_true_flow_and_positive_otherwise():
    score = ScoreModel(KnowsX0())
    x0 = torch.full((2, 3, 6, 4, 4), 0.5)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    sigma = torch.rand(2, 6) * 0.9 + 0.05
    assert flow_matching_loss(score, x0, _text(2), sigma, noise) < 1e-10
    assert flow_matching_loss(score, x0, _text(2, value=-0.5), sigma, noise) > 0.1


def test_ema_follows_its_warmup_decay():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.9)
    expected = 0.0
    for k in range(30):
        model.weight.data.fill_(float(k + 1))
        ema.update(model)
        d = min(0.9, (1 + k) / (10 + k))
        expected = d * expected + (1 - d) * (k + 1)
        assert ema.module.weight.item() == pytest.approx(expected, rel=1e-6)
    assert not ema.module.weight.requires_grad
    clone = EMA(torch.nn.Linear(1, 1, bias=False), decay=0.9)
    clone.load_state_dict(ema.state_dict())
    assert int(clone.num_updates) == 30 and clone.module.weight.item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- Euler


@pytest.mark.parametrize("chunk_frames", [None, 3])
def test_euler_recovers_the_target_and_records_the_trajectory(chunk_frames):
    score = ScoreModel(KnowsX0())
    noise = torch.randn(2, 3, 6, 4, 4, generator=torch.Generator().manual_seed(0))
    out = euler_solve(score, noise, _text(2), num_steps=8, shift=3.0, chunk_frames=chunk_frames, record=(0, 2, 4))
    x0 = torch.full_like(noise, 0.5)
    assert torch.allclose(out.x0, x0, atol=1e-5)
    for i in (0, 2, 4):  # the exact flow keeps x on the straight path (1 - sigma) x0 + sigma eps
        s = float(out.grid[i])
        assert torch.allclose(out.trajectory[i], (1 - s) * x0 + s * noise, atol=1e-5), i


def test_euler_guidance_extrapolates_away_from_the_null_prompt():
    score = ScoreModel(KnowsX0())
    noise = torch.randn(1, 3, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    out = euler_solve(score, noise, _text(1, value=0.5), _text(1, value=0.0), guidance=1.0, num_steps=6)
    assert torch.allclose(out.x0, torch.full_like(noise, 1.0), atol=1e-5)  # c + g (c - u) = 0.5 + 0.5


# ---------------------------------------------------------------- conv teacher, bag of words


def test_conv_flow_net_round_trips_through_save_pretrained(tmp_path):
    torch.manual_seed(0)
    net = ConvFlowNet(in_channels=12, text_dim=8, width=8, cond_dim=16)
    for p in net.parameters():  # move off the zero initialisation so the output is informative
        p.data.normal_(0, 0.05)
    x = torch.randn(2, 12, 3, 4, 4)
    t, text = torch.tensor([[100.0, 500, 900], [0, 0, 1000]]), torch.randn(2, 1, 8)
    net.save_pretrained(tmp_path)
    loaded = ConvFlowNet.from_pretrained(tmp_path)
    assert torch.equal(net(x, t, text, return_dict=False)[0], loaded(x, t, text).sample)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    fresh = ConvFlowNet(in_channels=12, text_dim=8, width=8, cond_dim=16)
    assert fresh(x, t, text).sample.abs().max() == 0  # zero-initialised head


def test_bag_of_words_encoder():
    vocab = ["a", "red", "circle", "moving", "left", ",", "then", "up"]
    bag = BagOfWordsTextEncoder(vocab, embed_dim=10)
    emb = bag.encode(["A red circle moving left, then up", "", "red zebra"])
    assert emb.embeddings.shape == (3, 1, 10) and emb.mask.all()
    assert emb.embeddings[0, 0, :8].tolist() == [1.0] * 8 and emb.embeddings[0, 0, 8:].sum() == 0
    assert emb.embeddings[1].sum() == 0  # the null prompt
    assert emb.embeddings[2, 0].nonzero().flatten().tolist() == [1]
    words = BagOfWordsTextEncoder(vocab, embed_dim=10, per_word=True, max_length=4).encode(["red circle up", ""])
    assert words.embeddings.shape == (2, 4, 10)
    assert words.embeddings[0].argmax(-1)[:3].tolist() == [1, 2, 7] and words.mask[0].tolist() == [1, 1, 1, 0]
    assert words.embeddings[1].sum() == 0 and words.mask[1].tolist() == [1, 0, 0, 0]
    with pytest.raises(ValueError, match="smaller than the vocabulary"):
        BagOfWordsTextEncoder(vocab, embed_dim=4)
