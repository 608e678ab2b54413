"""Stream-T1's per-chunk rules (methods.md B.3, B.5, B.6) and the budget ledger, on hand-made values."""

from __future__ import annotations

import math

import pytest
import torch

from streamvid.core.kv_cache import EvictionPolicy
from streamvid.tts.ledger import BudgetLedger
from streamvid.tts.stream_t1_rules import (
    child_seed,
    fuse_scores,
    fusion_alpha,
    memory_flags,
    memory_route,
    propagate_noise,
)


def test_linear_noise_propagation_is_unit_variance_with_correlation_rho():
    g = torch.Generator().manual_seed(0)
    parent, eps = torch.randn(200_000, generator=g), torch.randn(200_000, generator=g)
    for rho in (-0.1, 0.5, 0.9):
        z = propagate_noise(parent, eps, rho)
        assert abs(float(z.var()) - 1.0) < 0.01
        assert abs(float(torch.corrcoef(torch.stack([z, parent]))[0, 1]) - rho) < 0.01
    assert propagate_noise(None, eps, -0.1) is eps  # chunk 0: z = eps
    # hand value: rho = 0.6 -> 0.6 * parent + 0.8 * eps
    assert torch.allclose(propagate_noise(torch.ones(2), torch.full((2,), 2.0), 0.6), torch.full((2,), 2.2))


def test_reference_child_zero_quirk_shrinks_the_noise():
    """Child 0 reusing the parent's seed (B.3): eps == parent, so z = (rho + sqrt(1 - rho^2)) eps, ~0.895 eps."""
    eps = torch.randn(50_000, generator=torch.Generator().manual_seed(1))
    z = propagate_noise(eps, eps, -0.1)
    assert torch.allclose(z, (-0.1 + math.sqrt(0.99)) * eps)
    assert child_seed(42, 2, 1, 0, parent_seed=7, reference_compat=True) == 7
    assert child_seed(42, 2, 1, 0) == 42 + 2000 + 100 + 0 != 7
    assert [child_seed(42, 0, 0, i) for i in range(4)] == [42, 43, 44, 45]


def test_slerp_keeps_the_norm_and_its_ends():
    g = torch.Generator().manual_seed(2)
    parent, eps = torch.randn(4096, generator=g), torch.randn(4096, generator=g)
    parent = parent / parent.norm() * eps.norm()
    for rho in (-0.5, 0.0, 0.3):
        z = propagate_noise(parent, eps, rho, mode="slerp")
        assert abs(float(z.norm() / eps.norm()) - 1.0) < 1e-4
    assert torch.allclose(propagate_noise(parent, eps, 0.0, mode="slerp"), eps, atol=1e-5)
    assert torch.allclose(propagate_noise(parent, eps, -1.0, mode="slerp"), -parent, atol=1e-4)
    with pytest.raises(ValueError):
        propagate_noise(parent, eps, 1.5)


def test_fusion_alpha_schedule():
    # F = 21 latent frames, chunks of 3: s = 0, 3, ..., 18 -> s / 18 capped at 0.4
    assert [round(fusion_alpha(s, 21), 4) for s in range(0, 21, 3)] == [0.0, 0.1667, 0.3333, 0.4, 0.4, 0.4, 0.4]
    assert fusion_alpha(0, 3) == 0.0  # one chunk: long-term only


def test_fuse_scores_raw_and_normalised():
    short, long = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 0.0, 5.0])
    assert torch.allclose(fuse_scores(short, long, 0.4), torch.tensor([6.4, 0.8, 4.2], dtype=torch.float64))
    z = fuse_scores(short, long, 0.4, normalise=True)
    # z-scored: short -> [-1, 0, 1]; long -> [1, -1, 0]
    assert torch.allclose(z, torch.tensor([0.2, -0.6, 0.4], dtype=torch.float64))
    assert torch.equal(fuse_scores(torch.tensor([3.0]), torch.tensor([2.0]), 0.4, normalise=True),
                       torch.zeros(1, dtype=torch.float64))


def test_memory_flags_on_hand_made_sequences():
    # short rises above the recent mean, long holds -> ema
    f = memory_flags(0.9, [0.5, 0.6], long_prev=1.0, long_now=0.95)
    assert f == {"short_high": True, "long_low": False, "ema": True, "append": False}
    # short rises and long drops by more than 0.2 (a semantic boundary) -> append
    f = memory_flags(0.9, [0.5, 0.6], long_prev=1.0, long_now=0.7)
    assert f["append"] and not f["ema"]
    # short below its mean -> neither
    f = memory_flags(0.4, [0.5, 0.6], long_prev=1.0, long_now=0.1)
    assert not f["ema"] and not f["append"] and f["long_low"]
    assert memory_flags(0.9, [], None, 1.0)["short_high"] is False  # chunk 0


def test_recent_window_versus_the_reference_all_history_average():
    history = [5.0] + [0.0] * 9  # an old high score, then 9 low ones
    # W = 10: the fixed rule averages the last 9 (all 0.0) -> 0.5 is high; the reference averages all 10 (0.5)
    assert memory_flags(0.5, history, 0.0, 0.0, window=10)["short_high"] is True
    assert memory_flags(0.5, history, 0.0, 0.0, window=10, reference_compat=True)["short_high"] is False


def test_memory_route():
    ema, append = {"ema": True, "append": False}, {"ema": False, "append": True}
    assert memory_route(ema, 3, 15) is EvictionPolicy.EMA_SINK
    assert memory_route(append, 12, 15) is EvictionPolicy.APPEND_SINK  # 12 + 3 <= 15
    assert memory_route(append, 15, 15) is EvictionPolicy.EMA_SINK  # sink full
    assert memory_route({"ema": False, "append": False}, 3, 15) is EvictionPolicy.DROP
    assert memory_route(None, 3, 15) is EvictionPolicy.DROP


def test_ledger_counts_a_known_schedule():
    """4 candidates x 4 steps + 4 commits per chunk, 3 chunks; 2 decodes and 4 reward calls per chunk."""
    ledger = BudgetLedger()
    for _ in range(3):
        for _ in range(4):
            ledger.forward("denoise", samples=4)
        ledger.forward("commit", samples=4)
        ledger.decode(2)
        with ledger.timed("reward"):
            ledger.reward("shapes_learned", 4)
    d = ledger.to_dict()
    assert d["nfe"] == 3 * (16 + 4) == 60 and d["forwards"] == {"denoise": 48, "commit": 12, "cfg": 0, "recache": 0}
    assert d["decodes"] == 6 and d["reward_calls"] == {"shapes_learned": 12}
    assert d["seconds"]["reward"] >= 0 and d["peak_rss_bytes"] > 0
    other = BudgetLedger()
    other.forward("cfg", 5)
    ledger.merge(other)
    assert ledger.nfe == 65
    with pytest.raises(ValueError):
        ledger.forward("bogus")
