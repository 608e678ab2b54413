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
    PromptSwitch,
    SearchConfig,
    SearchError,
    best_of_n,
    chunk_search,
    greedy_config,
    plain_config,
    search_steps,
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
    cache = CacheLayout(chunk_frames=3, sink_frames=sink, local_attn_frames=None if window is None else sink + window, max_sink_frames=max_sink)
    return StreamingSampler.from_config(model, SamplerConfig(cache=cache))


def _run(sampler, cfg, frames=9, reward=None):
    return chunk_search(sampler, torch.randn(1, 2, 8, generator=torch.Generator().manual_seed(5)), "a red circle",
                        LATENT, frames, reward or Brightness(), PixelCodec(2), cfg)


@pytest.mark.parametrize("batched", [False, True])
def test_every_candidate_equals_an_independent_run_with_its_seed(batched):
    sampler = _sampler()
    cfg = SearchConfig(children=1, top_k=4, chunk0_candidates=4, noise_propagation=False, memory_sinking=False,
                       batched=batched)
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
        if batched:  # one batched forward: equal up to the float re-association of batched kernels
            torch.testing.assert_close(beam.latents[0], x0, atol=1e-5, rtol=1e-5)
        else:
            assert torch.equal(beam.latents[0], x0)
    assert sorted(b.seed for b in result.beams) == [42, 43, 44, 45]


def test_batched_search_equals_sequential_search():
    """Same survivors, routes, scores and ledger counts; latents equal up to float re-association. The window
    and sink make chunks leave the cache, so beams routed differently fall into different batch groups."""
    sampler = _sampler(window=6, sink=3, max_sink=9)
    runs = {b: _run(sampler, SearchConfig(children=2, top_k=2, tau_short=-1.0, tau_long=0.0, batched=b), frames=18)
            for b in (False, True)}
    seq, bat = runs[False], runs[True]
    assert [[c.kept for c in lv] for lv in seq.tree] == [[c.kept for c in lv] for lv in bat.tree]
    assert [[c.seed for c in lv] for lv in seq.tree] == [[c.seed for c in lv] for lv in bat.tree]
    for a, b in zip(seq.beams, bat.beams, strict=True):
        assert a.routes == b.routes and a.flags == b.flags
        torch.testing.assert_close(a.video_latents(), b.video_latents(), atol=1e-4, rtol=1e-4)
        assert a.fused == pytest.approx(b.fused, abs=1e-4)
    led_s, led_b = seq.ledger.to_dict(), bat.ledger.to_dict()
    assert led_s["forwards"] == led_b["forwards"] and led_s["reward_calls"] == led_b["reward_calls"]


class PromptLog(Brightness):
    """Brightness that records which prompts and frame counts it was asked about."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, int]] = []

    def __call__(self, video, prompts):
        self.seen += [(p, video.shape[1]) for p in prompts]
        return super().__call__(video, prompts)


def test_prompt_switches_score_each_segment_against_its_own_prompt():
    sampler = _sampler(window=6, sink=3, max_sink=9)
    gen = torch.Generator().manual_seed(9)
    switches = [PromptSwitch(2, "a blue square", torch.randn(1, 2, 8, generator=gen))]
    reward = PromptLog()
    result = chunk_search(sampler, torch.randn(1, 2, 8, generator=gen), "a red circle", LATENT, 12, reward,
                          PixelCodec(2), SearchConfig(children=2, top_k=2), prompt_switches=switches)
    led = result.ledger.to_dict()
    # every beam re-encodes its history (2 chunks -> 2 groups) under the new prompt
    assert led["forwards"]["recache"] == 2 * 2
    # chunk scores: 8 per chunk (short + long for 4 candidates) over 4 chunks, then the final pick per segment
    prompts = [p for p, _ in reward.seen]
    assert prompts[:16] == ["a red circle"] * 16 and prompts[16:32] == ["a blue square"] * 16
    # the long-term window restarts at the switch: chunk 2's long score reads only its own 3 frames
    long_frames = [n for (_, n), i in zip(reward.seen, range(32), strict=False) if (i // 4) % 2 == 1]
    assert long_frames == [3] * 4 + [6] * 4 + [3] * 4 + [6] * 4
    assert reward.seen[32:] == [("a red circle", 6)] * 2 + [("a blue square", 6)] * 2
    assert result.best.video_latents().shape == (1, 12, *LATENT)
    with pytest.raises(ValueError, match="prompt switch at chunk 4"):
        chunk_search(sampler, torch.randn(1, 2, 8), "a red circle", LATENT, 12, reward, PixelCodec(2),
                     prompt_switches=[PromptSwitch(4, "a blue square", torch.randn(1, 2, 8))])


def test_ledger_counts_the_schedule_and_the_tree_records_survivors():
    result = _run(_sampler(), SearchConfig(children=2, top_k=2), frames=9)  # chunk 0: 4 candidates, then 2 x 2
    led = result.ledger.to_dict()
    assert led["forwards"]["denoise"] == (4 + 4 + 4) * 4 and led["forwards"]["commit"] == 2 + 2 + 2
    assert led["reward_calls"]["short"] == 12 and led["reward_calls"]["long"] == 12 and led["reward_calls"]["final"] == 2
    assert [sum(c.kept for c in level) for level in result.tree] == [2, 2, 2]
    assert result.best.video_latents().shape == (1, 9, *LATENT)
    assert result.best.final == max(b.final for b in result.beams)
    # the survivors are the best fused scores of each pool
    for level in result.tree:
        kept = sorted((c.fused for c in level if c.kept), reverse=True)
        assert kept == sorted((c.fused for c in level), reverse=True)[:2]


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
    assert all(math.isfinite(c.fused) for level in result.tree for c in level if c.kept)
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


def test_search_steps_yield_each_level_and_a_switch_appended_live_equals_a_scheduled_one():
    """The iterator behind `chunk_search`: one step per chunk (its tree level, the survivors best first), the same
    result; a switch appended to the list between steps acts as one given up front."""
    sampler, reward = _sampler(window=6, sink=3, max_sink=6), Brightness()
    text, other = torch.randn(1, 2, 8, generator=torch.Generator().manual_seed(5)), torch.randn(1, 2, 8)
    cfg = SearchConfig(children=2, top_k=2)
    switches: list[PromptSwitch] = []
    steps = search_steps(sampler, text, "a red circle", LATENT, 12, reward, PixelCodec(2), cfg, prompt_switches=switches)
    levels = []
    while True:
        try:
            step = next(steps)
        except StopIteration as done:
            live = done.value
            break
        levels.append(step)
        assert [b.fused[-1] for b in step.beams] == sorted((n.fused for n in step.level if n.kept), reverse=True)
        if step.chunk == 1:
            switches.append(PromptSwitch(2, "a blue square", other))
    assert [s.chunk for s in levels] == [0, 1, 2, 3] and [s.prompt for s in levels][2:] == ["a blue square"] * 2
    assert [s.level for s in levels] == live.tree
    scheduled = chunk_search(sampler, text, "a red circle", LATENT, 12, reward, PixelCodec(2), cfg,
                             prompt_switches=[PromptSwitch(2, "a blue square", other)])
    torch.testing.assert_close(live.best.video_latents(), scheduled.best.video_latents(), rtol=0, atol=0)
    assert live.ledger.nfe == scheduled.ledger.nfe
