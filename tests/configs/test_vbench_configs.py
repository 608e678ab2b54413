"""VBench's prompt list x 5 seeds at paper scale, sharded by rank: configs/eval/vbench_stream_r1.yaml (the Stream-R1
student evaluated) and configs/infer/vbench_stream_t1.yaml (Stream-T1 search with the 5 s row's student)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from streamvid.core.config import load_config
from streamvid.eval.runner_config import EvalConfig
from streamvid.tts.batch import InferT1BatchConfig

CONFIG = "configs/eval/vbench_stream_r1.yaml"
T1_CONFIG = "configs/infer/vbench_stream_t1.yaml"


def test_vbench_config_is_five_seeds_of_the_stream_r1_generator(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    cfg = load_config(CONFIG, schema=EvalConfig)
    assert cfg.seed_list() == [0, 1, 2, 3, 4] and cfg.export.enabled
    assert cfg.generator.device == "cuda:3"  # each torchrun rank on its own GPU
    cache = cfg.generator.sampler.cache
    assert (cache.sink_frames, cache.local_attn_frames, cache.eviction) == (3, 9, "ema_sink")
    assert (cfg.num_frames, cfg.generator.height, cfg.generator.width) == (21, 480, 832)


def test_vbench_t1_config_is_five_seeds_of_the_5_second_row_one_gpu_per_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    cfg = load_config(T1_CONFIG, schema=InferT1BatchConfig)
    assert cfg.seed_list() == [0, 1, 2, 3, 4] and cfg.prompts == load_config(CONFIG, schema=EvalConfig).prompts
    # each torchrun rank puts the student and both rewards on its own GPU
    assert (cfg.generator.device, cfg.reward.videoalign.device, cfg.short_reward.clip_frames.device) == ("cuda:3",) * 3
    row = load_config("experiments/stream_t1/stream_t1_5s.yaml", schema=InferT1BatchConfig)
    assert cfg.search == row.search and cfg.num_frames == row.num_frames == 21
    assert replace(cfg.generator, device="cuda") == row.generator  # otherwise the 5 s row's student, as it is


@pytest.mark.parametrize(("module", "config", "prog"), [
    ("streamvid.eval.cli", CONFIG, "streamvid-eval"), ("streamvid.tts.cli", T1_CONFIG, "streamvid-infer-t1")])
def test_missing_prompt_list_is_one_line(module: str, config: str, prog: str):
    # device=cpu: on a CPU-only torch the config's cuda:0 is refused first (its own one line)
    proc = subprocess.run([sys.executable, "-m", module, "--config", config, "--set", "generator.device=cpu"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"{prog}: error: prompt file not found: weights/prompts/vbench_all_dimension.txt"]
