"""The attention window follows the reference code's arithmetic (`local_attn_size` counts the sink).

Self-Forcing / Reward Forcing / LongLive keep one flat K/V buffer of `local_attn_size` frames per layer
(streaming-anchors.md 1.4): a new chunk is appended at the end; when it would overflow the buffer, everything
after the first `sink_size` frames is shifted left by the overflow, and attention covers the last
`local_attn_size` frames, current chunk included. `reference_attended` replays that in frame indices; the
tests check `KVCache` / `BlockCausal` against it and stream a tiny model under the reference's mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from streamvid.core.causal_wan import BlockCausal
from streamvid.core.config import load_config
from streamvid.core.kv_cache import CacheLayout, KVCache
from streamvid.core.sampler_config import SamplerConfig


def reference_attended(num_chunks: int, chunk: int, local_attn_size: int, sink_size: int) -> list[list[int]]:
    """Frames attended by each chunk's queries under the reference's flat-buffer arithmetic."""
    buffer: list[int] = []  # frame index of each buffer position, in buffer order
    attended = []
    for c in range(num_chunks):
        overflow = len(buffer) + chunk - local_attn_size
        if overflow > 0:  # shift the content after the sink left by the evicted frames
            buffer = buffer[:sink_size] + buffer[sink_size + overflow :]
        buffer += list(range(c * chunk, (c + 1) * chunk))
        attended.append(buffer[-local_attn_size:])
    return attended


@dataclass(frozen=True)
class _ReferenceMask(BlockCausal):
    """A `BlockCausal` whose frame mask is the reference's attended sets (query chunk c -> its frames)."""

    local_attn_size: int = 0

    def frame_mask(self, num_frames, device=None):
        n = self.chunk_frames
        mask = torch.zeros(num_frames, num_frames, dtype=torch.bool, device=device)
        for c, keys in enumerate(reference_attended(num_frames // n, n, self.local_attn_size, self.sink_frames)):
            mask[c * n : (c + 1) * n, keys] = True
        return mask


@pytest.mark.parametrize("local_attn, sink", [(9, 3), (12, 3), (9, 0), (6, 3)])
def test_cache_holds_the_reference_frames(local_attn, sink):
    """Sink + window + open chunk of `KVCache` equal the reference's attended frames at every chunk."""
    chunk, chunks = 3, 10
    expected = reference_attended(chunks, chunk, local_attn, sink)
    layout = CacheLayout(chunk_frames=chunk, sink_frames=sink, local_attn_frames=local_attn)
    assert layout.rolling_frames == local_attn - sink
    cache = KVCache(layout, 1, 1, 2)
    mask = BlockCausal(chunk, sink, local_attn).frame_mask(chunks * chunk)
    for c in range(chunks):
        cache.append(c * chunk, chunk)
        for layer in range(1):
            cache.write(layer, torch.zeros(1, chunk, 1, 2), torch.zeros(1, chunk, 1, 2))
        held = cache.sink_frame_indices + cache.window_frame_indices + list(range(c * chunk, (c + 1) * chunk))
        assert sorted(held) == expected[c]
        assert mask[c * chunk].nonzero().flatten().tolist() == expected[c]
        cache.commit()
    assert len(expected[-1]) == local_attn  # from the first eviction on, exactly local_attn_size frames


def test_reward_forcing_attends_nine_frames_after_eviction():
    """Reward Forcing's `local_attn_size=9, sink_size=3`: 3 sink + 6 recent (the old 3 + 9 kept one chunk more)."""
    attended = reference_attended(7, 3, 9, 3)
    assert attended[2] == list(range(9))  # the buffer is full
    assert attended[3] == [0, 1, 2, 6, 7, 8, 9, 10, 11]  # the first eviction: frames 3-5 leave
    assert attended[4] == [0, 1, 2, 9, 10, 11, 12, 13, 14]
    cfg = load_config("configs/sampler/reward_forcing.yaml", schema=SamplerConfig)
    assert (cfg.cache.sink_frames, cfg.cache.local_attn_frames, cfg.cache.rolling_frames) == (3, 9, 6)


def test_streaming_a_tiny_model_matches_the_reference_window(tiny_causal_wan):
    """Stream 8 chunks with the Reward-Forcing layout (drop eviction, absolute RoPE): equal to one full forward
    under the reference's attended sets; the pre-fix window (3 sink + 9) departs from it."""
    chunk, frames, sink, local_attn = 3, 24, 3, 9
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 4, frames, 8, 8, generator=g)
    text = torch.randn(1, 5, 16, generator=g)
    t = torch.rand(1, frames, generator=g) * 1000
    ref_mask = _ReferenceMask(chunk, sink, local_attn_size=local_attn)

    def stream(layout):
        cache = KVCache.for_model(tiny_causal_wan, layout)
        ctx = tiny_causal_wan.encode_text(text)
        outs = []
        for start in range(0, frames, chunk):
            cache.append(start, chunk)
            outs.append(tiny_causal_wan(x[:, :, start : start + chunk], t[:, start : start + chunk],
                                        text_context=ctx, kv_cache=cache).sample)
            cache.commit()
        return torch.cat(outs, dim=2)

    with torch.no_grad():
        ref = tiny_causal_wan(x, t, text, block_causal=ref_mask).sample
        out = stream(CacheLayout(chunk_frames=chunk, sink_frames=sink, local_attn_frames=local_attn))
        old = stream(CacheLayout(chunk_frames=chunk, sink_frames=sink, local_attn_frames=sink + 9))
    assert (out - ref).abs().max() <= 1e-5
    first_eviction = 3 * chunk  # chunk 3 is the first whose reference window has dropped a frame
    assert (out[:, :, :first_eviction] - old[:, :, :first_eviction]).abs().max() <= 1e-5
    assert (old[:, :, first_eviction:] - ref[:, :, first_eviction:]).abs().max() > 1e-3


def test_old_window_frames_key_migrates(tmp_path):
    """`window_frames` (recent frames besides the sink) loads as `local_attn_frames = sink + window`, warned."""
    (tmp_path / "old.yaml").write_text("cache:\n  window_frames: 9\n  sink_frames: 3\n")
    with pytest.warns(FutureWarning, match=r"cache.window_frames.*old name.*local_attn_frames=12"):
        cfg = load_config(tmp_path / "old.yaml", schema=SamplerConfig)
    assert (cfg.cache.local_attn_frames, cfg.cache.rolling_frames) == (12, 9)
    with pytest.warns(FutureWarning):
        cfg = load_config("configs/sampler/reward_forcing.yaml", ["cache.window_frames=null"], schema=SamplerConfig)
    assert cfg.cache.local_attn_frames is None
    with pytest.raises(ValueError, match=r"wrong type for 'cache.window_frames' \(old name\) in command line"):
        load_config(tmp_path / "old.yaml", ["cache.window_frames=many"], schema=SamplerConfig)
    (tmp_path / "both.yaml").write_text("cache:\n  window_frames: 6\n  local_attn_frames: 9\n")
    with pytest.raises(ValueError, match="keep only 'cache.local_attn_frames'"):
        load_config(tmp_path / "both.yaml", schema=SamplerConfig)


def test_shipped_train_configs_still_load():
    """The shipped students' `train_config.yaml` (written with `window_frames: null`) load with the same meaning."""
    from pathlib import Path

    from streamvid.distill.dmd_config import DMDStageConfig
    from streamvid.distill.stage_config import StudentStageConfig

    schemas = {"student": StudentStageConfig, "dmd_student": DMDStageConfig, "stream_r1_student": DMDStageConfig}
    for name, schema in schemas.items():
        path = Path("assets/shapes") / name / "train_config.yaml"
        with pytest.warns(FutureWarning, match="window_frames"):
            cfg = load_config(path, schema=schema)
        assert cfg.sampler.cache.local_attn_frames is None and cfg.sampler.cache.sink_frames == 0
