"""The per-rank memory plan of `streamvid-train r1 --dry-run` (`streamvid.distill.r1_plan`): its arithmetic
against hand-computed values, the paper rows against docs/reproduction.md §4, the dry run's output and errors,
and the loading dtypes (frozen networks read straight into bf16, the TF32 switch)."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from streamvid.core.config import load_config
from streamvid.distill.dmd_config import DMDStageConfig
from streamvid.distill.r1_plan import NetworkCount, activation_estimate, count_networks, plan_memory, plan_r1

ROW = "experiments/stream_r1/stream_r1.yaml"


def test_plan_arithmetic_by_hand():
    """student 100, critic 200, real 1000 parameters on 4 ranks (every number below computed by hand)."""
    z2 = plan_memory(student=100, critic=200, real=1000, world_size=4, zero_stage=2, bf16_engine=True,
                     frozen_itemsize=2, extra_frozen_bytes=10, activation_bytes=7, bucket_elements=5)
    assert (z2.parameters, z2.gradients, z2.optimizer_states, z2.frozen_weights, z2.ema) == (600, 150, 900, 2010, 200)
    assert (z2.activations, z2.buffers, z2.device_total) == (7, 10, 600 + 150 + 900 + 2010 + 200 + 7 + 10)
    assert (z2.host_peak_loading, z2.host_peak_loading_fp32) == (4 * 300 + 2 * 1000 + 10, 4 * 1300 + 10)
    fp32_engine = plan_memory(student=100, critic=200, real=1000, world_size=4, zero_stage=2, bf16_engine=False,
                              frozen_itemsize=2, loading_transient_bytes=50)
    # Lightning converts the engine's modules to fp32 under 32-true: the bf16-loaded real score too
    assert (fp32_engine.parameters, fp32_engine.gradients, fp32_engine.frozen_weights) == (1200, 300, 4000)
    assert fp32_engine.host_peak_loading == 4 * 300 + 2 * 1000 + 50  # + the mapped file while reading it
    z3 = plan_memory(student=100, critic=200, real=1000, world_size=4, zero_stage=3, bf16_engine=True,
                     frozen_itemsize=2, max_live_elements=400, largest_module=30, extra_frozen_bytes=10,
                     loading_transient_bytes=50)
    assert (z3.parameters, z3.gradients, z3.optimizer_states, z3.frozen_weights, z3.ema) == (150, 150, 900, 510, 200)
    assert z3.live_gathered == 2 * 400  # DeepSpeed keeps at most max_live elements gathered
    # zero.Init: (300 + 1000) x 2 B / 4 ranks, one 30-parameter module gathered and read (12 B each), the extras;
    # no mapped weight file (read a module at a time)
    assert z3.host_peak_loading == 1300 * 2 / 4 + 12 * 30 + 10
    assert plan_memory(student=100, critic=200, real=1000, world_size=4, zero_stage=3, bf16_engine=False,
                       frozen_itemsize=2, max_live_elements=10**9).live_gathered == 4 * 1300  # all of it
    plain = plan_memory(student=100, critic=200, real=1000, world_size=1, zero_stage=0, bf16_engine=False,
                        frozen_itemsize=4, bucket_elements=5)
    assert plain.buffers == 0  # no DeepSpeed, no buckets
    assert (plain.parameters, plain.gradients, plain.optimizer_states, plain.frozen_weights, plain.ema) == (
        1200, 1200, 2400, 4000, 400)
    with pytest.raises(ValueError, match="zero_stage"):
        plan_memory(student=1, critic=1, real=1, world_size=2, zero_stage=1, bf16_engine=True, frozen_itemsize=2)


def test_activation_estimate_by_hand():
    net = NetworkCount("student", 0, "", dim=4, ffn_dim=10, num_layers=3)
    # checkpointing: block inputs 12 tokens x 3 layers x 4 x 2 B + one chunk (3 tokens) x (18*4 + 2*10) x 2 B
    assert activation_estimate(net, 12, 3, 2, True) == 12 * 3 * 4 * 2 + 3 * 92 * 2
    assert activation_estimate(net, 12, 3, 2, False) == 12 * 3 * 92 * 2


def test_paper_rows_match_the_reproduction_guide():
    """docs/reproduction.md §4: model states per GPU, GB = 1e9 B: ZeRO-2 on 8 GPUs 39.2, ZeRO-3 9.2 (+ the VAE,
    which the guide leaves out), with the parameter counts of the three Wan networks built on the meta device."""
    cfg = load_config(ROW, schema=DMDStageConfig)
    nets = count_networks(cfg)
    assert nets["real"].params == pytest.approx(14.288e9, rel=1e-3)
    assert nets["student"].params == nets["critic"].params == pytest.approx(1.419e9, rel=1e-3)
    vae = 2 * 126_892_531  # the Wan2.1 VAE in bf16 (codec.dtype)
    for zero3, devices, expected in ((False, 8, 39.2), (True, 8, 9.25), (False, 16, 36.7), (True, 16, 4.62)):
        row = replace(cfg, trainer=replace(cfg.trainer, devices=devices), dmd=replace(cfg.dmd,
                      gradient_accumulation_steps=64 // devices),
                      deepspeed=replace(cfg.deepspeed, zero_stage=3 if zero3 else 2))
        plan, _ = plan_r1(row)
        states = plan.parameters + plan.gradients + plan.optimizer_states + plan.frozen_weights - vae
        assert states / 1e9 == pytest.approx(expected, abs=0.06)
    plan, _ = plan_r1(cfg)
    assert plan.host_peak_loading_fp32 / 1e9 == pytest.approx(68.5 + 4 * 126_892_531 / 1e9, abs=0.05)  # §5 today
    # real score read straight into bf16, one 10 GB shard mapped at a time: 11.35 + 28.58 + 0.25 + 10 GB
    assert plan.host_peak_loading / 1e9 == pytest.approx(4 * 2.838 + 2 * 14.288 + 0.254 + 10, abs=0.05)


def _dry_run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamvid.distill.cli", "r1", "--dry-run", *args],
                          capture_output=True, text=True, timeout=300)


def test_dry_run_prints_the_plan_then_names_the_missing_weights():
    proc = _dry_run("--config", ROW)
    assert proc.returncode == 2
    assert "memory plan per rank: experiments/stream_r1/stream_r1.yaml, world size 8, ZeRO-2, bf16" in proc.stdout
    assert "real       14.288 B parameters  (teacher_model: (config))" in proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "streamvid-train: error: student: model directory not found: weights/self_forcing/ode_init"]


def test_dry_run_zero3_on_one_process_is_refused_before_the_plan():
    proc = _dry_run("--config", "experiments/stream_r1/stream_r1_zero3.yaml", "--set", "trainer.devices=1")
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("streamvid-train: error: ") and "zero_stage=3" in line and "world size" in line


@pytest.mark.parametrize("overrides, message", [
    (["trainer.devices=3"], "dmd.rollouts_per_step=64 is not divisible by trainer.batch_size x world size = 1 x 3"),
    (["trainer.devices=4"], "1 x 8 x 4 = 32: set dmd.gradient_accumulation_steps=16"),
])
def test_world_size_must_keep_the_global_batch(overrides, message):
    from streamvid.core.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(ROW, overrides, schema=DMDStageConfig)
    cfg = load_config(ROW, ["trainer.devices=4", "dmd.gradient_accumulation_steps=16"], schema=DMDStageConfig)
    assert cfg.dmd.rollouts_per_step == 64
    two_nodes = ["trainer.num_nodes=2", "dmd.gradient_accumulation_steps=4"]  # docs/reproduction.md's launch
    assert load_config(ROW, two_nodes, schema=DMDStageConfig).trainer.num_nodes == 2


def test_dry_run_of_the_shapes_row_checks_every_path_and_dtype():
    proc = _dry_run("--config", "configs/train/shapes_r1.yaml", "--set", "frozen_dtype=bfloat16")
    assert proc.returncode == 0, proc.stderr
    assert "teacher: assets/shapes/teacher: stored F32, loaded as bfloat16" in proc.stdout
    assert proc.stdout.rstrip().endswith("every weight path exists")


def test_frozen_network_is_read_straight_into_its_dtype():
    from streamvid.distill.networks import load_model_dir

    fp32 = load_model_dir("assets/shapes/teacher", "teacher")
    bf16 = load_model_dir("assets/shapes/teacher", "teacher", dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    for (name, a), (_, b) in zip(fp32.state_dict().items(), bf16.state_dict().items(), strict=True):
        assert torch.equal(a.to(torch.bfloat16), b), name


def test_tf32_switch_is_set_at_stage_start():
    from streamvid.distill.stages import run_stage

    cfg = load_config(ROW, schema=DMDStageConfig)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        seen = run_stage(cfg, lambda c: None, lambda: None,
                         lambda _: (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        assert cfg.trainer.tf32 and seen == (True, True)
        off = replace(cfg, trainer=replace(cfg.trainer, tf32=False, threads=1))
        assert run_stage(off, lambda c: None, lambda: None,
                         lambda _: torch.backends.cuda.matmul.allow_tf32) is False
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
        torch.set_num_threads(1)
