"""`streamvid-train r1`: DMD / Stream-R1 of the causal student (`DMDStageConfig`, `make train-r1`).

``check_r1(cfg)`` reads only configs and ``config.json`` files (the student, the teacher, the critic, local
weight directories of the codec / text encoder / reward at paper scale) so bad input is one `ConfigError` line
before anything is built; ``run_r1(cfg)`` builds the modules, the Lightning Trainer (plain, or DeepSpeed ZeRO
through `CPUDeepSpeedStrategy` on CPU / Lightning's `DeepSpeedStrategy` on GPUs) and trains.

Outputs: ``output_dir`` holds the EMA student as a diffusers directory (`CausalWanModel.from_pretrained`,
``streamvid-generate``) with ``train_config.yaml``, re-exported at every checkpoint; ``run_dir`` the Lightning
checkpoints (``last.ckpt``; a folder under DeepSpeed), CSV / TensorBoard logs, fixed-seed sample grids with
their oracle reading, intra weight maps and per-sample rewards and weights (``samples/``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from streamvid.core.cli.paths import write_resolved_config
from streamvid.core.config import ConfigError
from streamvid.core.dtypes import check_dtype
from streamvid.distill.dmd_config import DMDStageConfig
from streamvid.distill.networks import check_model_dir, check_same_config, wan_sizes
from streamvid.distill.stages import (
    CONFIG_NAME,
    _check_text_dim,
    check_run,
    console_command,
    finished_run_lines,
    log,
    run_stage,
    stop_if_interrupted,
)

__all__ = ["build_dmd_module", "build_modules", "build_networks", "check_r1", "partitioned_networks", "run_r1"]


def check_r1(cfg: DMDStageConfig) -> None:
    """Paths, model directories and sizes, the reward's capabilities (`ConfigError` naming what and where)."""
    check_run(cfg)
    model = cfg.model
    found = check_model_dir(cfg.student, "student")
    if found["_class_name"] not in ("CausalWanModel", "WanTransformer3DModel"):
        raise ConfigError(f"student: {cfg.student} holds a {found['_class_name']}; the student is a CausalWanModel")
    check_same_config(found, wan_sizes(model), cfg.student, "student")
    for key, path in (("teacher", cfg.teacher), ("critic", cfg.critic)):
        if path is None:
            continue
        net = check_model_dir(path, key)
        if key == "teacher" and cfg.teacher_model is not None:
            check_same_config(net, wan_sizes(cfg.teacher_model), path, "teacher (teacher_model)")
        if net.get("in_channels") != model.in_channels:
            raise ConfigError(f"{key}: {path} has {net.get('in_channels')} input channels, the student "
                              f"{model.in_channels}")
        if "text_dim" in net and net["text_dim"] != model.text_dim:
            raise ConfigError(f"{key}: {path} reads text_dim={net['text_dim']}, the student {model.text_dim}")
    if cfg.text_encoder.kind == "shapes_bag":
        _check_text_dim(model.text_dim, "model.text_dim")
    for key, section in (("codec", cfg.codec), ("text_encoder", cfg.text_encoder)):
        if section.path is not None and not Path(section.path).is_dir():
            raise ConfigError(f"{key}.path: directory not found: {section.path}")
    if cfg.codec.kind == "wan_vae" and cfg.codec.path is None:
        raise ConfigError("codec.kind=wan_vae needs codec.path (a local diffusers AutoencoderKLWan directory)")
    if cfg.text_encoder.kind == "umt5" and cfg.text_encoder.path is None:
        raise ConfigError("text_encoder.kind=umt5 needs text_encoder.path (a local UMT5 encoder directory)")
    if cfg.prompts is not None and not Path(cfg.prompts).is_file():
        raise ConfigError(f"prompts: file not found: {cfg.prompts}")
    if cfg.stream_r1.uses_reward:
        cfg.reward.check_paths()
    height, width = cfg.video_size
    ratio = cfg.codec.patch if cfg.codec.kind == "pixel" else 8
    if height % ratio or width % ratio:
        raise ConfigError(f"the video size {height}x{width} is not divisible by the codec's spatial ratio {ratio}")


def partitioned_networks(cfg: DMDStageConfig) -> bool:
    """ZeRO-3: the networks are built inside ``deepspeed.zero.Init`` (`DMDModule.configure_model`), not before."""
    return cfg.deepspeed.enabled and cfg.deepspeed.zero_stage == 3


def build_networks(cfg: DMDStageConfig, partitioned: bool = False):
    """(student, real score, critic) read from their directories (the critic from the teacher's when
    ``critic`` is null), with gradient checkpointing when the config asks.

    ``partitioned`` (ZeRO-3; inside an active ``deepspeed.zero.Init``): each network is constructed partitioned
    and its weights copied into the partitions (`load_model_dir_partitioned`), in zero.Init's dtype (the
    engine's weight dtype, which Lightning gives every module of the engine anyway). Otherwise the student and
    critic are read whole in float32 and the real score straight into ``frozen_dtype``; a critic without a
    directory is a float32 copy of the real score as loaded.
    """
    from streamvid.distill.networks import load_model_dir, load_model_dir_partitioned

    if partitioned:
        student = load_model_dir_partitioned(cfg.student, "student").train()
        real = load_model_dir_partitioned(cfg.teacher, "teacher").eval()
        critic = load_model_dir_partitioned(cfg.critic, "critic") if cfg.critic else \
            load_model_dir_partitioned(cfg.teacher, "teacher")
    else:
        student = load_model_dir(cfg.student, "student").float().train()
        real = load_model_dir(cfg.teacher, "teacher", dtype=check_dtype("frozen_dtype", cfg.frozen_dtype)).eval()
        critic = load_model_dir(cfg.critic, "critic") if cfg.critic else copy.deepcopy(real)
        critic = critic.float()
    critic = critic.train().requires_grad_(True)
    if cfg.gradient_checkpointing:
        for net in (student, critic):
            if getattr(net, "_supports_gradient_checkpointing", False):
                net.enable_gradient_checkpointing()
    return student, real, critic


def build_modules(cfg: DMDStageConfig):
    """(student, real score, critic, reward or None, codec, text encoder) as the config describes them; under
    ZeRO-3 the three networks are None (`DMDModule.configure_model` builds them partitioned)."""
    from streamvid.core.generator import build_codec, build_text_encoder
    from streamvid.core.rewards import build_reward
    from streamvid.core.world import vocabulary

    nets = (None, None, None) if partitioned_networks(cfg) else build_networks(cfg)
    reward = None
    if cfg.stream_r1.uses_reward:
        reward = build_reward(cfg.reward.config())
        if cfg.stream_r1.spatial_reward and not getattr(reward, "differentiable", False):
            raise ConfigError(f"stream_r1.spatial_reward needs a differentiable reward; reward '{cfg.reward.name}' "
                              "is not (set its differentiable option or stream_r1.spatial_reward: false)")
    codec = build_codec(cfg.codec)
    text = build_text_encoder(cfg.text_encoder, cfg.model.text_dim, vocabulary())
    return (*nets, reward, codec, text)


def build_dmd_module(cfg: DMDStageConfig, modules: tuple | None = None):
    """The `DMDModule` of the config: its networks (`build_modules`, or ``modules`` already built; under ZeRO-3
    a `build_networks` callable for `DMDModule.configure_model`) and its injected prompt source (`prompt_source`:
    the prompt file, else the shapes world's train split)."""
    from streamvid.distill.dmd_module import DMDModule
    from streamvid.distill.prompts import prompt_source

    later = (lambda: build_networks(cfg, partitioned=True)) if partitioned_networks(cfg) else None
    return DMDModule(*(modules if modules is not None else build_modules(cfg)), cfg, prompt_source(cfg),
                     build_networks=later)


def build_callbacks(cfg: DMDStageConfig, run_dir: Path) -> list:
    """What the stage writes beside training: `DMDSamples` (per-sample JSONL, sample grids read by the pixel
    oracle, intra weight maps) under ``run_dir/samples``. The sample prompts are the shapes world's val prompts
    whatever the training prompts are, since the oracle reads the shapes world."""
    from streamvid.distill.dmd_callbacks import DMDSamples
    from streamvid.distill.prompts import WorldPrompts

    prompts = WorldPrompts(cfg.world).fixed(cfg.sample_prompts)
    return [DMDSamples(run_dir / "samples", prompts, cfg.sample_every, cfg.sampler, cfg.seed)]


class _Steps(torch.utils.data.IterableDataset):
    """``{"step": k}`` for k from the module's restored ``global_step`` to ``stop - 1``: read when iteration
    starts, which Lightning does after restoring a checkpoint, so a resumed run continues at its step."""

    def __init__(self, module, stop: int) -> None:
        super().__init__()
        self.module, self.stop = module, stop

    def __iter__(self):
        for k in range(int(self.module.global_step), self.stop):
            yield {"step": k}


def _strategy(cfg: DMDStageConfig):
    if not cfg.deepspeed.enabled:
        return "auto"
    from streamvid.distill.deepspeed_cpu import CPUDeepSpeedStrategy, deepspeed_config

    ds = deepspeed_config(cfg.deepspeed.zero_stage, bf16=cfg.trainer.precision.startswith("bf16")
                          and cfg.trainer.accelerator != "cpu")
    if cfg.trainer.accelerator == "cpu":
        return CPUDeepSpeedStrategy(config=ds)
    from lightning.pytorch.strategies import DeepSpeedStrategy

    return DeepSpeedStrategy(config=ds)


def run_r1(cfg: DMDStageConfig, callbacks: Sequence = ()) -> Path:
    """Train; returns ``output_dir`` (the EMA student). ``callbacks``: extra Lightning callbacks (after the
    stage's own: checkpoints, export, `build_callbacks`), e.g. a benchmark's probe."""
    return run_stage(cfg, check_r1, lambda: build_modules(cfg), lambda nets: _fit(cfg, nets, callbacks))


def _fit(cfg: DMDStageConfig, nets, callbacks: Sequence = ()) -> Path:
    """The DMD module over `build_modules`' networks, its Lightning fit and the exports."""
    import lightning.pytorch as pl

    from streamvid.distill.networks import export_model
    from streamvid.distill.trainer import build_trainer, interrupted_step, resolve_resume

    run_dir, out_dir = cfg.run_path, Path(cfg.output_dir)
    ckpt_path = resolve_resume(cfg.resume, run_dir) if cfg.resume != "auto" else _last_checkpoint(run_dir)
    module = build_dmd_module(cfg, nets)
    if ckpt_path is not None and ckpt_path.is_file():
        _check_resumed_weights(ckpt_path, module)
    write_resolved_config(cfg, run_dir / CONFIG_NAME)

    class Export(pl.Callback):
        """The exported model (EMA) into output_dir every checkpoint_every steps and at the end (rank 0)."""

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            step = trainer.global_step
            if step % cfg.trainer.checkpoint_every == 0 or (cfg.snapshot_every and step % cfg.snapshot_every == 0):
                export(trainer)

    def export(trainer) -> None:
        from streamvid.core.pipeline import write_pipeline_index
        from streamvid.distill.deepspeed_cpu import gathered

        model = module.exported_model()
        step = trainer.global_step
        with gathered(model):
            if trainer.is_global_zero:
                export_model(model, out_dir)
                write_resolved_config(cfg, out_dir / CONFIG_NAME)
                write_pipeline_index(out_dir, dataclasses.asdict(cfg.codec), dataclasses.asdict(cfg.text_encoder),
                                     cfg.sampler, *cfg.video_size)
                if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                    export_model(model, out_dir / "snapshots" / f"step_{step:06d}")

    from streamvid.distill.r1_plan import count_networks

    n = count_networks(cfg)["student"].params  # from config.json: under ZeRO-3 the student is not built yet
    mode = _describe(cfg)
    where = f"DeepSpeed ZeRO-{cfg.deepspeed.zero_stage} on {cfg.trainer.devices} process(es)" \
        if cfg.deepspeed.enabled else "one process"
    log(f"r1: {mode} of a {n / 1e6:.2f} M-parameter student ({cfg.student}) from {cfg.teacher}, "
        f"{cfg.trainer.max_steps} optimiser steps x {cfg.dmd.gradient_accumulation_steps} micro-steps of batch "
        f"{cfg.trainer.batch_size}, {where}; run dir {run_dir}"
        + (f", resuming {ckpt_path}" if ckpt_path is not None else ""))
    trainer = build_trainer(cfg.trainer, run_dir, callbacks=[Export(), *build_callbacks(cfg, run_dir), *callbacks],
                            strategy=_strategy(cfg))
    loader = torch.utils.data.DataLoader(_Steps(module, cfg.trainer.max_steps), batch_size=None)
    trainer.fit(module, train_dataloaders=loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
    if trainer.is_global_zero:
        stop_if_interrupted(trainer, run_dir, "r1")
    elif interrupted_step(trainer) is not None:
        raise KeyboardInterrupt
    export(trainer)
    if trainer.is_global_zero:
        log(f"r1: wrote the student to {out_dir} (a pipeline folder: StreamVidPipeline.from_pretrained(\"{out_dir}\"))")
        log(finished_run_lines("r1", run_dir, samples=run_dir / "samples"))
        log("r1: stream a video with it:\n"
            f"  {console_command('streamvid-generate')} --config configs/generate/shapes_student.yaml --set generator.checkpoint={out_dir} "
            f"--prompt \"a red circle moving left\" --out outputs/generate/r1.mp4")
    return out_dir


def _describe(cfg: DMDStageConfig) -> str:
    r1 = cfg.stream_r1
    if not r1.uses_reward:
        return "plain DMD"
    parts = [f"exp({r1.beta:g} r) with r = {r1.reward_mode}"] if r1.reward_weighting else []
    if r1.spatial_reward:
        parts.append("intra saliency weights" + (" (temporal x spatial)" if r1.temporal_saliency_weighting else ""))
    return f"Stream-R1 ({', '.join(parts)}; reward {cfg.reward.name})"


def _last_checkpoint(run_dir: Path) -> Path | None:
    """``run_dir/checkpoints/last.ckpt``: a file (plain Lightning) or a folder (DeepSpeed), or None."""
    from streamvid.distill.trainer import checkpoint_dir

    last = checkpoint_dir(run_dir) / "last.ckpt"
    return last if last.exists() else None


def _check_resumed_weights(path: Path, module) -> None:
    """A plain Lightning checkpoint must hold the trained networks of this config (sizes), before training."""
    from streamvid.distill.trainer import check_checkpoint

    probe = torch.nn.Module()
    probe.nets = torch.nn.ModuleDict({k: module.nets[k] for k in ("generator", "critic")})
    check_checkpoint(path, probe)
