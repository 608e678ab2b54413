"""Stream-R1 weights (methods.md A.3.1, A.4-A.6) against hand-computed values and invariants."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from streamvid.distill import stream_r1_weights as sr

# A 2-frame, 2x2 saliency map used by several tests: frame 0 has mean 1, frame 1 has mean 3.
S2 = torch.tensor([[[[0.0, 1.0], [1.0, 2.0]], [[2.0, 3.0], [3.0, 4.0]]]])  # [B=1, F=2, H=2, W=2]


def close(a, b, atol=1e-6):
    torch.testing.assert_close(
        torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=atol, rtol=0
    )


# ---------------------------------------------------------------- rewards


def test_normalise_rewards_published_stats():
    norm = {"VQ": (3.6757, 2.2476), "MQ": (1.1646, 1.3811), "TA": (2.8105, 2.5121)}
    raw = {"VQ": torch.tensor([8.1709]), "MQ": torch.tensor([1.1646]), "TA": torch.tensor([0.2984])}
    r = sr.normalise_rewards(raw, norm)
    close(r["VQ"], [2.0], 1e-5)
    close(r["MQ"], [0.0], 1e-5)
    close(r["TA"], [-1.0], 1e-5)
    assert sr.normalise_rewards(raw, None) == raw
    with pytest.raises(ValueError, match="TA"):
        sr.normalise_rewards(raw, {"VQ": (0.0, 1.0), "MQ": (0.0, 1.0)})


R = {"VQ": torch.tensor([0.5, 1.0]), "MQ": torch.tensor([-1.0, 0.0]), "TA": torch.tensor([0.2, -0.4])}


def test_base_reward_modes():
    close(sr.base_reward(R, "MQ"), [-1.0, 0.0])
    close(sr.base_reward(R, "VQ"), [0.5, 1.0])
    close(sr.base_reward(R, "TA"), [0.2, -0.4])
    close(sr.base_reward(R, "Overall"), [-0.1, 0.2])
    close(sr.base_reward(R, "BalancedOverall"), [-0.1, 0.2])
    close(sr.base_reward(R, "Overall", dims=["VQ", "MQ"]), [-0.25, 0.5])
    by_axis = {sr.AXIS_OF[k]: v for k, v in R.items()}  # RewardOutput.axes naming
    close(sr.base_reward(by_axis, "BalancedOverall"), [-0.1, 0.2])
    with pytest.raises(ValueError):
        sr.base_reward(R, "Sum")


def test_final_reward_and_inter_weight_per_sample():
    r_final = sr.final_reward(sr.base_reward(R, "BalancedOverall"), 1.0, 0.5)
    close(r_final, [-0.6, -0.3])
    w = sr.inter_weight(r_final, 2.0)
    close(w, [math.exp(-1.2), math.exp(-0.6)])  # 0.301194, 0.548812
    assert w[0] != w[1]
    close(sr.final_reward(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 2.0]), 0.5), [1.0, 0.0])
    assert not sr.inter_weight(torch.tensor([0.3], requires_grad=True), 2.0).requires_grad


def feed(bp, rows):
    return [bp.update(*row) for row in rows]


def test_balance_penalty_hand_computed():
    bp = sr.BalancePenalty(window=6, warmup=4)
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
    bp = sr.BalancePenalty(window=50, warmup=0)
    assert feed(bp, [(0, 0, 1), (1, 0, 0), (2, 0, 0)]) == [0.0, 0.0, 0.0]  # < 4 entries
    assert bp.update(3, 0, 0) > 0
    bp = sr.BalancePenalty()  # shipped 50 / 50
    g = torch.Generator().manual_seed(0)
    ps = feed(bp, torch.randn(60, 3, generator=g).tolist())
    assert ps[:49] == [0.0] * 49 and ps[49] > 0
    # equal improvement on every axis -> no penalty
    bp = sr.BalancePenalty(window=10, warmup=4)
    assert feed(bp, [(t, t + 1.0, t - 2.0) for t in range(8)])[-1] == pytest.approx(0.0, abs=1e-12)


def test_balance_penalty_batch_equals_sequential():
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(12, 3, generator=g)
    seq = sr.BalancePenalty(window=8, warmup=5)
    expected = feed(seq, rows.tolist())
    bat = sr.BalancePenalty(window=8, warmup=5)
    got = torch.cat(
        [bat.update_batch(rows[i : i + 3, 0], rows[i : i + 3, 1], rows[i : i + 3, 2]) for i in (0, 3, 6, 9)]
    )
    close(got, expected)
    assert bat.state_dict() == seq.state_dict()


def test_balance_penalty_state_dict_round_trip():
    g = torch.Generator().manual_seed(2)
    rows = torch.randn(90, 3, generator=g).tolist()
    a = sr.BalancePenalty(window=20, warmup=10)
    feed(a, rows[:70])
    state = pickle.loads(pickle.dumps(a.state_dict()))
    assert isinstance(state["history"]["VQ"], list) and isinstance(state["n"], int)
    b = sr.BalancePenalty(window=20, warmup=10)
    b.load_state_dict(state)
    assert feed(b, rows[70:]) == feed(a, rows[70:])
    with pytest.raises(ValueError, match="window"):
        sr.BalancePenalty(window=50, warmup=10).load_state_dict(state)


# ---------------------------------------------------------------- fusion


def test_fusion_weights_hand_computed():
    r = torch.tensor([[-1.0, 0.5, 0.2]])  # [MQ, VQ, TA]
    # softmax([1, -0.5, -0.2]) = [e, e^-0.5, e^-0.2] / 4.1435432
    close(sr.fusion_weights(r, 1.0), [[0.656027, 0.146379, 0.197593]], atol=1e-5)
    # T = 2: softmax([0.5, -0.25, -0.1])
    close(sr.fusion_weights(r, 2.0), [[0.494761, 0.233709, 0.271531]], atol=1e-5)


def test_fusion_weights_monotone_in_reward():
    g = torch.Generator().manual_seed(3)
    r = torch.randn(5, 3, generator=g)
    a = sr.fusion_weights(r, 0.7)
    close(a.sum(-1), torch.ones(5))
    assert torch.equal(torch.argsort(r, dim=1), torch.argsort(-a, dim=1))


def test_fuse_saliency_modes():
    maps = torch.tensor([[1.0, 3.0], [2.0, 0.0]]).reshape(1, 2, 1, 1, 2)  # [B, M, F, H, W]
    a = torch.tensor([[0.25, 0.75]])
    close(sr.fuse_saliency(maps, a, "adaptive"), torch.tensor([1.75, 0.75]).reshape(1, 1, 1, 2))
    close(sr.fuse_saliency(maps, None, "mean"), torch.tensor([1.5, 1.5]).reshape(1, 1, 1, 2))
    close(sr.fuse_saliency(maps, None, "max"), torch.tensor([2.0, 3.0]).reshape(1, 1, 1, 2))
    with pytest.raises(ValueError):
        sr.fuse_saliency(maps, None, "adaptive")


# ---------------------------------------------------------------- temporal / spatial factors


def test_temporal_factor_hand_computed():
    # frame means p = [1, 3] -> p_hat = [0, 1]; k=1: [0, 1] -> floor 0.2 -> [0.2, 1] / 0.6
    close(sr.temporal_factor(S2, 1.0, 0.2), [[1 / 3, 5 / 3]])
    # k=0.5: [0.5, 1] / 0.75
    close(sr.temporal_factor(S2, 0.5, 0.2), [[2 / 3, 4 / 3]])
    # three frames with means [1, 2, 5] -> p_hat [0, .25, 1] -> [.2, .25, 1] / (1.45/3) = [12, 15, 60] / 29
    S3 = torch.tensor([1.0, 2.0, 5.0]).reshape(1, 3, 1, 1).expand(1, 3, 2, 2)
    close(sr.temporal_factor(S3, 1.0, 0.2), [[12 / 29, 15 / 29, 60 / 29]])


def test_spatial_factor_hand_computed():
    # each frame min-max -> [[0, .5], [.5, 1]] -> floor .15 -> [.15, .5, .5, 1] / .5375 = [12, 40, 40, 80] / 43
    frame = torch.tensor([[12.0, 40.0], [40.0, 80.0]]) / 43
    close(sr.spatial_factor(S2, 1.0, 0.15), torch.stack([frame, frame])[None])


def test_global_spatial_factor_hand_computed():
    # global min 0, max 4 -> S/4 -> floor .15 -> mean 4.15/8 -> [24, 40, 40, 80 | 80, 120, 120, 160] / 83
    expected = torch.tensor([[[24.0, 40.0], [40.0, 80.0]], [[80.0, 120.0], [120.0, 160.0]]])[None] / 83
    close(sr.global_spatial_factor(S2, 1.0, 0.15), expected)
    close(sr.intra_weight(S2, False, 1.0, 0.2, 1.0, 0.15), expected)


def test_intra_weight_hand_computed():
    # W = w_t[f] * w_s = [1/3, 5/3][f] * [12, 40, 40, 80] / 43; mean(W) is already 1
    frame = torch.tensor([[12.0, 40.0], [40.0, 80.0]]) / 43
    expected = torch.stack([frame / 3, frame * 5 / 3])[None]
    W = sr.intra_weight(S2, True, 1.0, 0.2, 1.0, 0.15)
    close(W, expected)
    close(W.mean(), 1.0)


def test_flat_and_all_off_give_ones():
    g = torch.Generator().manual_seed(4)
    S = torch.rand(2, 3, 4, 5, generator=g)
    for temporal in (True, False):
        assert torch.equal(sr.intra_weight(S, temporal, 0.0, 0.2, 0.0, 0.15), torch.ones_like(S))
    flat = torch.full((2, 3, 4, 5), 0.7)
    assert torch.equal(sr.temporal_factor(flat, 1.0, 0.2), torch.ones(2, 3))
    assert torch.equal(sr.spatial_factor(flat, 1.0, 0.15), torch.ones_like(flat))
    assert torch.equal(sr.intra_weight(flat, True, 1.0, 0.2, 1.0, 0.15), torch.ones_like(flat))
    assert torch.equal(sr.intra_weight(flat, False, 1.0, 0.2, 1.0, 0.15), torch.ones_like(flat))
    zeros = torch.zeros(1, 2, 3, 3)  # a zero gradient everywhere is flat too
    assert torch.equal(sr.intra_weight(zeros, True, 1.0, 0.2, 1.0, 0.15), torch.ones_like(zeros))


def test_mean_one_and_floors():
    g = torch.Generator().manual_seed(5)
    S = torch.rand(3, 4, 6, 7, generator=g) ** 4  # spiky, many values below the floors
    w_t = sr.temporal_factor(S, 1.0, 0.2)
    w_s = sr.spatial_factor(S, 1.0, 0.15)
    close(w_t.mean(-1), torch.ones(3))
    close(w_s.mean((-2, -1)), torch.ones(3, 4))
    # before renormalisation the max is 1 (k=1) and the min is the floor: min/max == floor
    close(w_s.amin((-2, -1)) / w_s.amax((-2, -1)), torch.full((3, 4), 0.15))
    assert (w_t.amin(-1) / w_t.amax(-1) >= 0.2 - 1e-6).all()
    for temporal in (True, False):
        W = sr.intra_weight(S, temporal, 1.0, 0.2, 1.0, 0.15)
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
    w_t = sr.temporal_factor(torch.stack(frames)[None], 1.0, 0.2)
    assert (w_t[0, 1:] > w_t[0, :-1]).all()
    assert w_t[0, 0] < 1 < w_t[0, -1]


# ---------------------------------------------------------------- latent grid


def test_latent_frame_groups():
    assert sr.latent_frame_groups(3, 3) == [range(0, 1), range(1, 2), range(2, 3)]
    groups = sr.latent_frame_groups(81, 21)
    assert groups[0] == range(0, 1) and groups[1] == range(1, 5) and groups[-1] == range(77, 81)
    assert [t for g in groups for t in g] == list(range(81))
    assert sr.latent_frame_groups(3, 2, temporal_ratio=2) == [range(0, 1), range(1, 3)]
    for T, Fl, ratio in ((6, 2, None), (5, 2, 2), (4, 3, None)):
        with pytest.raises(ValueError):
            sr.latent_frame_groups(T, Fl, ratio)


def test_pool_to_latent_wan_hand_computed():
    base = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    W = torch.stack([(t + 1) * base for t in range(5)])[None]  # [1, T=5, 2, 4]
    # latent 0 <- frame 0: blocks [1,2,5,6], [3,4,7,8] -> [3.5, 5.5]; latent 1 <- frames 1..4 (x3.5 mean scale)
    pooled = sr.pool_frames_to_latent(W, 2, 1, 2)
    close(pooled, torch.tensor([[[[3.5, 5.5]], [[12.25, 19.25]]]]))
    out = sr.pool_to_latent(W, 2, 1, 2)  # / mean 10.125
    assert out.shape == (1, 2, 1, 1, 2)
    close(out, torch.tensor([28.0, 44.0, 98.0, 154.0]).reshape(1, 2, 1, 1, 2) / 81)
    close(out.mean(), 1.0)


def test_pool_pixel_codec_and_rms():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]]).reshape(1, 1, 2, 2)
    close(sr.pool_frames_to_latent(x, 1, 1, 1, how="mean"), [[[[1.75]]]])
    close(sr.pool_frames_to_latent(x, 1, 1, 1, how="rms"), [[[[2.5]]]])  # sqrt((9 + 16) / 4)
    g = torch.Generator().manual_seed(7)
    W = sr.intra_weight(torch.rand(2, 3, 4, 4, generator=g), True, 1.0, 0.2, 1.0, 0.15)
    # already on the latent grid: only the reshape (mean is already 1)
    close(sr.pool_to_latent(W, 3, 4, 4), W.unsqueeze(2))


def test_weight_stats():
    stats = sr.weight_stats(torch.tensor([1.0, 2.0, 3.0]), prefix="temporal_sal_weight")
    assert stats == pytest.approx(
        {"temporal_sal_weight_min": 1.0, "temporal_sal_weight_max": 3.0, "temporal_sal_weight_std": 1.0}
    )


def test_end_to_end_shapes():
    g = torch.Generator().manual_seed(8)
    B, T, H, Wd = 2, 9, 16, 24  # Wan-style: 3 latent frames, spatial ratio 8
    maps = {axis: torch.rand(B, T, H, Wd, generator=g) for axis in ("visual", "motion", "text")}
    rewards = {axis: torch.randn(B, generator=g) for axis in ("visual", "motion", "text")}
    a = sr.fusion_weights(sr.stack_rewards(rewards), 1.0)
    assert torch.equal(a[:, 0], torch.softmax(-sr.stack_rewards(rewards), -1)[:, 0])
    S = sr.fuse_saliency(sr.stack_saliency(maps), a)
    assert S.shape == (B, T, H, Wd)
    W = sr.intra_weight(sr.pool_frames_to_latent(S, 3, 2, 3, how="rms"), True, 1.0, 0.2, 1.0, 0.15).unsqueeze(
        2
    )
    assert W.shape == (B, 3, 1, 2, 3)
    close(W.mean((1, 2, 3, 4)), torch.ones(B))
