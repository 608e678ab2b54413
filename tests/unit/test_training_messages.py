"""What a training run tells its user: the r1 progress bar's losses and mean reward, the console commands it prints
(runnable as printed: a path to this environment's script, not a bare name), the end-of-run lines."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from streamvid.distill.dmd_module import progress_postfix
from streamvid.distill.stages import console_command, finished_run_lines


def test_progress_postfix_shows_losses_and_the_mean_reward():
    row = {"generator_loss": 0.5, "critic_loss": 0.25, "reward_vq": 0.2, "reward_mq": 0.4, "reward_ta": math.nan,
           "exit_step": 2.0}
    assert progress_postfix(row) == {"g_loss": "0.5", "c_loss": "0.25", "reward": "0.300"}
    assert progress_postfix({"critic_loss": 1.0}) == {"c_loss": "1"}  # a critic-only step of plain DMD


def test_console_command_is_this_environments_script(tmp_path, monkeypatch):
    here = Path(sys.executable).with_name("streamvid-generate")
    assert Path(console_command("streamvid-generate")).resolve() == here.resolve()
    monkeypatch.chdir(here.parent.parent.parent)  # the folder holding .venv
    assert console_command("streamvid-generate") == str(here.relative_to(here.parent.parent.parent))
    monkeypatch.chdir(tmp_path)  # elsewhere: absolute
    assert console_command("tensorboard") == str(Path(sys.executable).with_name("tensorboard"))


def test_finished_run_lines_name_samples_and_tensorboard(tmp_path):
    text = finished_run_lines("r1", tmp_path / "run", samples=tmp_path / "run" / "samples")
    first, second = text.splitlines()
    assert f"sample grids (read by the oracle) in {tmp_path / 'run' / 'samples'}" in first
    assert second.endswith(f"tensorboard --logdir {tmp_path / 'run' / 'logs' / 'tensorboard'}")


def test_known_harmless_warnings_are_filtered_once(caplog):
    """bf16 rms_norm's dtype note, lightning's LeafSpec deprecation and its litlogger tip are silenced where
    `streamvid.distill.trainer` names them; other warnings and log lines still show."""
    import logging
    import warnings

    from streamvid.distill.trainer import filter_known_warnings

    with warnings.catch_warnings(record=True) as caught:
        filter_known_warnings()  # what importing the trainer module did (pytest resets filters per test)
        warnings.warn("Mismatch dtype between input and weight: input dtype = c10::BFloat16, weight dtype = float, "
                      "Cannot dispatch to fused implementation.", UserWarning, stacklevel=1)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
                      "treespec.is_leaf()` instead.", UserWarning, stacklevel=1)
        warnings.warn("a real problem", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a real problem"]
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO):
        rank_zero.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](x)")
        rank_zero.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
