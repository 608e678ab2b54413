"""`streamvid-train` stages on tiny sizes: teacher -> ODE pairs -> student, resume, and bad input.

Each stage runs in-process end to end on a config of the shipped YAML with tiny overrides (a width-8 conv
teacher on a 16-video pool, a one-layer Wan student, a few steps), so the whole file takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from streamvid.core.causal_wan import CausalWanModel
from streamvid.core.cli.paths import write_resolved_config
from streamvid.core.config import ConfigError, load_config
from streamvid.core.conv_flow import ConvFlowNet
from streamvid.core.schedule import FewStepSchedule
from streamvid.distill.ode_pairs import OdePairs, few_step_grid_indices
from streamvid.distill.shapes_data import step_seed
from streamvid.distill.stage_config import OdePairsStageConfig, StudentStageConfig, TeacherStageConfig
from streamvid.distill.stages import pair_batches, run_ode_pairs, run_student, run_teacher

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "train"
BIN = Path(sys.executable).parent
QUIET = ["trainer.progress_bar=false", "trainer.log_every=1", "trainer.batch_size=2"]
TINY_TEACHER = ["model.conv.width=8", "data.pool=16", "trainer.checkpoint_every=2", *QUIET]
TINY_STUDENT = ["model.num_layers=1", "model.num_attention_heads=2", "model.attention_head_dim=8",
                "model.ffn_dim=32", "trainer.max_steps=2", *QUIET]


def teacher_config(out: Path, *overrides: str) -> TeacherStageConfig:
    return load_config(CONFIGS / "shapes_teacher.yaml", [f"output_dir={out}", *TINY_TEACHER, *overrides],
                       schema=TeacherStageConfig)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stages") / "teacher"
    run_teacher(teacher_config(out, "trainer.max_steps=3"))
    return out


@pytest.fixture(scope="module")
def pairs_dir(teacher_dir: Path) -> Path:
    out = teacher_dir.parent / "pairs"
    cfg = load_config(CONFIGS / "shapes_ode_pairs.yaml",
                      [f"teacher={teacher_dir}", f"output_dir={out}", "num_pairs=3", "batch_size=2", "num_steps=8",
                       "progress_bar=false"], schema=OdePairsStageConfig)
    run_ode_pairs(cfg)
    return out


def test_shipped_train_configs_compose_and_round_trip(tmp_path: Path):
    loaded = {}
    for name, schema in (("shapes_teacher", TeacherStageConfig), ("shapes_ode_pairs", OdePairsStageConfig),
                         ("shapes_student", StudentStageConfig)):
        cfg = loaded[name] = load_config(CONFIGS / f"{name}.yaml", schema=schema)
        saved = write_resolved_config(cfg, tmp_path / f"{name}.yaml")
        assert load_config(saved, schema=schema) == cfg
    teacher, pairs, student = loaded.values()
    assert (teacher.output_dir, teacher.run_path, teacher.resume, teacher.seed) == (
        "outputs/train/shapes_teacher", Path("outputs/train/shapes_teacher/run"), "auto", 0)
    assert (teacher.model.kind, teacher.model.conv.width, teacher.data.pool, teacher.chunk_frames) == ("conv", 48, 2048, 3)
    assert (pairs.output_dir, pairs.num_pairs, pairs.num_steps, pairs.grid_shift) == (
        "outputs/train/shapes_ode_pairs", 1536, 24, 5.0)
    assert (student.objective, student.chunk_frames, list(student.sampler.denoising_steps)) == (
        "flow_distill", 3, [1000, 750, 500, 250])
    # guidance is g of c + g (c - u): the shipped standard CFG scale 2 (formerly ``cfg_scale: 2.0``) is g = 1
    assert pairs.guidance_scale == student.flow_distill.guidance_scale == 1.0


def test_teacher_writes_a_diffusers_model_checkpoints_logs_and_its_config(teacher_dir: Path):
    model = ConvFlowNet.from_pretrained(str(teacher_dir))
    assert model.config.width == 8 and model.config.in_channels == 12
    saved = load_config(teacher_dir / "train_config.yaml", schema=TeacherStageConfig)
    assert saved.model.conv.width == 8 and saved.trainer.max_steps == 3
    run = teacher_dir / "run"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    rows = (run / "logs" / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    assert "train/loss" in rows[0] and len(rows) > 3
    assert list((run / "logs" / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    # the exported model is the EMA of the checkpoint
    ema = {k.removeprefix("ema.module."): v for k, v in ckpt["state_dict"].items() if k.startswith("ema.module.")}
    assert all(torch.equal(ema[k], v) for k, v in model.state_dict().items())


def test_resume_continues_the_step_count_and_matches_an_uninterrupted_run(tmp_path: Path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_teacher(teacher_config(straight, "trainer.max_steps=4", "data.pool=8"))
    run_teacher(teacher_config(split, "trainer.max_steps=2", "data.pool=8"))
    run_teacher(teacher_config(split, "trainer.max_steps=4", "data.pool=8"))  # resume=auto: last.ckpt
    last = torch.load(split / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 4 and int(last["state_dict"]["ema.num_updates"]) == 4
    assert (split / "run" / "logs" / "csv" / "version_1").is_dir()  # the first launch's logs are kept
    a = ConvFlowNet.from_pretrained(str(straight)).state_dict()
    b = ConvFlowNet.from_pretrained(str(split)).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_checkpoint_of_another_size_is_refused_before_training(teacher_dir: Path):
    with pytest.raises(ConfigError, match=r"other settings \(model.conv.width 8 -> 16\)"):  # train_config.yaml
        run_teacher(teacher_config(teacher_dir, "model.conv.width=16", "trainer.max_steps=5"))
    with pytest.raises(ConfigError, match="another model"):  # the checkpoint itself, when the change is allowed
        run_teacher(teacher_config(teacher_dir, "model.conv.width=16", "trainer.max_steps=5", "allow_config_change=true"))
    assert torch.load(teacher_dir / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_ode_pairs_are_recorded_at_the_few_step_levels(pairs_dir: Path):
    schedule = FewStepSchedule.from_steps((1000, 750, 500, 250), shift=5.0)
    with safe_open(str(pairs_dir / "pairs.safetensors"), framework="pt") as f:
        sigmas, indices = f.get_tensor("sigmas"), f.get_tensor("grid_indices")
        x_levels, x0 = f.get_tensor("x_levels"), f.get_tensor("x0")
    assert torch.allclose(sigmas * 1000, schedule.timesteps, atol=1e-3)
    assert indices.tolist() == [0, 2, 4, 6]  # num_steps=8
    assert x_levels.shape == (3, 4, 12, 12, 16, 16) and x0.shape == (3, 12, 12, 16, 16)
    noise = torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(step_seed(0, 1)))
    assert torch.equal(x_levels[1, 0], noise)  # level 0 (sigma 1) is the pair's starting noise
    assert len(json.loads((pairs_dir / "prompts.json").read_text())["prompts"]) == 3


def test_the_euler_grid_must_hold_the_few_step_levels():
    schedule = FewStepSchedule.from_steps((1000, 750, 500, 250), shift=5.0)
    assert few_step_grid_indices(24, 5.0, schedule) == [0, 6, 12, 18]
    with pytest.raises(ConfigError, match="misses the student's few-step levels"):
        few_step_grid_indices(24, 8.0, schedule)  # Self-Forcing's pair shift
    with pytest.raises(ConfigError, match="num_steps=10"):
        few_step_grid_indices(10, 5.0, schedule)


def test_pair_batches_draw_one_level_per_chunk():
    levels = torch.arange(4.0)[None, :, None, None, None, None].expand(5, 4, 2, 6, 2, 2).contiguous()
    pairs = OdePairs(levels, torch.zeros(5, 2, 6, 2, 2), torch.tensor([1.0, 0.9, 0.8, 0.6]),
                     [f"p{i}" for i in range(5)], {})
    draw = pair_batches(pairs, batch_size=8, chunk=3, per_chunk=True, p_uncond=0.0, seed=0)
    batch = draw(7)
    chunks = batch["x_t"].unflatten(2, (2, 3))  # [B, C, chunks, 3, h, w]
    assert (chunks == chunks[:, :1, :, :1, :1, :1]).all()  # constant within each chunk
    level = chunks[:, 0, :, 0, 0, 0].long()  # [B, chunks]
    assert torch.equal(batch["sigma"], pairs.sigmas[level].repeat_interleave(3, dim=1))
    assert (level[:, 0] != level[:, 1]).any()  # chunks draw their levels independently
    assert torch.equal(draw(7)["x_t"], batch["x_t"]) and not torch.equal(draw(8)["x_t"], batch["x_t"])


def test_student_regresses_onto_the_pairs_and_exports_a_causal_wan(pairs_dir: Path, tmp_path: Path):
    cfg = load_config(CONFIGS / "shapes_student.yaml",
                      ["objective=ode", f"pairs={pairs_dir}", f"output_dir={tmp_path / 'student'}", *TINY_STUDENT],
                      schema=StudentStageConfig)
    run_student(cfg)
    model = CausalWanModel.from_pretrained(str(tmp_path / "student"))
    assert model.config.num_layers == 1 and model.config.in_channels == 12
    assert (tmp_path / "student" / "train_config.yaml").is_file()
    assert (tmp_path / "student" / "run" / "checkpoints" / "last.ckpt").is_file()


def test_student_flow_distillation_from_the_teacher(teacher_dir: Path, tmp_path: Path):
    cfg = load_config(CONFIGS / "shapes_student.yaml",
                      ["objective=flow_distill", f"teacher={teacher_dir}", "flow_distill.data.pool=8",
                       f"output_dir={tmp_path / 'student'}", *TINY_STUDENT], schema=StudentStageConfig)
    run_student(cfg)
    assert CausalWanModel.from_pretrained(str(tmp_path / "student")).config.num_layers == 1


def test_pairs_for_another_schedule_are_refused(pairs_dir: Path, tmp_path: Path):
    cfg = load_config(CONFIGS / "shapes_student.yaml",
                      ["objective=ode", f"pairs={pairs_dir}", f"output_dir={tmp_path}", "sampler.shift=3.0", *TINY_STUDENT],
                      schema=StudentStageConfig)
    with pytest.raises(ConfigError, match="regenerate the pairs"):
        run_student(cfg)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["teacher", "--config", "configs/train/shapes_teacher.yaml", "--set", "trainer.bogus=1"],
         "unknown key 'trainer.bogus'"),
        (["ode-pairs", "--config", "configs/train/shapes_ode_pairs.yaml", "--set", "teacher=no/such/teacher"],
         "teacher: model directory not found: no/such/teacher"),
    ],
    ids=["unknown-key", "missing-teacher"],
)
def test_console_script_reports_bad_input_in_one_line(args: list[str], needle: str, tmp_path: Path):
    proc = subprocess.run([str(BIN / "streamvid-train"), *args, "--set", f"output_dir={tmp_path / 'out'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamvid-train: error: ") and needle in lines[0], lines
    assert not (tmp_path / "out").exists()
