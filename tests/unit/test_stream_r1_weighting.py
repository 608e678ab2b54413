"""`StreamR1Weighting`, the one composition of Stream-R1's weights (methods.md A.4-A.6): it equals the pure
functions applied step by step, feeds the balance penalty once per valid sample in float64 (A.5), keeps invalid
samples at weight 1, and saves / restores its penalty state."""

from __future__ import annotations

import math

import pytest
import torch

from streamvid.distill import stream_r1_inter as inter
from streamvid.distill import stream_r1_intra as intra
from streamvid.distill.dmd_config import StreamR1Config
from streamvid.distill.stream_r1_weighting import StreamR1Weighting

NORM = {"visual": [0.2, 0.25], "motion": [0.3, 0.1], "text": [0.8, 0.3]}
LATENT = (3, 4, 2, 4, 6)  # [B, F, C, h, w]; pixel frames T = F (pixel codec), pixels 8 x 12


def _batch(seed: int, b: int = 3):
    g = torch.Generator().manual_seed(seed)
    axes = {a: torch.rand(b, generator=g) for a in inter.AXES}
    maps = {a: torch.rand(b, 4, 8, 12, generator=g) for a in inter.AXES}
    return axes, maps


def _cfg(**kw) -> StreamR1Config:
    return StreamR1Config(reward_norm=NORM, reward_balance_window=4, reward_balance_warmup=2, **kw)


def test_weighting_equals_the_pure_functions_step_by_step():
    """Three batches (the penalty turns on in the second): inter and intra equal the A.4-A.6 pipeline written
    out with the pure functions, the penalty in float64."""
    weighting, penalty = StreamR1Weighting(_cfg()), inter.BalancePenalty(4, 2)
    for seed in range(3):
        axes, maps = _batch(seed)
        out = weighting(axes, maps, LATENT)
        r = inter.normalise_rewards({k: v.double() for k, v in axes.items()}, {k: tuple(v) for k, v in NORM.items()})
        P = torch.tensor([penalty.update(r["visual"][i], r["motion"][i], r["text"][i]) for i in range(3)],
                         dtype=torch.float64)
        w_inter = inter.inter_weight(inter.final_reward(inter.base_reward(r, inter.AXES), P, 0.5), 2.0).float()
        order = ("motion", "visual", "text")
        S = intra.fuse_saliency(intra.stack_saliency(maps, order).double(),
                                intra.fusion_weights(intra.stack_rewards(r, order), 1.0))
        W = intra.intra_weight(intra.pool_frames_to_latent(S, 4, 4, 6, how="rms"), True, 1.0, 0.2, 1.0, 0.15)
        assert torch.equal(out.inter, w_inter)
        assert torch.equal(out.intra, W.unsqueeze(2))
        assert out.logs["reward_balance_penalty"] == pytest.approx(float(P.mean()), abs=0)
        assert out.per_sample["reward_weight"] == pytest.approx(out.inter.tolist(), rel=1e-6)  # float64 there
    assert P.abs().sum() > 0 and weighting.state_dict() == penalty.state_dict()


def test_penalty_is_float64_as_the_sequential_update():
    """The notebook used `update_batch`, which returned float32 penalties, while the module looped over `update`
    (float64, methods.md A.5 as implemented here: python floats). One call now: the float64 value."""
    weighting = StreamR1Weighting(_cfg(spatial_reward=False))
    for seed in range(3):
        axes, _ = _batch(seed)
        out = weighting(axes, None, LATENT)
    P = torch.tensor(out.per_sample["reward_final"], dtype=torch.float64)
    r = inter.normalise_rewards({k: v.double() for k, v in axes.items()}, {k: tuple(v) for k, v in NORM.items()})
    penalty = (inter.base_reward(r, inter.AXES) - P) / 0.5
    assert penalty.dtype == torch.float64 and bool((penalty > 0).all())
    assert not torch.equal(penalty, penalty.float().double())  # float32 rounding would have changed it


def test_invalid_samples_keep_weight_one_and_stay_out_of_the_history():
    weighting = StreamR1Weighting(_cfg())
    axes, maps = _batch(4)
    axes["motion"] = axes["motion"] * torch.tensor([1.0, float("nan"), 1.0])
    out = weighting(axes, maps, LATENT)
    assert out.valid.tolist() == [True, False, True]
    assert out.inter[1] == 1.0 and torch.equal(out.intra[1], torch.ones_like(out.intra[1]))
    assert weighting.penalty.n == 2 and math.isfinite(out.logs["reward_mq"])


def test_switches_and_state_round_trip():
    axes, maps = _batch(5)
    off = StreamR1Weighting(_cfg(reward_weighting=False))(axes, maps, LATENT)
    assert off.inter is None and off.per_sample == {} and off.intra.shape == (3, 4, 1, 4, 6)
    assert StreamR1Weighting(_cfg())(axes, None, LATENT).intra is None  # no maps (saliency failed): no intra
    mq = StreamR1Weighting(_cfg(reward_mode="MQ", spatial_reward=False))
    out = mq(axes, None, LATENT)
    assert torch.allclose(out.inter.double(), torch.exp(2.0 * (axes["motion"].double() - 0.3) / 0.1).float().double())
    assert mq.penalty.n == 0  # no balance penalty outside BalancedOverall
    a = StreamR1Weighting(_cfg())
    for seed in range(3):
        a(*_batch(seed), LATENT)
    b = StreamR1Weighting(_cfg())
    b.load_state_dict(a.state_dict())
    x, y = a(*_batch(9), LATENT), b(*_batch(9), LATENT)
    assert torch.equal(x.inter, y.inter) and torch.equal(x.intra, y.intra)
