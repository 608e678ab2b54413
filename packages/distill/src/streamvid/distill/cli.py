"""`streamvid-train <stage> --config PATH [--set key=value ...]`: the training stages of the shapes world.

Stages (schemas in `streamvid.distill.stage_config`, YAMLs in `configs/train/`):

* ``teacher``: flow matching of a conv U-Net (or ``model.kind=wan``) with prompt dropout, a fixed number of
  steps; writes the EMA model as a diffusers directory (``output_dir``) and checkpoints / logs (``run_dir``);
* ``ode-pairs``: the teacher's guided Euler ODE solutions recorded at the student's few-step levels;
* ``student``: the block-causal Wan student regressed onto the pairs (``objective=ode``) or onto the teacher's
  guided flow (``objective=flow_distill``);
* ``r1``: DMD / Stream-R1 of the student from its ODE init (schema `streamvid.distill.dmd_config.DMDStageConfig`),
  in one process or on DeepSpeed ZeRO (``deepspeed.enabled=true trainer.devices=2``);
* ``shapes-reward``: the learned shapes reward trained on oracle targets, a plain CPU loop (schema
  `streamvid.distill.shapes_reward_config.ShapesRewardStageConfig`; no checkpoints to resume).

A run resumes from ``<run_dir>/checkpoints/last.ckpt`` when it exists (``--resume PATH`` for another
checkpoint, ``--resume never`` to start over), with the settings of its ``train_config.yaml``: other settings
are refused, naming the fields, unless ``--allow-config-change`` (``trainer.max_steps``, threads and the progress
bar may always change). Ctrl-C stops at the end of the current step and saves it as ``last.ckpt`` (a second
Ctrl-C aborts at once); the same command then resumes. Bad input (unknown key, wrong type, a missing teacher or pairs
directory, a checkpoint of another model size) prints one ``error:`` line and exits with code 2 before any
expensive work.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from streamvid.core.cli.errors import run_cli
from streamvid.core.config import load_config

PROG = "streamvid-train"
NO_RESUME = ("ode-pairs", "shapes-reward")
"""Stages without checkpoints to resume (no ``--resume``)."""

EXAMPLES = """\
examples (run from the repository root):
  streamvid-train teacher --config configs/train/shapes_teacher.yaml
  streamvid-train teacher --config configs/train/shapes_teacher.yaml --set trainer.max_steps=200 \\
      --set output_dir=outputs/train/teacher_short
  streamvid-train ode-pairs --config configs/train/shapes_ode_pairs.yaml
  streamvid-train student --config configs/train/shapes_student.yaml --set objective=flow_distill
  streamvid-train r1 --config configs/train/shapes_r1.yaml
  streamvid-train r1 --config experiments/shapes/dmd.yaml --set seed=1 --set output_dir=outputs/train/dmd_s1
  streamvid-train shapes-reward --config configs/train/shapes_reward_rendered.yaml --set steps=20 --set output_dir=/tmp/r
"""


def _stages():
    from streamvid.distill import stage_config as sc
    from streamvid.distill.dmd_config import DMDStageConfig
    from streamvid.distill.shapes_reward_config import ShapesRewardStageConfig

    return {
        "teacher": (sc.TeacherStageConfig, "flow matching of the shapes-world teacher"),
        "ode-pairs": (sc.OdePairsStageConfig, "the teacher's ODE solutions at the student's few-step levels"),
        "student": (sc.StudentStageConfig, "ODE-init regression (or flow distillation) of the causal student"),
        "r1": (DMDStageConfig, "DMD / Stream-R1 of the causal student (reward-weighted distillation)"),
        "shapes-reward": (ShapesRewardStageConfig, "the learned shapes reward, trained on the oracle's scores"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (schema, help_text) in _stages().items():
        p = sub.add_parser(name, help=help_text, description=f"{name}: {help_text}")
        p.add_argument("--config", required=True,
                       help=f"YAML file (schema: {schema.__name__} in {schema.__module__})")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="config override, repeatable (e.g. trainer.max_steps=100)")
        if name == "r1":
            p.add_argument("--dry-run", action="store_true",
                           help="build every network on the meta device, print the per-rank memory plan for the "
                                "row's world size and ZeRO stage, then check every weight path and dtype (exit 2 "
                                "naming the first missing one); trains nothing")
        if name not in NO_RESUME:
            p.add_argument("--resume", default=None, metavar="CKPT",
                           help="checkpoint to resume from, 'auto' (default: run_dir's last.ckpt when present) "
                                "or 'never'")
            p.add_argument("--allow-config-change", action="store_true",
                           help="resume although the settings differ from the run's train_config.yaml (refused "
                                "otherwise, naming the fields)")
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> int:
    schema, _ = _stages()[args.stage]
    cfg = load_config(Path(args.config), args.overrides, schema=schema)
    if getattr(args, "resume", None) is not None:
        cfg = replace(cfg, resume=args.resume)
    if getattr(args, "allow_config_change", False):
        cfg = replace(cfg, allow_config_change=True)
    if getattr(args, "dry_run", False):
        return dry_run(cfg, args.config)
    from streamvid.distill import r1_stage, shapes_reward_stage, stages

    run = {"teacher": stages.run_teacher, "ode-pairs": stages.run_ode_pairs, "student": stages.run_student,
           "r1": r1_stage.run_r1, "shapes-reward": shapes_reward_stage.run_shapes_reward}
    run[args.stage](cfg)
    return 0


def dry_run(cfg, config: str) -> int:
    """``r1 --dry-run``: the memory plan (stdout), then the checks of a real start (`check_r1`) and the stored
    dtype of every weight directory; a missing path raises `ConfigError` (one line, exit 2) after the plan."""
    from streamvid.distill.networks import stored_dtype
    from streamvid.distill.r1_plan import format_plan, plan_r1
    from streamvid.distill.r1_stage import check_r1

    print(format_plan(*plan_r1(cfg), config), flush=True)
    check_r1(cfg)
    for key in ("student", "teacher", "critic"):
        path = getattr(cfg, key)
        if path is not None:
            wanted = cfg.frozen_dtype if key == "teacher" else "float32"
            print(f"  {key}: {path}: stored {stored_dtype(path)}, loaded as {wanted}")
    print("every weight path exists")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, lambda: train(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
