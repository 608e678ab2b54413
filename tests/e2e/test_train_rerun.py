"""`streamvid-train` re-runs (issue 21 §4), through the real console script on the tiny conv teacher: a re-run with
other settings is refused naming the fields (the record of the finished run stays), the same config or
`--allow-config-change` resumes, and Ctrl-C saves the step it stopped at as `last.ckpt`."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.console_scripts import ENV, error_line, run_script, script

TINY = ["model.conv.width=8", "data.pool=16", "trainer.progress_bar=false", "trainer.log_every=1",
        "trainer.batch_size=2"]


def _teacher(out: Path, *overrides: str, flags: tuple[str, ...] = ()) -> list[str]:
    sets = [a for o in (f"output_dir={out}", *TINY, *overrides) for a in ("--set", o)]
    return ["teacher", "--config", "configs/train/shapes_teacher.yaml", *sets, *flags]


def test_a_rerun_with_other_settings_is_refused_and_keeps_the_record(tmp_path):
    out = tmp_path / "teacher"
    first = run_script("streamvid-train", *_teacher(out, "trainer.max_steps=2"))
    assert first.returncode == 0, first.stderr[-2000:]
    records = {p: p.read_bytes() for p in (out / "train_config.yaml", out / "run" / "train_config.yaml")}
    umask = os.umask(0)
    os.umask(umask)
    exported = [out / "config.json", out / "diffusion_pytorch_model.safetensors", *records]
    assert {stat.S_IMODE(p.stat().st_mode) for p in exported} == {0o666 & ~umask}  # the umask's mode, not 0600

    line = error_line(run_script("streamvid-train", *_teacher(out, "trainer.max_steps=2", "optim.lr=0.0005")),
                      "streamvid-train")
    assert f"run_dir {out / 'run'} holds a run trained with other settings (optim.lr 0.001 -> 0.0005)" in line, line
    assert "--allow-config-change" in line
    assert all(p.read_bytes() == text for p, text in records.items())  # the finished run's record is untouched

    again = run_script("streamvid-train", *_teacher(out, "trainer.max_steps=3"))  # same settings, one step more
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stderr and "at step 2" in again.stderr

    changed = run_script("streamvid-train", *_teacher(out, "trainer.max_steps=4", "optim.lr=0.0005"),
                         "--allow-config-change")
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "lr: 0.0005" in (out / "run" / "train_config.yaml").read_text()


@pytest.mark.slow
def test_ctrl_c_saves_the_step_it_stopped_at_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "teacher"
    args = _teacher(out, "trainer.max_steps=100000", "trainer.checkpoint_every=100000")
    proc = subprocess.Popen([str(script("streamvid-train")), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    metrics = out / "run" / "logs" / "csv" / "version_0" / "metrics.csv"
    deadline = time.monotonic() + 240  # a guard against a hang, not a timing assertion
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 4) and proc.poll() is None:
        assert time.monotonic() < deadline, "the run logged no steps"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupt: stopping after this step" in stderr
    ckpt = torch.load(out / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    step = int(ckpt["global_step"])
    assert 2 <= step < 100000
    assert f"teacher: interrupted at step {step} of 100000; saved {out / 'run' / 'checkpoints' / 'last.ckpt'}" in stderr
    assert stderr.rstrip().endswith("streamvid-train: interrupted")

    resumed = run_script("streamvid-train", *_teacher(out, f"trainer.max_steps={step + 1}",
                                                     "trainer.checkpoint_every=100000"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {step}" in resumed.stderr
    final = torch.load(out / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert int(final["global_step"]) == step + 1
