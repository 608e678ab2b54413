"""The `AttentionCache` contract, one test over both implementations: a `KVCache` (one stream) and a
`CacheBatch` (forked caches of two beams read as one batch) report the open chunk's query and key positions,
take the chunk's K/V by layer, and return history in key-position order, per batch row."""

from __future__ import annotations

import pytest
import torch

from streamvid.core.cache_batch import CacheBatch
from streamvid.core.kv_cache import AttentionCache, CacheLayout, KVCache

LAYERS, HEADS, DIM, TPF, CHUNK = 2, 2, 4, 3, 2


def _stream(history_chunks: int, fill: float) -> KVCache:
    """A batch-1 cache with ``history_chunks`` committed chunks whose K/V are ``fill + frame``, then the next
    chunk open."""
    cache = KVCache(CacheLayout(chunk_frames=CHUNK), LAYERS, HEADS, DIM)
    for c in range(history_chunks):
        cache.append(c * CHUNK, CHUNK)
        frames = torch.arange(c * CHUNK, (c + 1) * CHUNK).repeat_interleave(TPF).float() + fill
        kv = frames[None, :, None, None].expand(1, CHUNK * TPF, HEADS, DIM).contiguous()
        for layer in range(LAYERS):
            cache.write(layer, kv, -kv)
        cache.commit()
    cache.append(history_chunks * CHUNK, CHUNK)
    return cache


def _kv_cache():
    """One stream: its one row's history is frames 0..3."""
    return _stream(2, fill=0.0), [0.0]


def _cache_batch():
    """Two beams with different histories, 2 + 1 candidate rows: rows 0, 1 read beam 0's, row 2 beam 1's."""
    beams = [_stream(2, fill=0.0), _stream(2, fill=100.0)]
    return CacheBatch([b.fork() for b in beams], [2, 1]), [0.0, 0.0, 100.0]


@pytest.mark.parametrize("make", [_kv_cache, _cache_batch], ids=["KVCache", "CacheBatch"])
def test_attention_cache_contract(make):
    cache, row_fill = make()
    assert isinstance(cache, AttentionCache)
    batch = len(row_fill)
    # positions: the open chunk (frames 4, 5) after the history (frames 0..3)
    assert cache.query_positions().tolist() == [4, 5]
    assert cache.key_positions().tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(RuntimeError, match="not written"):  # history is read after the layer's write
        cache.history(0)
    # write: the chunk's un-roped K/V, [B, n*T, heads, head_dim], layer by layer
    for layer in range(LAYERS):
        new = torch.randn(batch, CHUNK * TPF, HEADS, DIM)
        cache.write(layer, new, 2 * new)
    # history: [B, F_hist*T, heads, head_dim] in key-position order, each row its own stream's history
    for layer in range(LAYERS):
        k, v = cache.history(layer)
        assert k.shape == v.shape == (batch, 4 * TPF, HEADS, DIM)
        expected = torch.stack([torch.arange(4.0).repeat_interleave(TPF) + fill for fill in row_fill])
        torch.testing.assert_close(k[..., 0, 0], expected)
        torch.testing.assert_close(v, -k)
    # broadcast=False: one row when the whole batch shares one history, else one row per batch row
    k1, _ = cache.history(0, broadcast=False)
    assert k1.shape[0] == (1 if len(set(row_fill)) == 1 else batch)
