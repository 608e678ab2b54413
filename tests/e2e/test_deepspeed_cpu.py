"""DeepSpeed ZeRO-2 / ZeRO-3 on 2 CPU processes (gloo) with the two-network engine: one `GroupedAdamW` over
generator + critic, TTUR, manual gradient accumulation (`set_accumulation_boundary`), per-group clipping.

Each test launches ``tests/distill_helpers.py`` (Lightning relaunches it for rank 1) and reads back what every
rank wrote. The 1-process reference is the same module on a plain Trainer (no DeepSpeed), in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import distill_helpers as helpers
import pytest
import torch

pytestmark = pytest.mark.slow

HELPERS = Path(helpers.__file__)
# fp32 on both sides; measured max abs differences are ~3e-8 (params) and ~1.5e-8 (losses, grad norms).
ATOL = 1e-6


def launch(tmp_path: Path, *args: str) -> list[dict]:
    """Run the 2-rank worker; the per-rank results."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(HELPERS), "--out", str(tmp_path), *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world"] for r in results] == [2, 2] and [r["rank"] for r in results] == [0, 1]
    return results


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys=None) -> float:
    keys = sorted(a) if keys is None else keys
    diff = max((a[k] - b[k]).abs().max().item() for k in keys)
    assert diff <= ATOL, diff
    return diff


def assert_records_close(run: list[dict], ref: list[dict]) -> float:
    assert [r["step"] for r in run] == [r["step"] for r in ref]
    diff = max(abs(x[k] - y[k]) for x, y in zip(run, ref) for k in x)
    assert diff <= ATOL, (diff, run, ref)
    return diff


@pytest.mark.parametrize("mode", ["zero2", "zero3"])
def test_critic_only_step_leaves_generator_bit_identical(tmp_path, mode):
    # Step 0 steps both groups (so the generator has AdamW state), step 1 only the critic.
    for result in launch(tmp_path, "--mode", mode, "--steps", "2", "--probe", "inactive"):
        before, after = result["checks"]["before"], result["checks"]["after"]
        for name, value in before["params"].items():  # full (gathered) parameters
            same = torch.equal(value, after["params"][name])
            assert same if name.startswith("generator.") else not same, name
        # this rank's flat fp32 master partition and its AdamW state (exp_avg, exp_avg_sq, step)
        gen, gen_after = before["state"]["generator"], after["state"]["generator"]
        assert {"param0", "param0.exp_avg", "param0.exp_avg_sq", "param0.step"} <= set(gen)
        assert all(torch.equal(gen[k], gen_after[k]) for k in gen)
        critic, critic_after = before["state"]["critic"], after["state"]["critic"]
        assert not torch.equal(critic["param0"], critic_after["param0"])
        assert critic_after["param0.step"] == critic["param0.step"] + 1 == 2


def test_zero2_matches_one_process_run(tmp_path):
    # 4 steps, accumulation 2, TTUR 2 (generator at steps 0 and 2), both groups clipped; each rank half the batch.
    results = launch(tmp_path / "ds", "--mode", "zero2", "--steps", "4")
    ref = helpers.run("plain", _mkdir(tmp_path / "plain"), 4, 1, 2, 2, 8, False, "", False)
    assert ref["records"][0]["generator_grad_norm"] > helpers.GEN["max_grad_norm"]  # the clip is active
    for result in results:
        assert_records_close(result["records"], ref["records"])
        assert_close(result["final"], ref["final"])
    moved = max((ref["final"][k] - ref["initial"][k]).abs().max().item() for k in ref["final"])
    assert moved > 1e-2  # the parameters did move, far beyond ATOL


def test_zero3_frozen_module_trains_only_trainable_groups_and_resumes(tmp_path):
    results = launch(tmp_path / "ds", "--mode", "zero3", "--real", "--steps", "2", "--resume")
    ref = helpers.run("plain", _mkdir(tmp_path / "plain"), 2, 1, 2, 2, 8, True, "", False)
    for result in results:
        final, initial = result["final"], result["initial"]
        for name in final:
            same = torch.equal(final[name], initial[name])
            assert same if name.startswith("real.") else not same, name
        # ZeRO-3 accumulation equals the 1-process run too
        assert_records_close(result["records"], ref["records"])
        assert_close(final, ref["final"])
        # the checkpoint leaves the frozen teacher out; resuming restores the trainable weights exactly
        assert result["saved_module_keys"] and not any(".real." in k for k in result["saved_module_keys"])
        trainable = [k for k in final if not k.startswith("real.")]
        assert all(torch.equal(result["resumed_start"][k], final[k]) for k in trainable)
        assert [r["step"] for r in result["resumed_records"]] == [2]
        # ... and the frozen teacher keeps the values the resumed module was built with
        frozen = result["resumed_frozen_init"]
        assert frozen and all(torch.equal(result["resumed_final"][k], v) for k, v in frozen.items())


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
