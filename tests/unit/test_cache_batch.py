"""`candidate_batch` / `CandidateBatch` / `CacheBatch`: the candidates of several beams denoised as one batch
equal the same candidates on independent forks (float re-association aside), commit through their beams as the
forks would, and misuse is refused."""

from __future__ import annotations

import pytest
import torch

from streamvid.core.cache_batch import CacheBatch
from streamvid.core.causal_wan import CausalWanModel
from streamvid.core.kv_cache import CacheLayout, EvictionPolicy
from streamvid.core.sampler import StreamingSampler, candidate_batch
from streamvid.core.sampler_config import SamplerConfig

LATENT = (4, 4, 4)


def _sampler(context_noise: float = 0.0, window: int | None = None, sink: int = 0,
             max_sink: int | None = None) -> StreamingSampler:
    torch.manual_seed(0)
    model = CausalWanModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4,
                           out_channels=4, text_dim=8, freq_dim=16, ffn_dim=32, num_layers=2).eval()
    cfg = SamplerConfig(context_noise=context_noise,
                        cache=CacheLayout(chunk_frames=2, sink_frames=sink, local_attn_frames=None if window is None else sink + window,
                                          max_sink_frames=max_sink))
    return StreamingSampler.from_config(model, cfg)


def _beams(sampler, seeds=(1, 2), chunks=2):
    """Sessions with different histories (``chunks`` committed chunks each), sharing one prompt."""
    text = sampler.model.encode_text(torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(3)), grad=False)
    root = sampler.session(text, LATENT)
    beams = []
    for s in seeds:
        beam = root.fork(seed=s)
        for _ in range(chunks):
            beam.next_chunk()
        beams.append(beam)
    return beams


@torch.no_grad()
def test_a_batch_of_two_beams_equals_their_candidates_on_independent_forks():
    sampler = _sampler()
    beams = _beams(sampler)
    for beam in beams:
        beam.open_chunk()
    seeds = [[10, 11, 12], [20]]
    batch = candidate_batch(beams, seeds)
    assert batch.batch_size == 4 and batch.chunk_shape == (4, 2, *LATENT)
    x0_batch = batch.denoise_from(batch.initial_noise())
    for row, (b, seed) in enumerate([(0, 10), (0, 11), (0, 12), (1, 20)]):
        fork = beams[b].fork(seed=seed)
        expected = fork.denoise_from(fork.initial_noise())
        torch.testing.assert_close(x0_batch[row:row + 1], expected, atol=1e-5, rtol=1e-5)
    # the two beams' histories really differ (so the rows did read their own beam's history)
    assert not torch.allclose(x0_batch[2], x0_batch[3], atol=1e-3)
    # histories are held once per beam: the members' history storage is the beams' own (shared, not copied)
    for beam, member in zip(beams, batch.cache.caches, strict=True):
        assert member._storage is beam.cache._storage


@torch.no_grad()
def test_a_survivor_commits_through_its_beam_as_its_independent_fork_would():
    sampler = _sampler(context_noise=100.0)  # the commit pass draws noise: the row's stream must continue
    beam = _beams(sampler, seeds=(1,))[0]
    beam.open_chunk()
    batch = candidate_batch([beam], [[7, 8]])
    z = batch.initial_noise()
    x0 = batch.denoise_from(z)
    survivor = beam.fork(noise=batch.row_noise(1))
    survivor.commit(x0[1:2], initial_noise=z[1:2])
    reference = beam.fork(seed=8)
    ref_z = reference.initial_noise()
    reference.commit(reference.denoise_from(ref_z))
    for layer in range(2):
        k, _ = survivor.cache._storage.keys[layer], survivor.cache._storage.values[layer]
        torch.testing.assert_close(k, reference.cache._storage.keys[layer], atol=1e-5, rtol=1e-5)
    # the beam itself is untouched (copy-on-write) and can still fork other candidates
    assert beam.cache.num_history_frames == 4 and beam.open_info is not None


@torch.no_grad()
def test_misuse_is_refused():
    sampler = _sampler(window=4, sink=2, max_sink=4)
    beams = _beams(sampler, seeds=(1, 2), chunks=3)
    beams[0].open_chunk()
    with pytest.raises(ValueError, match="same chunk open"):
        candidate_batch(beams, [[1], [2]])
    beams[1].open_chunk()
    batch = candidate_batch(beams, [[1], [2]])
    batch.denoise_from(batch.initial_noise())
    assert batch.nfe == {"denoise": 2 * batch.num_steps}  # one per row per step
    # a batch has only the steps of the open chunk: no commit, fork, prompt switch or new chunk
    for op in ("commit", "discard", "fork", "switch_prompt", "open_chunk", "next_chunk"):
        assert not hasattr(batch, op), op
    with pytest.raises(RuntimeError, match="never committed"):
        batch.cache.commit()
    # a beam whose sink grew (append_sink) reads history at other positions: not batchable with the others
    other = _beams(sampler, seeds=(3,), chunks=0)[0]
    other.cache.router = lambda evicted: EvictionPolicy.APPEND_SINK
    for _ in range(3):
        other.next_chunk()
    other.open_chunk()  # frames 2, 3 leave the window into the sink here; the others dropped them
    assert other.cache.sink_frame_indices == [0, 1, 2, 3] and beams[0].cache.sink_frame_indices == [0, 1]
    with pytest.raises(ValueError, match="other key positions"):
        CacheBatch([beams[0].cache.fork(), other.cache.fork()], [1, 1])
    with pytest.raises(ValueError, match="another prompt"):
        stranger = sampler.session(torch.randn(1, 3, 8), LATENT)
        for _ in range(3):
            stranger.next_chunk()
        stranger.open_chunk()
        candidate_batch([beams[0], stranger], [[1], [2]])
