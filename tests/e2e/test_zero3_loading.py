"""ZeRO-3 construction (issue 20 §1): a network built under ``deepspeed.zero.Init`` by
`load_model_dir_partitioned` on 2 gloo processes holds, gathered, exactly the values `load_model_dir` reads, while
each rank stores only its half of every parameter; a directory with a tensor the network lacks is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from streamvid.core.model_config import WanModelConfig
from streamvid.distill.networks import build_wan, load_model_dir

pytestmark = pytest.mark.slow

HELPER = Path(__file__).resolve().parents[1] / "zero3_load_helper.py"


def test_partitioned_loading_equals_whole_loading_with_half_the_parameters_per_rank(tmp_path: Path):
    torch.manual_seed(0)
    sizes = WanModelConfig(num_attention_heads=2, attention_head_dim=16, ffn_dim=64, num_layers=2, text_dim=32,
                           in_channels=4, out_channels=4)
    build_wan(sizes, zero_init=False).save_pretrained(tmp_path / "model", safe_serialization=True)
    bad = tmp_path / "bad"
    build_wan(sizes, zero_init=False).save_pretrained(bad, safe_serialization=True)
    tensors = load_file(bad / "diffusion_pytorch_model.safetensors")
    save_file({**tensors, "extra.weight": torch.zeros(3)}, bad / "diffusion_pytorch_model.safetensors")
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(HELPER), "--model",
                           str(tmp_path / "model"), "--bad", str(bad), "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    whole = load_model_dir(tmp_path / "model", "student")
    expected = dict(whole.named_parameters())
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["world"] == 2
        assert result["values"].keys() == expected.keys()
        for name, value in result["values"].items():
            assert torch.equal(value, expected[name].detach()), name
            full = result["full_numel"][name]
            assert full == expected[name].numel() and result["local_numel"][name] == (full + 1) // 2, name
        for name, value in whole.named_buffers():
            assert torch.equal(result["buffers"][name], value), name
        assert result["error"] is not None and result["error"].startswith("critic: ")
        assert "extra.weight" in result["error"] and str(bad) in result["error"]
