"""Memory arithmetic of streaming inference: the KV cache's bytes for a stream length (issue 20 §1, §4).

`kv_cache_bytes` is what `KVCache` allocates (`KVCache.memory_bytes`): history slots (the layout's
`history_capacity`, or the frames so far without a window) plus the open chunk's buffer, for keys and values
of every layer, `[layers, B, frames*T, heads, head_dim]` each. Training-memory plans (parameters, gradients,
optimizer states, frozen weights, activations) are in `streamvid.distill.r1_plan`.
"""

from __future__ import annotations

import math

from streamvid.core.kv_cache import CacheLayout

__all__ = ["kv_cache_bytes", "latent_frames_for_seconds"]


def latent_frames_for_seconds(seconds: float, fps: int = 16, chunk_frames: int = 3, temporal_ratio: int = 4) -> int:
    """Latent frames of a `seconds`-long video: `1 + fps*s` pixel frames (Wan: 81 frames = 5 s at 16 fps) ->
    `1 + fps*s / temporal_ratio` latent frames (the causal VAE), rounded up to whole chunks (5 s -> 21)."""
    latent = 1 + math.ceil(fps * seconds / temporal_ratio)
    return chunk_frames * math.ceil(latent / chunk_frames)


def kv_cache_bytes(layout: CacheLayout, num_layers: int, num_heads: int, head_dim: int, tokens_per_frame: int,
                   num_frames: int, itemsize: int, batch: int = 1) -> int:
    """Bytes of keys + values a `KVCache` holds while the chunk ending at latent frame `num_frames` is open.

    History slots: `layout.history_capacity` with a window (allocated once; flat over the stream), else the
    `num_frames - chunk_frames` committed frames; plus `chunk_frames` for the open chunk.
    """
    chunk = layout.chunk_frames
    history = layout.history_capacity if layout.history_capacity is not None else max(0, num_frames - chunk)
    per_frame = 2 * num_layers * batch * tokens_per_frame * num_heads * head_dim * itemsize
    return (history + chunk) * per_frame
