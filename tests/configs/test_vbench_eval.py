"""configs/eval/vbench_stream_r1.yaml: VBench's prompt list x 5 seeds of the paper-scale student, sharded by rank."""

from __future__ import annotations

import subprocess
import sys

from streamvid.core.config import load_config
from streamvid.eval.runner_config import EvalConfig

CONFIG = "configs/eval/vbench_stream_r1.yaml"


def test_vbench_config_is_five_seeds_of_the_stream_r1_generator(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    cfg = load_config(CONFIG, schema=EvalConfig)
    assert cfg.seed_list() == [0, 1, 2, 3, 4] and cfg.export.enabled
    assert cfg.generator.device == "cuda:3"  # each torchrun rank on its own GPU
    cache = cfg.generator.sampler.cache
    assert (cache.sink_frames, cache.local_attn_frames, cache.eviction) == (3, 9, "ema_sink")
    assert (cfg.num_frames, cfg.generator.height, cfg.generator.width) == (21, 480, 832)


def test_missing_prompt_list_is_one_line():
    # device=cpu: on a CPU-only torch the config's cuda:0 is refused first (its own one line)
    proc = subprocess.run([sys.executable, "-m", "streamvid.eval.cli", "--config", CONFIG,
                           "--set", "generator.device=cpu"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "streamvid-eval: error: prompt file not found: weights/prompts/vbench_all_dimension.txt"]
