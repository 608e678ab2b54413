"""Stream-R1 weights (methods.md A.3.1, A.4-A.6): the pure functions of `stream_r1_inter` / `stream_r1_intra`
against hand-computed values and invariants."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from streamvid.distill import stream_r1_inter as inter
from streamvid.distill import stream_r1_intra as intra

# A 2-frame, 2x2 saliency map used by several tests: frame 0 has mean 1, frame 1 has mean 3.
S2 = torch.tensor([[[[0.0, 1.0], [1.0, 2.0]], [[2.0, 3.0], [3.0, 4.0]]]])  # [B=1, F=2, H=2, W=2]


def close(a, b, atol=1e-6):
    torch.testing.assert_close(
        torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=atol, rtol=0
    )


# ---------------------------------------------------------------- rewards


def test_normalise_rewards_published_stats():
    norm = {"visual": (3.6757, 2.2476), "motion": (1.1646, 1.3811), "text": (2.8105, 2.5121)}  # VideoAlign's
    raw = {"visual": torch.tensor([8.1709]), "motion": torch.tensor([1.1646]), "text": torch.tensor([0.2984])}
    r = inter.normalise_rewards(raw, norm)
    close(r["visual"], [2.0], 1e-5)
    close(r["motion"], [0.0], 1e-5)
    close(r["text"], [-1.0], 1e-5)
    assert inter.normalise_rewards(raw, None) == raw
    with pytest.raises(ValueError, match="text"):
        inter.normalise_rewards(raw, {"visual": (0.0, 1.0), "motion": (0.0, 1.0)})


R = {"visual": torch.tensor([0.5, 1.0]), "motion": torch.tensor([-1.0, 0.0]), "text": torch.tensor([0.2, -0.4])}
ALL = ("visual", "motion", "text")


def test_base_reward_modes():
    assert torch.equal(inter.base_reward(R, ["motion"]), R["motion"])  # reward_mode MQ: that axis exactly
    close(inter.base_reward(R, ["visual"]), [0.5, 1.0])
    close(inter.base_reward(R, ALL), [-0.1, 0.2])  # Overall / BalancedOverall
    close(inter.base_reward(R, ["visual", "motion"]), [-0.25, 0.5])
    with pytest.raises(ValueError):
        inter.base_reward(R, [])
    with pytest.raises(KeyError):
        inter.base_reward(R, ["colour"])


def test_config_resolves_paper_names_to_axes():
    from streamvid.distill.dmd_config import StreamR1Config

    assert StreamR1Config().base_axes == ALL and StreamR1Config().saliency_axes == ("motion", "visual", "text")
    assert StreamR1Config(reward_mode="MQ").base_axes == ("motion",)
    assert StreamR1Config(reward_mode="Overall", reward_dims=["VQ", "TA"]).base_axes == ("visual", "text")
    assert inter.AXIS_OF == {"VQ": "visual", "MQ": "motion", "TA": "text"}
    assert tuple(inter.PAPER_NAME) == inter.AXES


def test_final_reward_and_inter_weight_per_sample():
    r_final = inter.final_reward(inter.base_reward(R, ALL), 1.0, 0.5)
    close(r_final, [-0.6, -0.3])
    w = inter.inter_weight(r_final, 2.0)
    close(w, [math.exp(-1.2), math.exp(-0.6)])  # 0.301194, 0.548812
    assert w[0] != w[1]
    close(inter.final_reward(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 2.0]), 0.5), [1.0, 0.0])
    assert not inter.inter_weight(torch.tensor([0.3], requires_grad=True), 2.0).requires_grad


def feed(bp, rows):
    return [bp.update(*row) for row in rows]


def test_balance_penalty_hand_computed():
    bp = inter.BalancePenalty(window=6, warmup=4)
    rows = [(0, 0, 1), (0, 0, 1), (1, 0, 0), (1, 0, 0)]
    ps = feed(bp, rows)
    assert ps[:3] == [0.0, 0.0, 0.0]  # warm-up
    # deltas (1, 0, -1): early [0,0] / recent [1,1] etc.; unbiased std = sqrt(2/2) = 1
    assert ps[3] == pytest.approx(1.0, abs=1e-12)
    # len 5: early = first 2, recent = last 3; deltas (1, 2/3, -1) -> sqrt(93)/9
    assert bp.update(1, 2, 0) == pytest.approx(math.sqrt(93) / 9, abs=1e-12)
    bp.update(1, 2, 0)
    # 7 calls, window 6 drops the first row: VQ [0,1,1,1,1,1], MQ [0,0,0,2,2,2], TA [1,0,0,0,0,0]
    # deltas (1/3, 2, -1/3) -> sqrt(13)/3
    assert bp.update(1, 2, 0) == pytest.approx(math.sqrt(13) / 3, abs=1e-12)
    assert [len(h) for h in bp.history.values()] == [6, 6, 6]
    assert bp.n == 7


def test_balance_penalty_needs_four_entries_and_warmup():
    bp = inter.BalancePenalty(window=50, warmup=0)
    assert feed(bp, [(0, 0, 1), (1, 0, 0), (2, 0, 0)]) == [0.0, 0.0, 0.0]  # < 4 entries
    assert bp.update(3, 0, 0) > 0
    bp = inter.BalancePenalty()  # shipped 50 / 50
    g = torch.Generator().manual_seed(0)
    ps = feed(bp, torch.randn(60, 3, generator=g).tolist())
    assert ps[:49] == [0.0] * 49 and ps[49] > 0
    # equal improvement on every axis -> no penalty
    bp = inter.BalancePenalty(window=10, warmup=4)
    assert feed(bp, [(t, t + 1.0, t - 2.0) for t in range(8)])[-1] == pytest.approx(0.0, abs=1e-12)


def test_balance_penalty_batch_equals_sequential():
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(12, 3, generator=g)
    seq = inter.BalancePenalty(window=8, warmup=5)
    expected = feed(seq, rows.tolist())
    bat = inter.BalancePenalty(window=8, warmup=5)
    got = torch.cat([bat.update_batch(dict(zip(ALL, rows[i : i + 3].T, strict=True))) for i in (0, 3, 6, 9)])
    assert got.dtype == torch.float64 and got.tolist() == expected  # float64, as the sequential updates
    assert bat.state_dict() == seq.state_dict()


def test_balance_penalty_batch_skips_invalid_samples():
    """An invalid sample (non-finite reward) gets P = 0 and stays out of the history, which a NaN would poison."""
    g = torch.Generator().manual_seed(9)
    rows = torch.randn(10, 3, generator=g)
    rows[3, 1] = float("nan")
    valid = torch.isfinite(rows).all(1)
    seq = inter.BalancePenalty(window=8, warmup=2)
    expected = [seq.update(*row) if ok else 0.0 for row, ok in zip(rows.tolist(), valid.tolist(), strict=True)]
    bat = inter.BalancePenalty(window=8, warmup=2)
    got = bat.update_batch(dict(zip(ALL, rows.T, strict=True)), valid)
    assert got.tolist() == expected and got[3] == 0.0 and bat.n == 9
    assert all(math.isfinite(v) for h in bat.history.values() for v in h)


def test_balance_penalty_state_dict_round_trip():
    g = torch.Generator().manual_seed(2)
    rows = torch.randn(90, 3, generator=g).tolist()
    a = inter.BalancePenalty(window=20, warmup=10)
    feed(a, rows[:70])
    state = pickle.loads(pickle.dumps(a.state_dict()))
    assert isinstance(state["history"]["visual"], list) and isinstance(state["n"], int)
    b = inter.BalancePenalty(window=20, warmup=10)
    b.load_state_dict(state)
    # a state saved before the axes were renamed (paper keys VQ / MQ / TA and the unused lam) loads the same
    old = inter.BalancePenalty(window=20, warmup=10)
    old.load_state_dict({**state, "lam": 0.5, "history": {inter.PAPER_NAME[k]: v for k, v in state["history"].items()}})
    assert old.state_dict() == b.state_dict()
    assert feed(b, rows[70:]) == feed(a, rows[70:])
    with pytest.raises(ValueError, match="window"):
        inter.BalancePenalty(window=50, warmup=10).load_state_dict(state)


# ---------------------------------------------------------------- fusion


def test_fusion_weights_hand_computed():
    r = torch.tensor([[-1.0, 0.5, 0.2]])  # [motion, visual, text] (the reference's MQ, VQ, TA)
    # softmax([1, -0.5, -0.2]) = [e, e^-0.5, e^-0.2] / 4.1435432
    close(intra.fusion_weights(r, 1.0), [[0.656027, 0.146379, 0.197593]], atol=1e-5)
    # T = 2: softmax([0.5, -0.25, -0.1])
    close(intra.fusion_weights(r, 2.0), [[0.494761, 0.233709, 0.271531]], atol=1e-5)


def test_fusion_weights_monotone_in_reward():
    g = torch.Generator().manual_seed(3)
    r = torch.randn(5, 3, generator=g)
    a = intra.fusion_weights(r, 0.7)
    close(a.sum(-1), torch.ones(5))
    assert torch.equal(torch.argsort(r, dim=1), torch.argsort(-a, dim=1))


def test_fuse_saliency_modes():
    maps = torch.tensor([[1.0, 3.0], [2.0, 0.0]]).reshape(1, 2, 1, 1, 2)  # [B, M, F, H, W]
    a = torch.tensor([[0.25, 0.75]])
    close(intra.fuse_saliency(maps, a, "adaptive"), torch.tensor([1.75, 0.75]).reshape(1, 1, 1, 2))
    close(intra.fuse_saliency(maps, None, "mean"), torch.tensor([1.5, 1.5]).reshape(1, 1, 1, 2))
    close(intra.fuse_saliency(maps, None, "max"), torch.tensor([2.0, 3.0]).reshape(1, 1, 1, 2))
    with pytest.raises(ValueError):
        intra.fuse_saliency(maps, None, "adaptive")


# ---------------------------------------------------------------- temporal / spatial factors


def test_temporal_factor_hand_computed():
    # frame means p = [1, 3] -> p_hat = [0, 1]; k=1: [0, 1] -> floor 0.2 -> [0.2, 1] / 0.6
    close(intra.temporal_factor(S2, 1.0, 0.2), [[1 / 3, 5 / 3]])
    # k=0.5: [0.5, 1] / 0.75
    close(intra.temporal_factor(S2, 0.5, 0.2), [[2 / 3, 4 / 3]])
    # three frames with means [1, 2, 5] -> p_hat [0, .25, 1] -> [.2, .25, 1] / (1.45/3) = [12, 15, 60] / 29
    S3 = torch.tensor([1.0, 2.0, 5.0]).reshape(1, 3, 1, 1).expand(1, 3, 2, 2)
    close(intra.temporal_factor(S3, 1.0, 0.2), [[12 / 29, 15 / 29, 60 / 29]])


def test_spatial_factor_hand_computed():
    # each frame min-max -> [[0, .5], [.5, 1]] -> floor .15 -> [.15, .5, .5, 1] / .5375 = [12, 40, 40, 80] / 43
    frame = torch.tensor([[12.0, 40.0], [40.0, 80.0]]) / 43
    close(intra.spatial_factor(S2, 1.0, 0.15), torch.stack([frame, frame])[None])


def test_global_spatial_factor_hand_computed():
    # global min 0, max 4 -> S/4 -> floor .15 -> mean 4.15/8 -> [24, 40, 40, 80 | 80, 120, 120, 160] / 83
    expected = torch.tensor([[[24.0, 40.0], [40.0, 80.0]], [[80.0, 120.0], [120.0, 160.0]]])[None] / 83
    close(intra.global_spatial_factor(S2, 1.0, 0.15), expected)
    close(intra.intra_weight(S2, False, 1.0, 0.2, 1.0, 0.15), expected)


def test_intra_weight_hand_computed():
    # W = w_t[f] * w_s = [1/3, 5/3][f] * [12, 40, 40, 80] / 43; mean(W) is already 1
    frame = torch.tensor([[12.0, 40.0], [40.0, 80.0]]) / 43
    expected = torch.stack([frame / 3, frame * 5 / 3])[None]
    W = intra.intra_weight(S2, True, 1.0, 0.2, 1.0, 0.15)
    close(W, expected)
    close(W.mean(), 1.0)


def test_flat_and_all_off_give_ones():
    g = torch.Generator().manual_seed(4)
    S = torch.rand(2, 3, 4, 5, generator=g)
    for temporal in (True, False):
        assert torch.equal(intra.intra_weight(S, temporal, 0.0, 0.2, 0.0, 0.15), torch.ones_like(S))
    flat = torch.full((2, 3, 4, 5), 0.7)
    assert torch.equal(intra.temporal_factor(flat, 1.0, 0.2), torch.ones(2, 3))
    assert torch.equal(intra.spatial_factor(flat, 1.0, 0.15), torch.ones_like(flat))
    assert torch.equal(intra.intra_weight(flat, True, 1.0, 0.2, 1.0, 0.15), torch.ones_like(flat))
    assert torch.equal(intra.intra_weight(flat, False, 1.0, 0.2, 1.0, 0.15), torch.ones_like(flat))
    zeros = torch.zeros(1, 2, 3, 3)  # a zero gradient everywhere is flat too
    assert torch.equal(intra.intra_weight(zeros, True, 1.0, 0.2, 1.0, 0.15), torch.ones_like(zeros))


def test_mean_one_and_floors():
    g = torch.Generator().manual_seed(5)
    S = torch.rand(3, 4, 6, 7, generator=g) ** 4  # spiky, many values below the floors
    w_t = intra.temporal_factor(S, 1.0, 0.2)
    w_s = intra.spatial_factor(S, 1.0, 0.15)
    close(w_t.mean(-1), torch.ones(3))
    close(w_s.mean((-2, -1)), torch.ones(3, 4))
    # before renormalisation the max is 1 (k=1) and the min is the floor: min/max == floor
    close(w_s.amin((-2, -1)) / w_s.amax((-2, -1)), torch.full((3, 4), 0.15))
    assert (w_t.amin(-1) / w_t.amax(-1) >= 0.2 - 1e-6).all()
    for temporal in (True, False):
        W = intra.intra_weight(S, temporal, 1.0, 0.2, 1.0, 0.15)
        close(W.mean((1, 2, 3)), torch.ones(3))
        assert (W > 0).all()


def test_blur_example_increasing_temporal_weight():
    # saliency concentrated in the lower half and growing over 4 frames (the page's blur stress test)
    g = torch.Generator().manual_seed(6)
    base = torch.rand(8, 8, generator=g) * 0.1
    frames = []
    for f in range(4):
        m = base.clone()
        m[4:] += 0.5 * (f + 1)
        frames.append(m)
    w_t = intra.temporal_factor(torch.stack(frames)[None], 1.0, 0.2)
    assert (w_t[0, 1:] > w_t[0, :-1]).all()
    assert w_t[0, 0] < 1 < w_t[0, -1]


# ---------------------------------------------------------------- latent grid


def test_latent_frame_groups():
    assert intra.latent_frame_groups(3, 3) == [range(0, 1), range(1, 2), range(2, 3)]
    groups = intra.latent_frame_groups(81, 21)
    assert groups[0] == range(0, 1) and groups[1] == range(1, 5) and groups[-1] == range(77, 81)
    assert [t for g in groups for t in g] == list(range(81))
    assert intra.latent_frame_groups(3, 2, temporal_ratio=2) == [range(0, 1), range(1, 3)]
    for T, Fl, ratio in ((6, 2, None), (5, 2, 2), (4, 3, None)):
        with pytest.raises(ValueError):
            intra.latent_frame_groups(T, Fl, ratio)


def test_pool_to_latent_wan_hand_computed():
    base = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    W = torch.stack([(t + 1) * base for t in range(5)])[None]  # [1, T=5, 2, 4]
    # latent 0 <- frame 0: blocks [1,2,5,6], [3,4,7,8] -> [3.5, 5.5]; latent 1 <- frames 1..4 (x3.5 mean scale)
    pooled = intra.pool_frames_to_latent(W, 2, 1, 2)
    close(pooled, torch.tensor([[[[3.5, 5.5]], [[12.25, 19.25]]]]))
    out = intra.pool_to_latent(W, 2, 1, 2)  # / mean 10.125
    assert out.shape == (1, 2, 1, 1, 2)
    close(out, torch.tensor([28.0, 44.0, 98.0, 154.0]).reshape(1, 2, 1, 1, 2) / 81)
    close(out.mean(), 1.0)


def test_pool_pixel_codec_and_rms():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]]).reshape(1, 1, 2, 2)
    close(intra.pool_frames_to_latent(x, 1, 1, 1, how="mean"), [[[[1.75]]]])
    close(intra.pool_frames_to_latent(x, 1, 1, 1, how="rms"), [[[[2.5]]]])  # sqrt((9 + 16) / 4)
    g = torch.Generator().manual_seed(7)
    W = intra.intra_weight(torch.rand(2, 3, 4, 4, generator=g), True, 1.0, 0.2, 1.0, 0.15)
    # already on the latent grid: only the reshape (mean is already 1)
    close(intra.pool_to_latent(W, 3, 4, 4), W.unsqueeze(2))


def test_weight_stats():
    stats = intra.weight_stats(torch.tensor([1.0, 2.0, 3.0]), prefix="temporal_sal_weight")
    assert stats == pytest.approx(
        {"temporal_sal_weight_min": 1.0, "temporal_sal_weight_max": 3.0, "temporal_sal_weight_std": 1.0}
    )


def test_end_to_end_shapes():
    g = torch.Generator().manual_seed(8)
    B, T, H, Wd = 2, 9, 16, 24  # Wan-style: 3 latent frames, spatial ratio 8
    maps = {axis: torch.rand(B, T, H, Wd, generator=g) for axis in ("visual", "motion", "text")}
    rewards = {axis: torch.randn(B, generator=g) for axis in ("visual", "motion", "text")}
    order = ("motion", "visual", "text")
    a = intra.fusion_weights(intra.stack_rewards(rewards, order), 1.0)
    assert torch.equal(a[:, 0], torch.softmax(-intra.stack_rewards(rewards, order), -1)[:, 0])
    S = intra.fuse_saliency(intra.stack_saliency(maps, order), a)
    assert S.shape == (B, T, H, Wd)
    W = intra.intra_weight(intra.pool_frames_to_latent(S, 3, 2, 3, how="rms"), True, 1.0, 0.2, 1.0, 0.15).unsqueeze(
        2
    )
    assert W.shape == (B, 3, 1, 2, 3)
    close(W.mean((1, 2, 3, 4)), torch.ones(B))
