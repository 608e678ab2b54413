"""The one Lightning Trainer setup of every training stage (teacher, ODE init; DMD / Stream-R1 extend it).

`build_trainer(cfg, run_dir)` gives a `lightning.pytorch.Trainer` with

* ``run_dir/checkpoints/``: `StepCheckpoint` every ``checkpoint_every`` steps and at the last step, the newest
  one kept plus ``last.ckpt`` (Lightning writes checkpoints atomically);
* ``run_dir/logs/csv/version_N/metrics.csv`` and ``run_dir/logs/tensorboard/version_N/`` (a new version per
  launch, so a resumed run never overwrites the logs of the first one);
* the learning rate logged every step, a progress bar, gradient-norm clipping, bf16 autocast or fp32;
* Ctrl-C (`StopOnInterrupt`): the run stops at the end of the step and saves it as ``last.ckpt``.

Resume: `resolve_resume` picks the checkpoint (``auto``: ``last.ckpt`` when it exists) and
`check_checkpoint` compares its weights with the module the config builds *before* any expensive work, so a
checkpoint of another model size is a one-line `ConfigError`, not a traceback after rendering the data.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from streamvid.core.config import ConfigError
from streamvid.distill.stage_config import TrainerConfig

__all__ = [
    "ExportCallback",
    "StepCheckpoint",
    "StepProgressBar",
    "StopOnInterrupt",
    "build_trainer",
    "check_checkpoint",
    "checkpoint_dir",
    "interrupted_step",
    "resolve_resume",
    "tensorboard_writers",
]

LAST = "last.ckpt"

# Expected on CPU with a step-indexed dataset in the main process; not actionable here.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
# Batches are pure functions of the step (`StepBatches` starts at the checkpoint's step): resuming is exact.
warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable.*")
warnings.filterwarnings("ignore", message=r".*GPU available but not used.*")
# DMD's checkpoint holds the state after the step's update and resumes at the next step (exact: tested).
warnings.filterwarnings("ignore", message=r".*Using ModelCheckpoint with manual optimization.*")
# The EMA copy is frozen in eval mode on purpose.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
HARMLESS_WARNINGS = {
    # bf16 autocast hands the fp32 norm weights (diffusers' `_keep_in_fp32_modules`) bf16 inputs; torch then runs
    # the unfused rms_norm kernel, with the same result.
    r"Mismatch dtype between input and weight.*": "bf16 rms_norm dtype",
    # lightning 2.6's pytree helper calls an API torch 2.13 deprecates; not ours to change.
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*": "LeafSpec",
}
"""Known harmless warnings of a training run (message regex -> name), filtered once by `filter_known_warnings`."""


class _DropLitLoggerTip(logging.Filter):
    """Lightning's info line advertising its cloud logger (litlogger) on every fit: runs log to CSV and TensorBoard."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


_LITLOGGER_TIP = _DropLitLoggerTip()


def filter_known_warnings() -> None:
    """Silence `HARMLESS_WARNINGS` and Lightning's litlogger tip (idempotent; run at import of this module)."""
    for message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _LITLOGGER_TIP not in logger.filters:
        logger.addFilter(_LITLOGGER_TIP)


filter_known_warnings()


class StepCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` every N steps that also saves the final step (Lightning only saves on its schedule)."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self._last_global_step_saved != trainer.global_step and trainer.global_step > 0:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)


class StopOnInterrupt(Callback):
    """Ctrl-C stops the run at the end of the current optimiser step, which `StepCheckpoint` then saves as the
    last checkpoint (Lightning alone would lose every step since the previous checkpoint); a second Ctrl-C
    aborts at once. ``interrupted_at`` is the step the run stopped at, or None; the stages exit with code 130.

    Lightning reduces ``should_stop`` over the processes, so every rank stops at the same step.
    """

    def __init__(self) -> None:
        self.requested = False
        self.interrupted_at: int | None = None
        self._previous: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        if self.requested:  # the second Ctrl-C
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: stopping after this step and saving it (Ctrl-C again to abort without saving)",
              file=sys.stderr, flush=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.requested:
            trainer.should_stop = True
            self.interrupted_at = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def interrupted_step(trainer: pl.Trainer) -> int | None:
    """The step a Ctrl-C stopped ``trainer`` at (`StopOnInterrupt`), or None when it ran to ``max_steps``."""
    return next((cb.interrupted_at for cb in trainer.callbacks if isinstance(cb, StopOnInterrupt)), None)


class StepProgressBar(TQDMProgressBar):
    """A progress bar over the optimiser steps of the whole run (a resumed run starts at its checkpoint's step),
    showing the module's ``progress_metrics`` (e.g. `DMDModule`'s losses and mean reward) besides Lightning's."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps)
        bar.initial = bar.n = trainer.global_step
        bar.set_description("steps")
        bar.refresh()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar, n = self.train_progress_bar, trainer.global_step
        if bar is not None and self._should_update(n, bar.total):
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module))
            bar.refresh()

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        """Lightning's bar metrics without the logger version, plus the module's ``progress_metrics``."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics | getattr(pl_module, "progress_metrics", {})


class ExportCallback(Callback):
    """Call ``export(module)`` every ``every_n_steps`` optimiser steps (the stage exports the final model itself)."""

    def __init__(self, export: Callable[[pl.LightningModule], Any], every_n_steps: int) -> None:
        self.export, self.every_n_steps = export, every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0 and trainer.is_global_zero:
            self.export(pl_module)


def tensorboard_writers(loggers) -> list:
    """The SummaryWriters of the TensorBoard loggers among ``loggers`` (`build_trainer` adds one)."""
    return [lg.experiment for lg in loggers if isinstance(lg, TensorBoardLogger)]


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def build_trainer(
    cfg: TrainerConfig,
    run_dir: str | Path,
    *,
    grad_clip: float = 0.0,
    callbacks: Sequence[Callback] = (),
    **overrides: Any,
) -> pl.Trainer:
    """The stages' Trainer: ``cfg.max_steps`` optimiser steps, checkpoints and logs under ``run_dir``.

    Args:
        cfg: the trainer section of a stage config.
        run_dir: where checkpoints (``checkpoints/``) and logs (``logs/``) go.
        grad_clip: gradient-norm clip value (0: off).
        callbacks: extra callbacks (after the checkpoint and learning-rate callbacks).
        overrides: further `Trainer` keyword arguments (e.g. ``strategy=`` for DeepSpeed).
    """
    run_dir = Path(run_dir)
    logs = run_dir / "logs"
    checkpoint = StepCheckpoint(
        dirpath=checkpoint_dir(run_dir),
        filename="{step:07d}",
        save_last=True,
        save_top_k=1,
        every_n_train_steps=cfg.checkpoint_every,
    )
    kwargs: dict[str, Any] = {
        "accelerator": cfg.accelerator,
        "devices": cfg.devices,
        "num_nodes": cfg.num_nodes,
        "precision": cfg.precision,
        "max_steps": cfg.max_steps,
        "max_epochs": -1,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": cfg.log_every,
        "enable_progress_bar": cfg.progress_bar,
        "enable_model_summary": True,
        "gradient_clip_val": grad_clip or None,
        "gradient_clip_algorithm": "norm",
        "logger": [CSVLogger(logs, name="csv"), TensorBoardLogger(logs, name="tensorboard")],
        "callbacks": [
            checkpoint,
            LearningRateMonitor(logging_interval="step"),
            StopOnInterrupt(),
            *([StepProgressBar()] if cfg.progress_bar else []),
            *callbacks,
        ],
        "default_root_dir": str(run_dir),
    }
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)


def resolve_resume(resume: str, run_dir: str | Path) -> Path | None:
    """The checkpoint to resume from: ``auto`` -> ``run_dir/checkpoints/last.ckpt`` when it exists, ``never`` ->
    None, anything else a checkpoint path that must exist (`ConfigError` otherwise)."""
    if resume == "never":
        return None
    if resume == "auto":
        last = checkpoint_dir(run_dir) / LAST
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise ConfigError(f"resume: checkpoint not found: {path} (give a .ckpt file, 'auto' or 'never')")
    return path


def check_checkpoint(path: str | Path, module: torch.nn.Module) -> dict[str, Any]:
    """Read a Lightning checkpoint (tensors and plain data only) and check that its weights fit ``module``.

    Returns the checkpoint dict (for ``global_step``). Raises `ConfigError` naming the file and the first
    differing parameters when the checkpoint holds another model (other sizes, other layers).
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's input
        raise ConfigError(f"resume: cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"resume: {path} is not a Lightning checkpoint (no state_dict)")
    saved, wanted = ckpt["state_dict"], module.state_dict()
    problems = [f"{k} missing" for k in wanted if k not in saved]
    problems += [f"{k} unexpected" for k in saved if k not in wanted]
    problems += [
        f"{k} {list(saved[k].shape)} there, {list(v.shape)} in the config"
        for k, v in wanted.items()
        if k in saved and tuple(saved[k].shape) != tuple(v.shape)
    ]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ConfigError(
            f"resume: checkpoint {path} holds another model than the config builds ({shown}); "
            "use the config it was trained with, or resume=never"
        )
    return ckpt
