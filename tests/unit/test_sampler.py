"""StreamingSampler: schedule, streamed rollout == block-causal reference, batching, prompt switches, length."""

from __future__ import annotations

import pytest
import torch

from streamvid.core.causal_wan import BlockCausal
from streamvid.core.kv_cache import CacheLayout, KVCache
from streamvid.core.sampler import GaussianNoise, SamplerSettings, StreamingSampler
from streamvid.core.schedule import FewStepSchedule, add_noise, flow_to_x0, shifted_timestep_table

LATENT = (4, 4, 4)  # C, h, w


def test_warped_schedule_matches_self_forcing():
    t = FewStepSchedule.from_steps((1000, 750, 500, 250), shift=5.0).timesteps
    assert torch.allclose(t, torch.tensor([1000.0, 937.5, 833.3333, 625.0]), atol=1e-3)
    table = shifted_timestep_table(5.0)
    s = torch.linspace(1.0, 0.001, 1000)  # sigma(s) = 5s / (1 + 4s)
    assert torch.allclose(table, 1000 * 5 * s / (1 + 4 * s), atol=1e-3)


def _reference_rollout(model, text, schedule, chunk_frames, num_chunks, seed, context_noise=0.0):
    """The same computation as the sampler, but every forward is one block-causal pass over
    [clean history chunks (t = context_noise) | current chunk (t_j)] without any cache."""
    noise = GaussianNoise(seed)
    ts = schedule.timesteps.tolist()
    clean = []
    batch = text.shape[0]
    for _ in range(num_chunks):
        shape = (batch, chunk_frames, *LATENT)
        x = noise(None, -1, shape, torch.float32, torch.device("cpu"))
        for j, t in enumerate(ts):
            seq = torch.cat([*clean, x], dim=1)
            tt = torch.full((batch, seq.shape[1]), float(context_noise))
            tt[:, -chunk_frames:] = t
            flow = model(seq.transpose(1, 2), tt, text, block_causal=BlockCausal(chunk_frames)).sample.transpose(1, 2)
            x0 = flow_to_x0(x, flow[:, -chunk_frames:], t / 1000)
            if j + 1 < len(ts):
                x = add_noise(x0, noise(None, j, shape, torch.float32, torch.device("cpu")), ts[j + 1] / 1000)
        clean.append(x0)
    return torch.cat(clean, dim=1)


@pytest.mark.parametrize("batch", [1, 2])
def test_stream_equals_block_causal_reference(tiny_causal_wan, batch):
    torch.manual_seed(3)
    text = torch.randn(batch, 5, 16)
    schedule = FewStepSchedule.from_steps()
    sampler = StreamingSampler(tiny_causal_wan, schedule, CacheLayout(chunk_frames=2))
    with torch.no_grad():
        out = sampler.generate(text, LATENT, num_frames=8, batch_size=batch, noise=GaussianNoise(7))
        ref = _reference_rollout(tiny_causal_wan, text, schedule, 2, 4, seed=7)
    assert out.shape == (batch, 8, *LATENT)
    assert (out - ref).abs().max() <= 1e-5


def test_stream_without_rope_offset_departs_from_reference(tiny_causal_wan, monkeypatch):
    text = torch.randn(1, 5, 16)
    schedule = FewStepSchedule.from_steps()
    with torch.no_grad():
        ref = _reference_rollout(tiny_causal_wan, text, schedule, 2, 3, seed=1)
        monkeypatch.setattr(KVCache, "query_positions", lambda self: torch.arange(self._open[1]))
        monkeypatch.setattr(
            KVCache, "key_positions", lambda self: torch.arange(self._open[1]).repeat(1 + self.num_history_frames // 2)
        )
        out = StreamingSampler(tiny_causal_wan, schedule, CacheLayout(chunk_frames=2)).generate(
            text, LATENT, 6, noise=GaussianNoise(1)
        )
    assert (out - ref).abs().max() > 1e-3


def test_batch_elements_are_independent(tiny_causal_wan):
    """Sample i of a batch equals the same stream run alone with the same noise."""
    text = torch.randn(2, 5, 16)
    sampler = StreamingSampler(tiny_causal_wan, FewStepSchedule.from_steps(), CacheLayout(2, local_attn_frames=4))

    class Recorded:
        def __init__(self):
            self.draws = []

        def __call__(self, chunk, step, shape, dtype, device):
            self.draws.append(torch.randn(shape, generator=torch.Generator().manual_seed(len(self.draws))))
            return self.draws[-1]

    rec = Recorded()
    both = sampler.generate(text, LATENT, 6, batch_size=2, noise=rec)
    replay = iter(rec.draws)
    alone = sampler.generate(text[1:], LATENT, 6, batch_size=1, noise=lambda *a: next(replay)[1:])
    assert (both[1:] - alone).abs().max() <= 1e-5


def test_callbacks_and_streaming_order(tiny_causal_wan):
    seen = []
    sampler = StreamingSampler(tiny_causal_wan, FewStepSchedule.from_steps((1000, 500)), CacheLayout(2))
    chunks = list(sampler.stream(torch.randn(1, 5, 16), LATENT, 6, callbacks=[seen.append], noise=GaussianNoise(0)))
    assert [c.info.index for c in chunks] == [0, 1, 2] == [c.info.index for c in seen]
    assert [c.info.start_frame for c in chunks] == [0, 2, 4]
    with pytest.raises(ValueError, match="multiple of chunk_frames"):
        list(sampler.stream(torch.randn(1, 5, 16), LATENT, 5))


def test_context_noise_commit_pass_changes_cache(tiny_causal_wan):
    text = torch.randn(1, 5, 16)
    schedule = FewStepSchedule.from_steps((1000, 500))
    clean = StreamingSampler(tiny_causal_wan, schedule, CacheLayout(2)).generate(text, LATENT, 4, noise=GaussianNoise(0))
    noisy = StreamingSampler(tiny_causal_wan, schedule, CacheLayout(2), SamplerSettings(context_noise=100.0)).generate(
        text, LATENT, 4, noise=GaussianNoise(0)
    )
    assert (clean[:, :2] - noisy[:, :2]).abs().max() <= 1e-6  # first chunk sees no history
    assert (clean[:, 2:] - noisy[:, 2:]).abs().max() > 1e-4


def test_prompt_switch_recache_equals_fresh_encoding(tiny_causal_wan):
    """After a switch with re-cache, the history K/V equal those written by encoding the same clean
    frames under the new prompt from scratch; without re-cache they keep the old prompt's K/V."""
    torch.manual_seed(0)
    old, new = torch.randn(1, 5, 16), torch.randn(1, 5, 16)
    layout = CacheLayout(2, sink_frames=2, local_attn_frames=6)
    sampler = StreamingSampler(tiny_causal_wan, FewStepSchedule.from_steps((1000, 500)), layout)
    session = sampler.session(old, LATENT, noise=GaussianNoise(0))
    for _ in range(4):
        session.next_chunk()
    frames = session.cache.sink_frame_indices + session.cache.window_frame_indices
    assert frames == [0, 1, 4, 5, 6, 7]
    clean = {f: session._clean[f] for f in frames}
    session.switch_prompt(new)

    fresh = KVCache.for_model(tiny_causal_wan, CacheLayout(2, sink_frames=2, local_attn_frames=None))
    ctx = tiny_causal_wan.encode_text(new)
    with torch.no_grad():
        for group in ([0, 1], [4, 5], [6, 7]):
            fresh.append(group[0], 2)
            x = torch.stack([clean[f] for f in group], 1).transpose(1, 2)
            tiny_causal_wan(x, torch.zeros(1, 2), text_context=ctx, kv_cache=fresh)
            fresh.commit()
    cache = session.cache
    for layer in range(2):
        idx_a = cache._token_index(cache._sink + cache._window, torch.device("cpu"))
        idx_b = fresh._token_index(fresh._sink + fresh._window, torch.device("cpu"))
        a = cache._storage.keys[layer].index_select(1, idx_a)
        b = fresh._storage.keys[layer].index_select(1, idx_b)
        assert (a - b).abs().max() <= 1e-5
    session.next_chunk()  # the stream goes on under the new prompt


def test_stream_past_rope_table_with_window(tiny_causal_wan):
    """A windowed stream runs past the 1024-row RoPE table with bounded cache memory."""
    layout = CacheLayout(4, sink_frames=4, local_attn_frames=12)
    sampler = StreamingSampler(tiny_causal_wan, FewStepSchedule.from_steps((1000,)), layout)
    session = sampler.session(torch.randn(1, 5, 16), (4, 2, 2), noise=GaussianNoise(0))
    sizes = set()
    for _ in range(260):  # 1040 latent frames
        chunk = session.next_chunk()
        sizes.add(session.cache.memory_bytes())
    assert chunk.info.start_frame == 1036
    assert torch.isfinite(chunk.latents).all()
    assert len(sizes) <= 2  # allocation happens once; after that memory is flat
    assert max(session.cache.window_frame_indices) == 1039 and session.cache.sink_frame_indices == [0, 1, 2, 3]


def test_sampler_config_is_declared_once(tmp_path, tiny_causal_wan):
    """`SamplerConfig` derives from `SamplerSettings` and holds the `CacheLayout` itself; the YAML keys stay flat."""
    import dataclasses

    from streamvid.core.config import load_config, save_resolved_config
    from streamvid.core.sampler_config import SamplerConfig

    settings_fields = {f.name for f in dataclasses.fields(SamplerSettings)}
    own_fields = {f.name for f in dataclasses.fields(SamplerConfig)} - settings_fields
    assert settings_fields == {"context_noise", "recache_on_switch"}
    assert own_fields == {"denoising_steps", "shift", "warp", "cache"}
    assert not {f.name for f in dataclasses.fields(CacheLayout)} & (settings_fields | own_fields)

    (tmp_path / "s.yaml").write_text("context_noise: 50.0\ncache:\n  chunk_frames: 2\n  local_attn_frames: 4\n")
    cfg = load_config(tmp_path / "s.yaml", ["cache.eviction=ema_sink"], schema=SamplerConfig)
    assert cfg.cache == CacheLayout(2, local_attn_frames=4, eviction="ema_sink")
    assert load_config(save_resolved_config(cfg, tmp_path / "out"), schema=SamplerConfig) == cfg
    sampler = StreamingSampler.from_config(tiny_causal_wan, cfg)
    assert sampler.layout is cfg.cache and sampler.settings is cfg and sampler.settings.context_noise == 50.0
    assert torch.equal(sampler.schedule.timesteps, FewStepSchedule.from_steps().timesteps)
