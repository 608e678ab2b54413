"""StreamSession steps: open / denoise / renoise / commit compose to next_chunk, gradients only where asked and only
through the current chunk, the text path keeps gradient, and fork() is copy-on-write with its own RNG."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch

from streamvid.core.kv_cache import CacheLayout, KVCache
from streamvid.core.sampler import GaussianNoise, SamplerSettings, StreamingSampler
from streamvid.core.schedule import FewStepSchedule, add_noise, flow_to_x0

LATENT = (4, 4, 4)  # C, h, w
LAYOUT = CacheLayout(2, sink_frames=2, local_attn_frames=6)


def _old_next_chunks(model, text, schedule, layout, settings, num_chunks, seed, batch=1):
    """The chunk loop as `StreamSession.next_chunk` ran it before it was split into steps, on a bare KVCache."""
    noise = GaussianNoise(seed)
    cache = KVCache.for_model(model, layout)
    ctx = model.encode_text(text, grad=False)
    n = layout.chunk_frames
    shape = (batch, n, *LATENT)
    cpu = torch.device("cpu")

    def forward(x, t):
        timestep = torch.full((x.shape[0], x.shape[1]), float(t))
        return model(x.transpose(1, 2), timestep, text_context=ctx, kv_cache=cache).sample.transpose(1, 2)

    out = []
    with torch.no_grad():
        for index in range(num_chunks):
            x = noise(None, -1, shape, torch.float32, cpu)
            cache.append(index * n, n)
            timesteps = schedule.timesteps.tolist()
            for j, t in enumerate(timesteps):
                x0 = flow_to_x0(x, forward(x, t), schedule.sigma(t))
                if j + 1 < len(timesteps):
                    x = add_noise(x0, noise(None, j, shape, torch.float32, cpu), schedule.sigma(timesteps[j + 1]))
            x_ctx = x0
            if settings.context_noise > 0:
                sigma = schedule.sigma(settings.context_noise)
                x_ctx = add_noise(x0, noise(None, len(schedule), shape, torch.float32, cpu), sigma)
            forward(x_ctx, settings.context_noise)
            cache.commit()
            out.append(x0)
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("context_noise", [0.0, 100.0])
@pytest.mark.parametrize("batch", [1, 2])
def test_next_chunk_is_the_composition_of_the_steps_bitwise(tiny_causal_wan, context_noise, batch):
    torch.manual_seed(0)
    text = torch.randn(batch, 5, 16)
    schedule, settings = FewStepSchedule.from_steps(), SamplerSettings(context_noise=context_noise)
    sampler = StreamingSampler(tiny_causal_wan, schedule, LAYOUT, settings)
    with torch.no_grad():
        new = sampler.generate(text, LATENT, 10, batch_size=batch, noise=GaussianNoise(3))
    old = _old_next_chunks(tiny_causal_wan, text, schedule, LAYOUT, settings, 5, seed=3, batch=batch)
    assert torch.equal(new, old)

    # and the steps called by hand (as a training rollout or a search does) give the same chunks
    session = sampler.session(text, LATENT, batch_size=batch, noise=GaussianNoise(3))
    chunks = []
    for _ in range(5):
        session.open_chunk()
        x = session.initial_noise()
        for j in range(session.num_steps):
            x0 = session.denoise(x, j)
            if j + 1 < session.num_steps:
                x = session.renoise(x0, j)
        chunks.append(session.commit(x0).latents)
    assert torch.equal(torch.cat(chunks, 1), old)


def test_step_guards(tiny_causal_wan):
    sampler = StreamingSampler(tiny_causal_wan, FewStepSchedule.from_steps((1000, 500)), CacheLayout(2))
    session = sampler.session(torch.randn(1, 5, 16), LATENT, noise=GaussianNoise(0))
    x = torch.randn(1, 2, *LATENT)
    with pytest.raises(RuntimeError, match="no open chunk"):
        session.denoise(x, 0)
    info = session.open_chunk()
    assert info.index == 0 and session.open_info == info
    with pytest.raises(RuntimeError, match="still open"):
        session.open_chunk()
    with pytest.raises(ValueError, match="outside the schedule"):
        session.denoise(x, 2)
    with pytest.raises(ValueError, match="no next timestep"):
        session.renoise(x, 1)
    with pytest.raises(RuntimeError, match="no initial noise"):
        session.commit(x)
    with pytest.raises(RuntimeError, match="commit or discard"):
        session.switch_prompt(torch.randn(1, 5, 16))
    session.discard()
    assert session.open_info is None and not session.cache.is_open and session.chunk_index == 0
    chunk = session.next_chunk()  # the discarded chunk left nothing behind
    assert chunk.info.index == 0 and session.cache.window_frame_indices == [0, 1]


def _trainable_copy(model):
    return copy.deepcopy(model).train().requires_grad_(True)


def _rollout_to_exit(session, exit_step):
    """Self-Forcing's per-chunk rollout: steps before the exit without grad, the exit step with grad."""
    session.open_chunk()
    x = session.initial_noise()
    for j in range(exit_step):
        x = session.renoise(session.denoise(x, j), j)
    return session.denoise(x, exit_step, grad=True)


def test_steps_record_gradient_only_where_asked(tiny_causal_wan):
    model = _trainable_copy(tiny_causal_wan)
    sampler = StreamingSampler(model, FewStepSchedule.from_steps(), LAYOUT)
    ctx = model.encode_text(torch.randn(1, 5, 16), grad=False)
    session = sampler.session(ctx, LATENT, noise=GaussianNoise(0))
    with torch.enable_grad():
        first = session.next_chunk()  # next_chunk never records a graph, whatever the ambient mode
        assert first.latents.grad_fn is None
        session.open_chunk()
        x = session.initial_noise()
        plain = session.denoise(x, 0)  # no graph by default, even with grad enabled
        assert plain.grad_fn is None
    with torch.no_grad():
        asked = session.denoise(x, 0, grad=True)  # a graph when asked, even under no_grad
    assert asked.grad_fn is not None
    assert torch.equal(asked.detach(), plain)
    chunk = session.commit(asked)
    assert chunk.latents is asked  # the rollout's output keeps its graph
    assert session._clean[2].grad_fn is None and not session._clean[2].requires_grad
    assert not session.cache._storage.keys.requires_grad  # the commit pass stored constants


def test_exit_step_gradient_flows_through_the_current_chunk_only(tiny_causal_wan):
    """Self-Forcing rollout: every chunk's exit step runs with grad, then its commit pass. The gradient of the
    last chunk's loss is the same whether the earlier chunks were produced by the trained model (their x0 carry
    graphs) or by a frozen copy with equal weights: history K/V enter as constants (methods.md A.2.1)."""
    torch.manual_seed(1)
    text = torch.randn(1, 5, 16)
    schedule = FewStepSchedule.from_steps()
    target = torch.randn(1, 2, *LATENT)

    def exit_grads(history_model, model):
        ctx = model.encode_text(text, grad=False)
        session = StreamingSampler(history_model, schedule, LAYOUT).session(ctx, LATENT, noise=GaussianNoise(0))
        model.zero_grad(set_to_none=True)
        earlier = [session.commit(_rollout_to_exit(session, j)).latents for j in (1, 3, 0)]
        session.sampler = StreamingSampler(model, schedule, LAYOUT)  # the last chunk: the trained model
        x0 = _rollout_to_exit(session, exit_step=2)
        (x0 - target).square().mean().backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return grads, earlier

    model = _trainable_copy(tiny_causal_wan)
    own, earlier = exit_grads(model, model)
    assert all(x.grad_fn is not None for x in earlier)  # the earlier chunks do carry graphs
    frozen, _ = exit_grads(copy.deepcopy(model).eval().requires_grad_(False), model)
    assert own.keys() == frozen.keys()
    assert "blocks.0.attn1.to_k.weight" in own and "patch_embedding.weight" in own
    scale = max(g.abs().max() for g in own.values())
    assert scale > 0
    for name in own:
        assert (own[name] - frozen[name]).abs().max() <= 1e-5 * scale, name


def test_text_path_carries_gradient_when_encoded_with_it(tiny_causal_wan):
    """A session started with gradients enabled trains the cross-attention K/V projections through its exit steps;
    a context encoded with grad=False (inference) does not."""
    model = _trainable_copy(tiny_causal_wan)
    text = torch.randn(1, 5, 16)
    sampler = StreamingSampler(model, FewStepSchedule.from_steps(), CacheLayout(2))
    for encoded_with_grad in (True, False):
        model.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(encoded_with_grad):
            session = sampler.session(text, LATENT, noise=GaussianNoise(0))
        outs = [_rollout_to_exit(session, exit_step=1)]
        session.commit(outs[-1])
        outs.append(_rollout_to_exit(session, exit_step=3))  # two chunks, one backward (the rollout's loss)
        torch.cat(outs, 1).square().mean().backward()
        k_proj = model.blocks[1].attn2.to_k.weight.grad
        if encoded_with_grad:
            assert k_proj is not None and k_proj.abs().sum() > 0
        else:
            assert k_proj is None
        assert model.blocks[1].attn2.to_q.weight.grad.abs().sum() > 0  # the query side always trains


def _sampler(model, steps=(1000, 500)):
    return StreamingSampler(model, FewStepSchedule.from_steps(steps), LAYOUT)


def _history_values(session) -> torch.Tensor:
    cache = session.cache
    idx = cache._token_index(cache._sink + cache._window, torch.device("cpu"))
    return cache._storage.keys.index_select(2, idx).clone()


def test_fork_without_seed_continues_the_stream_and_leaves_the_parent_untouched(tiny_causal_wan):
    text = torch.randn(1, 5, 16)
    reference = _sampler(tiny_causal_wan).generate(text, LATENT, 8, noise=GaussianNoise(4))

    parent = _sampler(tiny_causal_wan).session(text, LATENT, noise=GaussianNoise(4))
    with torch.no_grad():
        parent.next_chunk()
        parent.next_chunk()
        history = _history_values(parent)
        fork = parent.fork()
        fork_chunks = [fork.next_chunk().latents for _ in range(2)]  # the fork commits first: it copies history
        assert torch.equal(_history_values(parent), history)
        parent_chunks = [parent.next_chunk().latents for _ in range(2)]
    assert torch.equal(torch.cat(parent_chunks, 1), reference[:, 4:])  # the parent is untouched by its fork
    assert torch.equal(torch.cat(fork_chunks, 1), reference[:, 4:])  # same RNG state: the same continuation
    assert fork.cache._storage is not parent.cache._storage


def test_forks_diverge_independently_with_their_own_rng(tiny_causal_wan):
    """A fork with seed s equals the same stream whose noise source is replaced by GaussianNoise(s) at the fork."""
    text = torch.randn(1, 5, 16)
    parent = _sampler(tiny_causal_wan).session(text, LATENT, noise=GaussianNoise(0))
    with torch.no_grad():
        for _ in range(3):
            parent.next_chunk()
        history = _history_values(parent)
        forks = {seed: parent.fork(seed=seed) for seed in (11, 12)}
        outs = {seed: torch.cat([f.next_chunk().latents for _ in range(2)], 1) for seed, f in forks.items()}
        assert torch.equal(_history_values(parent), history)

        for seed, out in outs.items():
            alone = _sampler(tiny_causal_wan).session(text, LATENT, noise=GaussianNoise(0))
            for _ in range(3):
                alone.next_chunk()
            alone.noise = GaussianNoise(seed)
            assert torch.equal(out, torch.cat([alone.next_chunk().latents for _ in range(2)], 1))
    assert (outs[11] - outs[12]).abs().max() > 1e-3
    assert forks[11].chunk_index == forks[12].chunk_index == 5 and parent.chunk_index == 3
    assert forks[11].cache.window_frame_indices == [6, 7, 8, 9]
    assert parent.cache.window_frame_indices == [2, 3, 4, 5]


def test_fork_rejects_a_noise_source_it_cannot_copy(tiny_causal_wan):
    session = _sampler(tiny_causal_wan).session(torch.randn(1, 5, 16), LATENT, noise=lambda *a: torch.zeros(a[2]))
    with pytest.raises(TypeError, match="no fork"):
        session.fork()
    with pytest.raises(ValueError, match="not both"):
        session.fork(seed=1, noise=GaussianNoise(1))
    assert session.fork(seed=1).noise is not session.noise


def test_k_forks_cost_history_plus_k_chunks_and_dropped_forks_free_memory(tiny_causal_wan):
    """Beam-search pattern: open the chunk on the beam (eviction once), fork K candidates, denoise each, keep one."""
    k = 4
    parent = _sampler(tiny_causal_wan).session(torch.randn(1, 5, 16), LATENT, noise=GaussianNoise(0))
    with torch.no_grad():
        for _ in range(4):
            parent.next_chunk()
        parent.open_chunk()  # evicts frames 4-5, once for all candidates
        storage = parent.cache._storage
        history_bytes = storage.keys.nbytes + storage.values.nbytes
        forks = [parent.fork(seed=100 + i) for i in range(k)]
        x0s = []
        for fork in forks:
            x = fork.initial_noise()
            x0s.append(fork.denoise(fork.renoise(fork.denoise(x, 0), 0), 1))
    chunk_kv_bytes = forks[0].cache._current[0].nbytes + forks[0].cache._current[1].nbytes
    unique = {t.data_ptr(): t.nbytes for s in [parent, *forks] for t in s.cache.tensors()}
    # history once + one chunk buffer per candidate + the beam's own (reused) chunk buffer; not k * history
    assert sum(unique.values()) == history_bytes + (k + 1) * chunk_kv_bytes
    assert all(f.cache._storage is storage for f in forks)
    for fork in forks:  # clean buffers: own dicts over the same tensors
        assert fork._clean is not parent._clean
        assert all(fork._clean[f].data_ptr() == parent._clean[f].data_ptr() for f in parent._clean)
    assert len({x.data_ptr() for x in x0s}) == k and (x0s[0] - x0s[1]).abs().max() > 1e-3

    # keep candidate 2, drop the others and the parent: only the survivor's history remains
    survivor = forks.pop(2)
    dropped = [weakref.ref(f) for f in forks] + [weakref.ref(f.cache._current[0]) for f in forks]
    dropped += [weakref.ref(parent)]
    del forks, fork, x0s
    del parent, storage
    gc.collect()
    assert all(ref() is None for ref in dropped)
    assert set(survivor.cache._storage.owners) == {survivor.cache}  # nobody else shares the history now
    kept_storage = survivor.cache._storage
    with torch.no_grad():
        survivor.commit(survivor.denoise(survivor.initial_noise(), 0))
    assert survivor.cache._storage is kept_storage  # no copy: the dropped forks released their share
    assert survivor.cache.window_frame_indices == [6, 7, 8, 9]
