"""The training stages of the shapes world: teacher, ODE pairs, ODE-init student (`streamvid-train <stage>`).

Each stage is ``check_<stage>(cfg)`` then ``run_<stage>(cfg)``; the training stages (and `r1_stage.run_r1`) start
through one sequence, `run_stage`: check -> threads and seed -> build -> fit and export:

* the check reads only configs, file headers and ``config.json`` files (no Lightning, no rendering, no model),
  so bad input (a missing teacher or pairs directory, a model of another size, a grid without the student's
  levels, an unwritable output) is a one-line `ConfigError` within seconds;
* the run builds the modules, checks a resumed checkpoint against them, then does the expensive work (render
  the data pool / load the pairs, train or sample) and writes its outputs atomically.

Outputs: `teacher` / `student` write the EMA model as a diffusers directory into ``output_dir`` (at every
checkpoint and at the end) with ``train_config.yaml`` (the resolved config), and Lightning checkpoints and
CSV / TensorBoard logs into ``run_dir`` (default ``<output_dir>/run``); `ode-pairs` writes
``pairs.safetensors``, ``prompts.json`` and ``train_config.yaml`` into ``output_dir``.
"""

from __future__ import annotations

import dataclasses
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from streamvid.core.cli.paths import check_output_dir, write_resolved_config
from streamvid.core.config import ConfigError, load_config
from streamvid.core.world import vocabulary
from streamvid.distill.networks import check_model_dir, check_same_config, conv_kwargs, wan_sizes
from streamvid.distill.ode_pairs import few_step_grid_indices, latent_patch, read_pairs_header
from streamvid.distill.stage_config import (
    NoiseLevelsConfig,
    OdePairsStageConfig,
    RunConfig,
    ShapesDataConfig,
    StudentStageConfig,
    TeacherStageConfig,
)

__all__ = [
    "check_ode_pairs",
    "check_student",
    "check_teacher",
    "run_ode_pairs",
    "run_stage",
    "run_student",
    "run_teacher",
]

C = TypeVar("C", bound=RunConfig)
B = TypeVar("B")

CONFIG_NAME = "train_config.yaml"
"""The resolved config, next to a stage's outputs (config.json is the model's own, written by diffusers)."""


def log(message: str) -> None:
    """A progress line on stderr, from the first process only (DeepSpeed and torchrun runs start one per rank;
    the rank comes from the launcher's environment, as Lightning reads it: ``RANK``, else ``LOCAL_RANK``)."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0:
        print(message, file=sys.stderr, flush=True)


def console_command(name: str) -> str:
    """How to run this environment's console script ``name`` from the current folder, as printed for the user to
    copy (e.g. ``.venv/bin/streamvid-generate``; absolute when the environment lies elsewhere)."""
    path = Path(sys.executable).with_name(name)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def finished_run_lines(what: str, run_dir: Path, samples: Path | None = None) -> str:
    """The end of a training run: where its checkpoints, logs and samples are, and the TensorBoard command."""
    where = f"{what}: checkpoints in {run_dir / 'checkpoints'}, logs in {run_dir / 'logs'}"
    if samples is not None:
        where += f", sample grids (read by the oracle) in {samples}"
    return f"{where}\n{what}: curves: {console_command('tensorboard')} --logdir {run_dir / 'logs' / 'tensorboard'}"


# ---------------------------------------------------------------------------------------------- checks


def _check_text_dim(text_dim: int, key: str) -> None:
    words = len(vocabulary())
    if text_dim < words:
        raise ConfigError(f"'{key}'={text_dim} is smaller than the bag-of-words vocabulary ({words} words)")


def check_run(cfg: RunConfig) -> None:
    """The `RunConfig` part of a training stage's check: writable output and run directories, a resume file."""
    check_output_dir(cfg.output_dir, "output_dir")
    check_output_dir(cfg.run_path, "run_dir")
    if cfg.resume not in ("auto", "never") and not Path(cfg.resume).is_file():
        raise ConfigError(f"resume: checkpoint not found: {cfg.resume} (give a .ckpt file, 'auto' or 'never')")
    check_same_run(cfg)


RESUME_MAY_CHANGE = ("resume", "allow_config_change", "trainer.max_steps", "trainer.threads", "trainer.progress_bar")
"""Settings a resumed run may change without `allow_config_change`: where it resumes from, how far it trains,
and how it shows progress (nothing that changes what a step computes)."""


def check_same_run(cfg: RunConfig) -> None:
    """Refuse to resume a run whose recorded ``train_config.yaml`` differs from ``cfg`` (`ConfigError` naming the
    fields): resuming trains on with the checkpoint's settings, and the rewritten record would claim new ones.

    Only when a checkpoint would be resumed (``resume`` auto with ``last.ckpt`` in run_dir, or a path) and
    ``allow_config_change`` is false; `RESUME_MAY_CHANGE` may always differ.
    """
    last = Path(cfg.run_path) / "checkpoints" / "last.ckpt"
    resuming = cfg.resume not in ("auto", "never") or (cfg.resume == "auto" and last.exists())
    record = Path(cfg.run_path) / CONFIG_NAME
    if not resuming or cfg.allow_config_change or not record.is_file():
        return
    try:
        old = load_config(record, schema=type(cfg))
    except ConfigError as err:
        raise ConfigError(f"run_dir {cfg.run_path}: cannot read the recorded {CONFIG_NAME} to compare ({err}); "
                          "resume with --allow-config-change or start over with --resume never") from None
    before, now = _flat(dataclasses.asdict(old)), _flat(dataclasses.asdict(cfg))
    changed = [k for k in sorted(before.keys() | now.keys())
               if before.get(k) != now.get(k) and not any(k == f or k.startswith(f"{f}.") for f in RESUME_MAY_CHANGE)]
    if changed:
        shown = "; ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
        more = f"; and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ConfigError(
            f"run_dir {cfg.run_path} holds a run trained with other settings ({shown}{more}); resuming would "
            f"train on from its checkpoint and rewrite its {CONFIG_NAME}: use the same config, another output_dir, "
            "--resume never to start over, or --allow-config-change to resume with the new settings"
        )


def _flat(data: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b": value}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_init(path: str, key: str, classes: tuple[str, ...], wanted: dict[str, Any]) -> None:
    found = check_model_dir(path, key)
    if found["_class_name"] not in classes:
        raise ConfigError(f"{key}: {path} holds a {found['_class_name']}; this stage trains a {' or '.join(classes)}")
    check_same_config(found, wanted, path, key)


def _check_wan_channels(model, channels: int, key: str) -> None:
    if model.in_channels != channels or model.out_channels != channels:
        raise ConfigError(
            f"'{key}.in_channels'/'{key}.out_channels' are {model.in_channels}/{model.out_channels}; the latents have "
            f"{channels} channels"
        )


def check_teacher(cfg: TeacherStageConfig) -> None:
    """Everything `run_teacher` needs that can be checked without building it (`ConfigError` otherwise)."""
    check_run(cfg)
    channels = cfg.data.latent_channels
    _check_text_dim(cfg.model.text_dim, f"model.{cfg.model.kind}.text_dim")
    if cfg.model.kind == "wan":
        _check_wan_channels(cfg.model.wan, channels, "model.wan")
    if cfg.model.init_from:
        if cfg.model.kind == "conv":
            _check_init(cfg.model.init_from, "model.init_from", ("ConvFlowNet",), conv_kwargs(cfg.model.conv, channels))
        else:
            _check_init(cfg.model.init_from, "model.init_from", ("CausalWanModel", "WanTransformer3DModel"),
                        wan_sizes(cfg.model.wan))


def check_ode_pairs(cfg: OdePairsStageConfig) -> dict[str, Any]:
    """Check the teacher directory, the grid and the output; returns the teacher's config.json."""
    check_output_dir(cfg.output_dir, "output_dir")
    teacher = check_model_dir(cfg.teacher, "teacher")
    try:
        patch = latent_patch(int(teacher.get("in_channels", 0)))
    except ConfigError as err:
        raise ConfigError(f"teacher: {cfg.teacher}: {err}") from None
    if cfg.world.height % patch or cfg.world.width % patch:
        raise ConfigError(f"world: {cfg.world.height}x{cfg.world.width} frames do not split into the teacher's "
                          f"{patch}x{patch} pixel patches")
    _check_text_dim(int(teacher.get("text_dim", 0)), "teacher text_dim")
    few_step_grid_indices(cfg.num_steps, cfg.grid_shift, cfg.sampler.schedule())
    return teacher


def check_student(cfg: StudentStageConfig) -> dict[str, Any] | None:
    """Check the pairs (objective ode) or the teacher (flow_distill), sizes and paths; returns the pairs header."""
    check_run(cfg)
    model, chunk = cfg.model, cfg.chunk_frames
    _check_text_dim(model.text_dim, "model.text_dim")
    if model.in_channels != model.out_channels:
        raise ConfigError(f"'model.in_channels' ({model.in_channels}) must equal 'model.out_channels' ({model.out_channels})")
    if cfg.init_from:
        _check_init(cfg.init_from, "init_from", ("CausalWanModel", "WanTransformer3DModel"), wan_sizes(model))
    if cfg.objective == "flow_distill":
        data = cfg.flow_distill.data
        _check_wan_channels(model, data.latent_channels, "model")
        teacher = check_model_dir(cfg.teacher, "teacher")
        if teacher.get("in_channels") != model.in_channels:
            raise ConfigError(f"teacher: {cfg.teacher} has {teacher.get('in_channels')} input channels, the student "
                              f"{model.in_channels}")
        if teacher.get("text_dim") != model.text_dim:
            raise ConfigError(f"teacher: {cfg.teacher} reads text_dim={teacher.get('text_dim')}, the student "
                              f"model.text_dim={model.text_dim}; they share one bag-of-words token")
        if data.world.num_frames % chunk:
            raise ConfigError(f"the sampler's chunk_frames={chunk} must divide the world's {data.world.num_frames} frames")
        return None
    header = read_pairs_header(cfg.pairs, "pairs")
    n, k, c, t, h, w = header["shapes"]["x_levels"]
    if c != model.in_channels:
        raise ConfigError(f"pairs: {cfg.pairs} holds {c}-channel latents, model.in_channels is {model.in_channels}")
    if t % chunk:
        raise ConfigError(f"pairs: {cfg.pairs} has {t} frames, not a multiple of the sampler's chunk_frames={chunk}")
    _, p_h, p_w = model.patch_size
    if h % p_h or w % p_w:
        raise ConfigError(f"pairs: {cfg.pairs} latents are {h}x{w}, not divisible by model.patch_size {list(model.patch_size)}")
    schedule = cfg.sampler.schedule()
    wanted = schedule.timesteps.double() / schedule.num_train_timesteps
    saved = header["sigmas"].double()
    if saved.shape != wanted.shape or (saved - wanted).abs().max() > 1e-5:
        raise ConfigError(
            f"pairs: {cfg.pairs} were recorded at sigmas {[round(float(s), 4) for s in saved]}, the student's sampler "
            f"(denoising_steps={list(cfg.sampler.denoising_steps)}, shift={cfg.sampler.shift}) steps at "
            f"{[round(float(s), 4) for s in wanted]}; regenerate the pairs with this sampler"
        )
    return header


# ---------------------------------------------------------------------------------------------- data


def flow_batches(latents, specs, codec, data: ShapesDataConfig, noise: NoiseLevelsConfig, chunk: int,
                 batch_size: int, seed: int):
    """``draw(step)``: a data batch ``{x0, prompts, sigma, noise}`` that depends only on (seed, step)."""
    from streamvid.distill.flow_matching import frame_noise_levels
    from streamvid.distill.shapes_data import draw_batch, step_seed

    def draw(step: int) -> dict:
        s = step_seed(seed, step)
        x0, prompts = draw_batch(latents, specs, batch_size, random.Random(s), codec, data.p_uncond,
                                 flip=data.flip, reverse=data.reverse)
        g = torch.Generator().manual_seed(s)
        sigma = frame_noise_levels(batch_size, x0.shape[2], chunk, noise.shift, noise.p_chunk_noise, generator=g)
        return {"x0": x0, "prompts": prompts, "sigma": sigma, "noise": torch.randn(x0.shape, generator=g)}

    return draw


def pair_batches(pairs, batch_size: int, chunk: int, per_chunk: bool, p_uncond: float, seed: int):
    """``draw(step)``: ``{x_t, sigma, x0, prompts}``: random pairs, each chunk's input at a random few-step level
    (``per_chunk``; else one level per sample), from (seed, step) only."""
    from streamvid.distill.shapes_data import step_seed

    n, k, c, t, h, w = pairs.x_levels.shape
    chunks = t // chunk

    def draw(step: int) -> dict:
        g = torch.Generator().manual_seed(step_seed(seed, step))
        idx = torch.randint(n, (batch_size,), generator=g)
        level = torch.randint(k, (batch_size, chunks if per_chunk else 1), generator=g).expand(batch_size, chunks)
        level = level.repeat_interleave(chunk, dim=1)  # [B, T]
        index = level[:, None, None, :, None, None].expand(batch_size, 1, c, t, h, w)
        x_t = pairs.x_levels[idx].gather(1, index).squeeze(1)
        drop = (torch.rand(batch_size, generator=g) < p_uncond).tolist()
        prompts = ["" if d else pairs.prompts[i] for d, i in zip(drop, idx.tolist())]
        return {"x_t": x_t, "sigma": pairs.sigmas[level], "x0": pairs.x0[idx], "prompts": prompts}

    return draw


# ---------------------------------------------------------------------------------------------- training


def _fit(cfg, module, make_draw, what: str) -> Path:
    """Resume check, data, Lightning fit and the final export, shared by the teacher and student stages."""
    from torch.utils.data import DataLoader

    from streamvid.distill.networks import export_model
    from streamvid.distill.shapes_data import StepBatches
    from streamvid.distill.trainer import ExportCallback, build_trainer, check_checkpoint, resolve_resume

    run_dir, out_dir, trainer_cfg = cfg.run_path, Path(cfg.output_dir), cfg.trainer
    ckpt_path, start = resolve_resume(cfg.resume, run_dir), 0
    if ckpt_path is not None:
        ckpt = check_checkpoint(ckpt_path, module)
        start = int(ckpt["global_step"])
        if start >= trainer_cfg.max_steps:
            module.load_state_dict(ckpt["state_dict"], strict=True)
        del ckpt
    write_resolved_config(cfg, run_dir / CONFIG_NAME)

    def export(m) -> None:
        export_model(m.ema.module, out_dir)
        write_resolved_config(cfg, out_dir / CONFIG_NAME)

    params = sum(p.numel() for p in module.net.parameters())
    resumed = f", resuming {ckpt_path} at step {start}" if ckpt_path is not None else ""
    log(f"{what}: {type(module.net).__name__} with {params / 1e6:.2f} M parameters, {trainer_cfg.max_steps} steps "
        f"of batch {trainer_cfg.batch_size}{resumed}; run dir {run_dir}")
    if start >= trainer_cfg.max_steps:
        log(f"{what}: the checkpoint is already at step {start} >= max_steps; exporting it")
    else:
        draw = make_draw()
        trainer = build_trainer(trainer_cfg, run_dir, grad_clip=cfg.optim.grad_clip,
                                callbacks=[ExportCallback(export, trainer_cfg.checkpoint_every)])
        loader = DataLoader(StepBatches(draw, trainer_cfg.max_steps, start), batch_size=None)
        trainer.fit(module, train_dataloaders=loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
        stop_if_interrupted(trainer, run_dir, what)
    export(module)
    log(f"{what}: wrote the EMA model to {out_dir} (from_pretrained)")
    log(finished_run_lines(what, run_dir))
    return out_dir


def stop_if_interrupted(trainer, run_dir: Path, what: str) -> None:
    """After ``trainer.fit``: when Ctrl-C stopped it (`StopOnInterrupt`), say where the step was saved and raise
    `KeyboardInterrupt` (the CLI exits with 130) instead of exporting an unfinished run as finished."""
    from streamvid.distill.trainer import LAST, checkpoint_dir, interrupted_step

    step = interrupted_step(trainer)
    if step is not None:
        log(f"{what}: interrupted at step {step} of {trainer.max_steps}; saved {checkpoint_dir(run_dir) / LAST} "
            "(the same command resumes from it)")
        raise KeyboardInterrupt


def run_stage(cfg: C, check: Callable[[C], Any], build: Callable[[], B], fit: Callable[[B], Path]) -> Path:
    """The start-up of every training stage: ``check(cfg)`` (configs and files only, `ConfigError` before any
    building), torch threads and the seed, ``build()`` (the stage's networks, in the seeded RNG state), then
    ``fit(built)`` (train and export; returns ``output_dir``)."""
    check(cfg)
    import lightning.pytorch as pl

    torch.set_num_threads(cfg.trainer.threads)
    torch.backends.cuda.matmul.allow_tf32 = cfg.trainer.tf32
    torch.backends.cudnn.allow_tf32 = cfg.trainer.tf32
    pl.seed_everything(cfg.seed, verbose=False)
    return fit(build())


def _init_weights(net: torch.nn.Module, path: str | None, key: str) -> None:
    if path:
        from streamvid.distill.networks import load_model_dir

        net.load_state_dict(load_model_dir(path, key).state_dict())


def run_teacher(cfg: TeacherStageConfig) -> Path:
    """Flow matching of the teacher on the shapes world (`TeacherStageConfig`); returns ``output_dir``."""
    return run_stage(cfg, check_teacher, lambda: _build_teacher(cfg), lambda built: _fit(cfg, *built, "teacher"))


def _build_teacher(cfg: TeacherStageConfig):
    """(the `FlowMatchingModule`, ``make_draw``)."""
    from streamvid.core.causal_wan import BlockCausal
    from streamvid.core.codecs import PixelCodec
    from streamvid.distill.lightning_modules import FlowMatchingModule
    from streamvid.distill.networks import build_conv, build_wan
    from streamvid.distill.shapes_data import make_pool

    codec = PixelCodec(cfg.data.codec_patch)
    if cfg.model.kind == "conv":
        net = build_conv(cfg.model.conv, codec.latent_channels)
    else:
        net = build_wan(cfg.model.wan, cfg.model.zero_init)
    _init_weights(net, cfg.model.init_from, "model.init_from")
    mask = BlockCausal(cfg.chunk_frames) if cfg.block_causal else None
    module = FlowMatchingModule(net, cfg.model.text_dim, cfg.optim, mask)

    def make_draw():
        log(f"teacher: rendering a pool of {cfg.data.pool} train videos")
        latents, specs = make_pool(cfg.data.world, cfg.data.pool, codec)
        return flow_batches(latents, specs, codec, cfg.data, cfg.noise, cfg.chunk_frames, cfg.trainer.batch_size,
                            cfg.seed)

    return module, make_draw


def run_ode_pairs(cfg: OdePairsStageConfig) -> Path:
    """Sample the teacher's ODE pairs (`OdePairsStageConfig`); returns the path of ``pairs.safetensors``."""
    check_ode_pairs(cfg)
    from streamvid.distill.networks import load_model_dir
    from streamvid.distill.ode_pairs import generate_ode_pairs

    torch.set_num_threads(cfg.threads)
    teacher = load_model_dir(cfg.teacher, "teacher").eval()
    out_dir = Path(cfg.output_dir)
    write_resolved_config(cfg, out_dir / CONFIG_NAME)
    log(f"ode-pairs: {cfg.num_pairs} pairs from {cfg.teacher} ({cfg.num_steps} Euler steps, shift {cfg.grid_shift}, "
        f"guidance {cfg.guidance_scale}), recorded at t = {[round(float(t), 1) for t in cfg.sampler.schedule().timesteps]}")
    path = generate_ode_pairs(cfg, teacher, out_dir)
    log(f"ode-pairs: wrote {path}")
    return path


def run_student(cfg: StudentStageConfig) -> Path:
    """ODE-init regression (or flow distillation) of the causal Wan student; returns ``output_dir``."""
    return run_stage(cfg, check_student, lambda: _build_student(cfg), lambda built: _fit(cfg, *built, "student"))


def _build_student(cfg: StudentStageConfig):
    """(the `ODERegressionModule` or `FlowMatchingModule`, ``make_draw``)."""
    from streamvid.core.causal_wan import BlockCausal
    from streamvid.core.codecs import PixelCodec
    from streamvid.distill.lightning_modules import FlowMatchingModule, ODERegressionModule
    from streamvid.distill.networks import build_wan, load_model_dir
    from streamvid.distill.ode_pairs import load_ode_pairs
    from streamvid.distill.shapes_data import make_pool

    net = build_wan(cfg.model, cfg.zero_init)
    _init_weights(net, cfg.init_from, "init_from")
    mask = BlockCausal(cfg.chunk_frames) if cfg.block_causal else None
    batch = cfg.trainer.batch_size
    if cfg.objective == "ode":
        module = ODERegressionModule(net, cfg.model.text_dim, cfg.optim, mask)

        def make_draw():
            pairs = load_ode_pairs(cfg.pairs, "pairs")
            log(f"student: {len(pairs)} ODE pairs from {cfg.pairs}")
            return pair_batches(pairs, batch, cfg.chunk_frames, cfg.level_sampling == "per_chunk", cfg.p_uncond,
                                cfg.seed)
    else:
        fd = cfg.flow_distill
        teacher = load_model_dir(cfg.teacher, "teacher")
        module = FlowMatchingModule(net, cfg.model.text_dim, cfg.optim, mask, teacher=teacher,
                                    guidance=fd.guidance_scale)

        def make_draw():
            codec = PixelCodec(fd.data.codec_patch)
            log(f"student: rendering a pool of {fd.data.pool} train videos")
            latents, specs = make_pool(fd.data.world, fd.data.pool, codec)
            return flow_batches(latents, specs, codec, fd.data, fd.noise, cfg.chunk_frames, batch, cfg.seed)

    return module, make_draw
