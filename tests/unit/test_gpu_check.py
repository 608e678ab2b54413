"""bench/gpu_check.py (`make gpu-check`) at tiny sizes on the CPU: the code path the GPU run takes, its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=ENV)


@pytest.mark.slow
def test_tiny_gpu_check_writes_one_consistent_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = _run("--tiny", "--out", out, "--skip-tests", "--compile-backend", "aot_eager")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["size"] == "tiny" and r["dtype"] == "float32" and r["chunk_frames"] == 3
    for mode in ("eager", "compile"):
        s = r["streaming"][mode]
        assert s["chunks"] == 4 and s["pixel_frames"] == 9 + 3 * 12  # causal VAE: 1 + 4 per later latent frame
        assert s["denoise_fps"] > s["end_to_end_fps"] > 0  # decoding only adds time
        assert s["chunk_latency_p95_s"] >= s["chunk_latency_p50_s"] > 0
    assert r["streaming"]["compile"]["backend"] == "aot_eager"
    kv = r["kv_cache"]
    assert [kv[k]["latent_frames"] for k in ("1s", "10s", "30s")] == [6, 42, 123]
    for row in kv.values():
        assert row["planned_bytes"] == row["measured_bytes"]  # the plan is what KVCache allocates
    assert kv["1s"]["measured_bytes"] == kv["30s"]["measured_bytes"]  # the window keeps it flat
    assert kv["30s"]["global_attention_gib"] > 10 * kv["30s"]["planned_gib"]
    for step in ("generator_step", "critic_step"):
        assert r["r1_step"][step]["seconds"] > 0 and torch.isfinite(torch.tensor(r["r1_step"][step]["loss"]))
    assert r["t1_candidates"]["candidates"] == 8 and r["t1_candidates"]["batched_over_sequential"] > 0
    assert r["shapes_student"]["chunks"] == 4
    assert "Reward Forcing / Stream-R1 23.1" in proc.stdout  # the table prints the anchors


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_without_cuda_and_without_tiny_one_error_line(tmp_path):
    proc = _run("--out", tmp_path / "x.json")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "gpu_check: error: no CUDA device: run on a GPU machine, or pass --tiny for the CPU run at tiny sizes"]
    assert not (tmp_path / "x.json").exists()
