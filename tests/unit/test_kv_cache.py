"""KVCache: state machine, window accounting, eviction policies and router, fork copy-on-write, positions."""

from __future__ import annotations

import pytest
import torch

from streamvid.core.kv_cache import CacheLayout, EvictedChunk, EvictionPolicy, KVCache

LAYERS, HEADS, DIM, TPF = 2, 2, 4, 3  # tokens per frame


def _kv(frames: int, value: float, batch: int = 1):
    k = torch.full((batch, frames * TPF, HEADS, DIM), value)
    return k, -k


def _push(cache: KVCache, start: int, n: int, value: float | None = None):
    """One chunk through the state machine, with K = value (default: its start frame) in every layer."""
    cache.append(start, n)
    for layer in range(LAYERS):
        cache.write(layer, *_kv(n, float(start if value is None else value)))
    cache.commit()


def _frame_values(cache: KVCache, slots) -> list[float]:
    return [cache._storage.keys[0, 0, s * TPF, 0, 0].item() for s in slots]


def _cache(**layout) -> KVCache:
    return KVCache(CacheLayout(**layout), LAYERS, HEADS, DIM)


def test_state_machine_guards():
    cache = _cache(chunk_frames=2)
    with pytest.raises(RuntimeError, match="no open chunk"):
        cache.write(0, *_kv(2, 0.0))
    cache.append(0, 2)
    with pytest.raises(RuntimeError, match="still open"):
        cache.append(2, 2)
    cache.write(0, *_kv(2, 0.0))
    with pytest.raises(RuntimeError, match=r"layers \[1\]"):
        cache.commit()
    cache.write(1, *_kv(2, 0.0))
    cache.commit()
    assert not cache.is_open and cache.num_history_frames == 2
    with pytest.raises(RuntimeError, match="no open chunk"):
        cache.commit()


def test_overwrite_keeps_last_pass():
    cache = _cache(chunk_frames=2)
    cache.append(0, 2)
    for value in (1.0, 2.0, 3.0):  # three denoising passes, then the clean pass
        for layer in range(LAYERS):
            cache.write(layer, *_kv(2, value))
    cache.commit()
    assert _frame_values(cache, cache._window) == [3.0, 3.0]


def test_window_bounds_history_and_positions():
    cache = _cache(chunk_frames=2, sink_frames=2, local_attn_frames=8)
    for start in range(0, 20, 2):
        cache.append(start, 2)
        # invariant: once open, history outside the sink leaves room for the chunk within the window
        assert len(cache.window_frame_indices) <= 6 - 2
        assert cache.key_positions().tolist() == cache.sink_frame_indices + cache.window_frame_indices + [start, start + 1]
        for layer in range(LAYERS):
            cache.write(layer, *_kv(2, float(start)))
        cache.commit()
    assert cache.sink_frame_indices == [0, 1]
    assert cache.window_frame_indices == [14, 15, 16, 17, 18, 19]
    assert all(policy is EvictionPolicy.DROP for _, policy in cache.evictions)
    assert [c.start_frame for c, _ in cache.evictions] == [2, 4, 6, 8, 10, 12]


def test_relative_positions_are_rebased():
    cache = _cache(chunk_frames=2, sink_frames=2, local_attn_frames=6, rope_positions="relative")
    for start in range(0, 12, 2):
        _push(cache, start, 2)
    cache.append(12, 2)
    assert cache.key_positions().tolist() == [0, 1, 2, 3, 4, 5]  # sink 0-1, window 10-11 -> 2-3, chunk -> 4-5
    assert cache.query_positions().tolist() == [4, 5]


def test_ema_sink_merges_into_sink():
    cache = _cache(chunk_frames=2, sink_frames=2, local_attn_frames=6, eviction="ema_sink", ema_alpha=0.75)
    for start in range(0, 6, 2):  # frames 0-1 sink (K=0), window 2-3 (K=2), 4-5
        _push(cache, start, 2)
    cache.append(6, 2)  # the window (4 frames incl. this chunk) evicts chunk 2-3 into the sink
    assert cache.evictions[-1] == (EvictedChunk(2, 2, sink_frames=2), EvictionPolicy.EMA_SINK)
    assert _frame_values(cache, cache._sink) == pytest.approx([0.75 * 0 + 0.25 * 2] * 2)
    v = cache._storage.values[0, 0, cache._sink[0] * TPF, 0, 0].item()
    assert v == pytest.approx(-0.5)
    assert cache.sink_frame_indices == [0, 1]  # the sink keeps its own positions


def test_append_sink_router_and_fallback():
    routed = []

    def router(chunk: EvictedChunk) -> EvictionPolicy:
        routed.append(chunk.start_frame)
        return EvictionPolicy.APPEND_SINK if chunk.start_frame in (2, 6, 8) else EvictionPolicy.DROP

    layout = CacheLayout(chunk_frames=2, sink_frames=2, local_attn_frames=6, max_sink_frames=6, eviction="drop")
    cache = KVCache(layout, LAYERS, HEADS, DIM, router=router)
    for start in range(0, 16, 2):
        _push(cache, start, 2)
    cache.append(16, 2)
    policies = {c.start_frame: p for c, p in cache.evictions}
    assert policies[2] is EvictionPolicy.APPEND_SINK and policies[6] is EvictionPolicy.APPEND_SINK
    assert policies[4] is EvictionPolicy.DROP
    assert policies[8] is EvictionPolicy.EMA_SINK  # the sink is full (6 frames): fall back to the EMA merge
    assert cache.sink_frame_indices == [0, 1, 2, 3, 6, 7]  # appended chunks keep their original positions
    assert cache.key_positions().tolist()[:6] == [0, 1, 2, 3, 6, 7]
    assert cache.window_frame_indices == [14, 15]
    assert routed == [2, 4, 6, 8, 10, 12]


def test_fork_shares_history_copy_on_write():
    parent = _cache(chunk_frames=2, local_attn_frames=8)
    for start in range(0, 6, 2):
        _push(parent, start, 2)
    children = [parent.fork() for _ in range(4)]
    for i, child in enumerate(children):
        child.append(6, 2)
        for layer in range(LAYERS):
            child.write(layer, *_kv(2, 100.0 + i))
    # history shared: one storage for all, each child owns only its chunk slot
    assert all(c._storage is parent._storage for c in children)
    history = parent._storage.keys.nbytes + parent._storage.values.nbytes
    unique = {t.data_ptr(): t.nbytes for c in [parent, *children] for t in c.tensors()}
    chunk_bytes = 2 * LAYERS * 2 * TPF * HEADS * DIM * 4
    assert sum(unique.values()) == history + (4 + 1) * chunk_bytes  # + the parent's own chunk slot
    # each child reads the same history and its own chunk
    for child in children:
        k, _ = child.history(0)
        assert k[0, :, 0, 0].unique().tolist() == [0.0, 2.0, 4.0]
    # a child's commit copies history first: the parent and its siblings are untouched
    children[0].commit()
    assert children[0]._storage is not parent._storage
    assert children[0].window_frame_indices == [0, 1, 2, 3, 4, 5, 6, 7]
    assert parent.window_frame_indices == [0, 1, 2, 3, 4, 5]
    assert children[1]._storage is parent._storage
    # the parent mutating its own history does not leak into live children
    _push(parent, 6, 2, value=-7.0)
    k, _ = children[1].history(0)
    assert -7.0 not in k[0, :, 0, 0].tolist()


def test_recache_rewrites_slots_in_order():
    cache = _cache(chunk_frames=2, sink_frames=2, local_attn_frames=6)
    for start in range(0, 10, 2):
        _push(cache, start, 2)
    seen = []

    def encode(frames):
        seen.append((frames, cache.key_positions().tolist()))
        for layer in range(LAYERS):
            cache.write(layer, *_kv(len(frames), 50.0 + frames[0]))

    cache.recache(encode)
    assert [f for f, _ in seen] == [[0, 1], [6, 7], [8, 9]]
    # each group attends to the groups re-encoded before it, then itself
    assert [p for _, p in seen] == [[0, 1], [0, 1, 6, 7], [0, 1, 6, 7, 8, 9]]
    assert _frame_values(cache, cache._sink + cache._window) == [50.0, 50.0, 56.0, 56.0, 58.0, 58.0]
    assert not cache.is_open


def test_unbounded_history_grows():
    cache = _cache(chunk_frames=1)
    for start in range(40):
        _push(cache, start, 1)
    assert cache.window_frame_indices == list(range(40))
    assert _frame_values(cache, cache._window) == [float(i) for i in range(40)]


def test_layout_validation():
    with pytest.raises(ValueError, match="local_attn_frames"):
        CacheLayout(chunk_frames=3, local_attn_frames=2)
    with pytest.raises(ValueError, match="counts the sink and the current chunk"):
        CacheLayout(chunk_frames=3, sink_frames=3, local_attn_frames=5)
    with pytest.raises(ValueError, match="rope_positions"):
        CacheLayout(chunk_frames=3, rope_positions="sideways")
    with pytest.raises(ValueError):
        CacheLayout(chunk_frames=3, eviction="keep_everything")


def test_search_pattern_append_then_fork_costs_history_plus_k_chunks():
    """Open the chunk on the parent (evicting once), fork K candidates: no history copy for drop eviction."""
    parent = _cache(chunk_frames=2, sink_frames=2, local_attn_frames=6)
    for start in range(0, 10, 2):
        _push(parent, start, 2)
    parent.append(10, 2)  # evicts frames 6-7
    children = [parent.fork() for _ in range(8)]
    for i, child in enumerate(children):
        for layer in range(LAYERS):
            child.write(layer, *_kv(2, 100.0 + i))
    assert all(c._storage is parent._storage for c in children)
    assert children[3].key_positions().tolist() == [0, 1, 8, 9, 10, 11]
    unique = {t.data_ptr(): t.nbytes for c in [parent, *children] for t in c.tensors()}
    chunk_bytes = 2 * LAYERS * 2 * TPF * HEADS * DIM * 4
    assert sum(unique.values()) == parent.memory_bytes() + 8 * chunk_bytes
    children[5].commit()  # the surviving beam materialises its own history
    assert children[5].window_frame_indices == [8, 9, 10, 11] and children[5]._storage is not parent._storage
    assert _frame_values(children[5], children[5]._window) == [8.0, 8.0, 105.0, 105.0]


def test_layout_is_its_own_config_schema():
    """`CacheLayout` is the `cache:` section of the sampler configs: a policy member is stored as its YAML value,
    and bad choices are one-line config errors."""
    from streamvid.core.config import ConfigError

    layout = CacheLayout(eviction=EvictionPolicy.EMA_SINK)
    assert layout.eviction == "ema_sink" and type(layout.eviction) is str
    assert layout.policy is EvictionPolicy.EMA_SINK
    assert CacheLayout().chunk_frames == 3 and CacheLayout().policy is EvictionPolicy.DROP
    with pytest.raises(ConfigError, match="'eviction' must be one of 'drop', 'ema_sink', 'append_sink'"):
        CacheLayout(eviction="keep_everything")
    with pytest.raises(ConfigError, match="'ema_target'"):
        CacheLayout(ema_target="middle")
