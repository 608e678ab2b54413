"""Stream-T1 paper-scale rows (experiments/stream_t1/): they compose, their student builds on the meta device at
Wan2.1-1.3B size, and their memory and search settings are Stream-T1's (methods.md B.1, B.7)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamvid.core.causal_wan import CausalWanModel
from streamvid.core.config import load_config
from streamvid.tts.cli import InferT1Config

REPO = Path(__file__).resolve().parents[2]
ROWS = sorted((REPO / "experiments" / "stream_t1").glob("*.yaml"))


@pytest.mark.parametrize("row", ROWS, ids=[p.stem for p in ROWS])
def test_row_composes_and_builds_on_meta(row: Path):
    cfg = load_config(row, [], schema=InferT1Config)
    with torch.device("meta"):
        model = CausalWanModel(**cfg.generator.model.to_diffusers_kwargs())
    assert 1.3e9 < sum(p.numel() for p in model.parameters()) < 1.5e9
    cache = cfg.generator.sampler.cache
    # local_attn_size 12 = sink 3 + 9 rolling, max_sink_size 15 (methods.md B.7)
    assert (cache.chunk_frames, cache.sink_frames, cache.local_attn_frames, cache.max_sink_frames) == (3, 3, 12, 15)
    assert cache.rolling_frames == 9 and cache.history_capacity == 24  # (12 + 15 - 3) frames, B.5
    s = cfg.search
    assert (s.children, s.top_k, s.window, s.tau_short, s.tau_long, s.rho, s.alpha_max, s.seed) == (
        2, 2, 10, 0.0, 0.2, -0.1, 0.4, 42)
    assert cfg.reward.name == "videoalign" and cfg.short_reward is not None
    assert (cfg.generator.height, cfg.generator.width, cfg.fps) == (480, 832, 16)
    assert cfg.num_frames % cache.chunk_frames == 0


def test_the_30_second_row_is_the_5_second_row_with_more_frames():
    five = load_config(REPO / "experiments/stream_t1/stream_t1_5s.yaml", [], schema=InferT1Config)
    thirty = load_config(REPO / "experiments/stream_t1/stream_t1_30s.yaml", [], schema=InferT1Config)
    assert (five.num_frames, thirty.num_frames) == (21, 120)
    assert five.search == thirty.search and five.generator == thirty.generator
