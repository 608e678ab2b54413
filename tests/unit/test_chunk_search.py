"""Stream-T1 chunk search on a tiny random student: candidates are reproducible from their seeds, the ledger
counts the known schedule, memory routes follow the flags, and failing rewards drop candidates or stop the
search with what it produced."""

from __future__ import annotations

import math

import pytest
import torch

from streamvid.core.causal_wan import CausalWanModel
from streamvid.core.codecs import PixelCodec
from streamvid.core.kv_cache import CacheLayout
from streamvid.core.rewards.base import RewardOutput
from streamvid.core.sampler import StreamingSampler
from streamvid.core.sampler_config import SamplerConfig
from streamvid.tts.search import (
    SearchConfig,
    SearchError,
    best_of_n,
    chunk_search,
    greedy_config,
    plain_config,
)

LATENT = (12, 4, 4)  # PixelCodec(2): 8x8 px frames


class Brightness:
    """A deterministic toy reward: the mean pixel value (per video), with the interface's axes."""

    axes = ("visual", "motion", "text")
    differentiable = False

    def __init__(self, fail: str | None = None):
        self.fail, self.calls = fail, 0

    def __call__(self, video, prompts):
        self.calls += 1
        score = video.float().mean(dim=(1, 2, 3, 4))
        if self.fail == "raise":
            raise RuntimeError("reward down")
        if self.fail == "nan_first":
            score = score.clone()
            score[0] = math.nan
        return RewardOutput(score, {a: score for a in self.axes}, False)


def _sampler(window: int | None = None, sink: int = 0, max_sink: int | None = None) -> StreamingSampler:
    torch.manual_seed(0)
    model = CausalWanModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=12,
                           out_channels=12, text_dim=8, freq_dim=16, ffn_dim=32, num_layers=2).eval()
    cache = CacheLayout(chunk_frames=3, sink_frames=sink, window_frames=window, max_sink_frames=max_sink)
    return StreamingSampler.from_config(model, SamplerConfig(cache=cache))


def _run(sampler, cfg, frames=9, reward=None):
    return chunk_search(sampler, torch.randn(1, 2, 8, generator=torch.Generator().manual_seed(5)), "a red circle",
                        LATENT, frames, reward or Brightness(), PixelCodec(2), cfg)


def test_every_candidate_equals_an_independent_run_with_its_seed():
    sampler = _sampler()
    cfg = SearchConfig(children=1, top_k=4, chunk0_candidates=4, noise_propagation=False, memory_sinking=False)
    result = _run(sampler, cfg, frames=3)
    text = sampler.model.encode_text(torch.randn(1, 2, 8, generator=torch.Generator().manual_seed(5)), grad=False)
    for beam in result.beams:
        session = sampler.session(text, LATENT)
        session.open_chunk()
        child = session.fork(seed=beam.seed)
        x = child.initial_noise()
        for j in range(4):
            x0 = child.denoise(x, j)
            if j < 3:
                x = child.renoise(x0, j)
        assert torch.equal(beam.latents[0], x0)
    assert sorted(b.seed for b in result.beams) == [42, 43, 44, 45]


def test_ledger_counts_the_schedule_and_the_tree_records_survivors():
    result = _run(_sampler(), SearchConfig(children=2, top_k=2), frames=9)  # chunk 0: 4 candidates, then 2 x 2
    led = result.ledger.to_dict()
    assert led["forwards"]["denoise"] == (4 + 4 + 4) * 4 and led["forwards"]["commit"] == 2 + 2 + 2
    assert led["reward_calls"]["short"] == 12 and led["reward_calls"]["long"] == 12 and led["reward_calls"]["final"] == 2
    assert [sum(c["kept"] for c in level) for level in result.tree] == [2, 2, 2]
    assert result.best.video_latents().shape == (1, 9, *LATENT)
    assert result.best.final == max(b.final for b in result.beams)
    # the survivors are the best fused scores of each pool
    for level in result.tree:
        kept = sorted((c["fused"] for c in level if c["kept"]), reverse=True)
        assert kept == sorted((c["fused"] for c in level), reverse=True)[:2]


def test_plain_and_greedy_and_best_of_n_spend_what_they_say():
    sampler = _sampler()
    plain = _run(sampler, plain_config(), frames=9).ledger.to_dict()
    assert plain["nfe"] == 3 * (4 + 1) and plain["reward_calls"] == {}  # 1x: no scoring at all
    greedy = _run(sampler, greedy_config(3), frames=9).ledger.to_dict()
    assert greedy["forwards"]["denoise"] == 3 * 3 * 4 and greedy["forwards"]["commit"] == 3
    text = torch.randn(1, 2, 8)
    bon = best_of_n(sampler, text, "a red circle", LATENT, 9, Brightness(), PixelCodec(2), n=3)
    assert bon.ledger.nfe == 3 * plain["nfe"] and bon.ledger.reward_calls["final"] == 3
    assert bon.best.final == max(b.final for b in bon.beams)


def test_memory_routes_follow_the_flags_when_chunks_leave_the_window():
    sampler = _sampler(window=6, sink=3, max_sink=9)
    result = _run(sampler, SearchConfig(children=2, top_k=2, tau_short=-1.0, tau_long=-10.0), frames=18)
    routes = result.best.routes
    assert routes, "chunks left the window"
    # tau_short = -1: every chunk k >= 1 is short_high; tau_long = -10: every one is long_low -> append while the
    # sink has room (3 + 3 + 3 = 9 frames), then the EMA sink
    assert set(routes.values()) <= {"append_sink", "ema_sink"}
    assert "append_sink" in routes.values()
    assert len(result.best.session.cache.sink_frame_indices) <= 9


def test_failing_rewards_drop_candidates_or_stop_with_the_partial_result():
    result = _run(_sampler(), SearchConfig(children=2, top_k=2), frames=6, reward=Brightness("nan_first"))
    assert result.ledger.reward_calls["dropped_candidates"] >= 1
    assert all(math.isfinite(c["fused"]) for level in result.tree for c in level if c["kept"])
    with pytest.raises(SearchError, match="every candidate") as info, pytest.warns(UserWarning, match="reward down"):
        _run(_sampler(), SearchConfig(children=2, top_k=2), frames=6, reward=Brightness("raise"))
    assert len(info.value.partial) == 1 and info.value.partial[0].latents == []  # failed at chunk 0


def test_budget_plans_spend_their_multiple_of_plain_sampling():
    from streamvid.core.config import ConfigError
    from streamvid.tts.search import plan_for_budget

    sampler = _sampler()
    plain = _run(sampler, plain_config(), frames=9).ledger.nfe
    for multiple in (2, 4):
        cfg, n = plan_for_budget("stream_t1", multiple)
        assert (cfg.top_k, cfg.children, cfg.first_candidates) == (2, multiple // 2, multiple)
        cost = _run(sampler, cfg, frames=9).ledger.nfe
        # denoising NFE is exactly multiple x plain's; the extra commits of the kept beams cost top_k - 1 per chunk
        assert cost == multiple * plain - (multiple - cfg.top_k) * 3
        cfg, n = plan_for_budget("greedy", multiple)
        assert n == multiple and cfg.children == multiple
    with pytest.raises(ConfigError, match="smaller than one plain sample"):
        plan_for_budget("best_of_n", 0.5)
