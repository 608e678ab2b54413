"""Typed configs of the training stages (`streamvid-train teacher | ode-pairs | student`).

One dataclass per stage, YAMLs in `configs/train/`; shared sections (optimiser, trainer, data, noise levels)
are declared once here. This module imports neither Lightning nor diffusers: loading and validating a config
stays cheap, so bad input fails in about a second.

Every stage config derives from `OutputConfig` (``output_dir``, ``seed``; `ode-pairs`) or `RunConfig` (adds
``run_dir``, ``resume``; the Lightning stages, `DMDStageConfig` too): the keys stay flat (``--set output_dir=...``)
and each is declared once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamvid.core.config import ConfigError, check_at_least, check_choice
from streamvid.core.dtypes import check_dtype
from streamvid.core.model_config import WanModelConfig
from streamvid.core.sampler_config import SamplerConfig
from streamvid.core.world import WorldConfig

__all__ = [
    "ConvNetConfig",
    "FlowDistillConfig",
    "NetConfig",
    "NoiseLevelsConfig",
    "OdePairsStageConfig",
    "OptimConfig",
    "OutputConfig",
    "RunConfig",
    "ShapesDataConfig",
    "StudentStageConfig",
    "TeacherStageConfig",
    "TrainerConfig",
]

PRECISIONS = ("bf16-mixed", "32-true")


@dataclass(kw_only=True)
class OutputConfig:
    """What a stage writes and its seed: top-level keys of every stage YAML (`ode-pairs` has only these)."""

    output_dir: str
    """What the stage produces, with train_config.yaml (the resolved config): the EMA model as a diffusers
    directory (config.json + safetensors; `teacher`, `student`, `r1`) or pairs.safetensors + prompts.json
    (`ode-pairs`). Mandatory: every stage YAML sets it."""
    seed: int = 0
    """Seed of everything random in the stage: the initialisation, and batch / ODE pair / rollout k depends only
    on (seed, k) (and on the process rank r for `r1`)."""

    def __post_init__(self) -> None:
        if not str(self.output_dir).strip():
            raise ConfigError("'output_dir' is empty")


@dataclass(kw_only=True)
class RunConfig(OutputConfig):
    """`OutputConfig` plus the Lightning run of a training stage (`teacher`, `student`, `r1`)."""

    run_dir: str | None = None
    """Lightning checkpoints (checkpoints/last.ckpt) and logs (logs/csv, logs/tensorboard; `r1` also samples/);
    null: <output_dir>/run."""
    resume: str = "auto"
    """auto (last.ckpt of run_dir when it exists), never, or a checkpoint path (CLI: --resume)."""
    allow_config_change: bool = False
    """Resume although run_dir's train_config.yaml records other settings (which it then records); false: such a
    resume is refused, naming the fields (CLI: --allow-config-change)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.run_dir is not None and Path(self.run_dir).resolve() == Path(self.output_dir).resolve():
            raise ConfigError(f"'run_dir' must differ from 'output_dir' ({self.output_dir}); e.g. {self.output_dir}/run")

    @property
    def run_path(self) -> Path:
        """``run_dir``, or ``<output_dir>/run`` when it is null."""
        return Path(self.run_dir) if self.run_dir is not None else Path(self.output_dir) / "run"


@dataclass
class OptimConfig:
    """AdamW with linear warm-up, gradient-norm clipping and an EMA of the weights (the bench recipe)."""

    lr: float = 1e-3
    """Peak learning rate."""
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 100
    """Linear warm-up: step k uses lr * min(1, (k + 1) / warmup_steps)."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0: off)."""
    ema_decay: float = 0.995
    """EMA of the weights with the warm-up decay min(decay, (1 + k) / (10 + k)); the exported model is the EMA."""

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.warmup_steps < 1 or self.grad_clip < 0:
            raise ConfigError(
                f"optim: need lr > 0, warmup_steps >= 1, grad_clip >= 0; got lr={self.lr}, "
                f"warmup_steps={self.warmup_steps}, grad_clip={self.grad_clip}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"'optim.ema_decay' must lie in [0, 1), got {self.ema_decay}")


@dataclass
class TrainerConfig:
    """The Lightning Trainer (`streamvid.distill.trainer.build_trainer`)."""

    max_steps: int = 1850
    """Optimiser steps of the whole run (a resumed run continues to this count)."""
    batch_size: int = 16
    precision: str = "bf16-mixed"
    """bf16-mixed (bf16 autocast, fp32 weights; the bench's recipe on CPU) | 32-true."""
    accelerator: str = "cpu"
    devices: int = 1
    """Processes (GPUs) per node."""
    num_nodes: int = 1
    """Nodes (world size = devices x num_nodes); multi-process runs need deepspeed.enabled."""
    threads: int = 1
    """torch intra-op threads (1 is fastest for these model sizes on a shared CPU); results depend on it."""
    checkpoint_every: int = 250
    """Steps between Lightning checkpoints (and EMA model exports); the last step is always saved."""
    log_every: int = 10
    """Steps between logged rows (CSV, TensorBoard)."""
    progress_bar: bool = True
    tf32: bool = False
    """Let float32 matmuls and convolutions use TF32 on Ampere+ GPUs (`torch.backends.{cuda.matmul,cudnn}
    .allow_tf32`; paper rows: true). No effect on CPUs."""

    def __post_init__(self) -> None:
        check_choice("trainer.precision", self.precision, PRECISIONS)
        check_at_least("trainer", 1, max_steps=self.max_steps, batch_size=self.batch_size, threads=self.threads,
                       checkpoint_every=self.checkpoint_every, log_every=self.log_every, devices=self.devices,
                       num_nodes=self.num_nodes)


@dataclass
class ShapesDataConfig:
    """Shapes-world training videos (`streamvid.distill.shapes_data`)."""

    world: WorldConfig = field(default_factory=WorldConfig)
    pool: int = 2048
    """Train items rendered once (items 0 .. pool-1 of the train split)."""
    codec_patch: int = 2
    """`PixelCodec` space-to-depth factor: latent channels 3 * patch**2 (12 for 2)."""
    p_uncond: float = 0.1
    """Prompt dropout ("" prompt), which classifier-free guidance needs."""
    flip: bool = True
    """Augment by horizontal flips (left <-> right in the prompt)."""
    reverse: bool = True
    """Augment by time reversal (directions reversed and swapped)."""

    def __post_init__(self) -> None:
        if self.pool < 1 or self.codec_patch < 1 or not 0.0 <= self.p_uncond <= 1.0:
            raise ConfigError(
                f"data: need pool >= 1, codec_patch >= 1, 0 <= p_uncond <= 1; got pool={self.pool}, "
                f"codec_patch={self.codec_patch}, p_uncond={self.p_uncond}"
            )
        if self.world.height % self.codec_patch or self.world.width % self.codec_patch:
            raise ConfigError(
                f"data.codec_patch={self.codec_patch} must divide the world's {self.world.height}x"
                f"{self.world.width} frames"
            )

    @property
    def latent_channels(self) -> int:
        return 3 * self.codec_patch**2


@dataclass
class NoiseLevelsConfig:
    """Flow-matching noise levels (`flow_matching.frame_noise_levels`): logit-normal, shifted, per clip or chunk."""

    shift: float = 3.0
    p_chunk_noise: float = 0.0
    """Share of samples with one level per chunk instead of one per clip (diffusion forcing)."""

    def __post_init__(self) -> None:
        if self.shift <= 0 or not 0.0 <= self.p_chunk_noise <= 1.0:
            raise ConfigError(
                f"noise: need shift > 0 and 0 <= p_chunk_noise <= 1; got {self.shift}, {self.p_chunk_noise}"
            )


@dataclass
class ConvNetConfig:
    """`streamvid.core.conv_flow.ConvFlowNet` sizes (in_channels come from the codec)."""

    width: int = 48
    text_dim: int = 64
    cond_dim: int = 128
    freq_dim: int = 64

    def __post_init__(self) -> None:
        if self.width < 8 or self.width % 8:
            raise ConfigError(f"'model.conv.width' must be a positive multiple of 8 (GroupNorm), got {self.width}")


@dataclass
class NetConfig:
    """The network a flow-matching stage trains: a conv U-Net or a Wan transformer."""

    kind: str = "conv"
    """conv (`ConvFlowNet`, FiLM conditioning) | wan (`CausalWanModel` sized by `wan`)."""
    conv: ConvNetConfig = field(default_factory=ConvNetConfig)
    wan: WanModelConfig = field(default_factory=WanModelConfig)
    """Sizes when kind=wan (mount a fragment such as model/shapes_probe.yaml); in/out channels = the codec's."""
    zero_init: bool = True
    """wan: zero the residual-branch outputs and the head (each block starts as the identity, as the bench)."""
    init_from: str | None = None
    """A diffusers model directory (`save_pretrained`) to start from; its class and sizes must match."""

    def __post_init__(self) -> None:
        check_choice("model.kind", self.kind, ("conv", "wan"))

    @property
    def text_dim(self) -> int:
        return self.conv.text_dim if self.kind == "conv" else self.wan.text_dim


@dataclass
class TeacherStageConfig(RunConfig):
    """`streamvid-train teacher`: flow matching with prompt dropout on the shapes world."""

    model: NetConfig = field(default_factory=NetConfig)
    data: ShapesDataConfig = field(default_factory=ShapesDataConfig)
    noise: NoiseLevelsConfig = field(default_factory=NoiseLevelsConfig)
    chunk_frames: int = 3
    """Frames per chunk of the per-chunk noise levels (and of the block-causal mask)."""
    block_causal: bool = False
    """wan only: train with the block-causal mask (`BlockCausal(chunk_frames)`)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_chunk(self.chunk_frames, self.data.world.num_frames)
        if self.block_causal and self.model.kind != "wan":
            raise ConfigError("block_causal: true needs model.kind: wan (the conv net is bidirectional)")


@dataclass
class OdePairsStageConfig(OutputConfig):
    """`streamvid-train ode-pairs`: the teacher's guided Euler ODE solutions, recorded at the student's levels."""

    teacher: str = "assets/shapes/teacher"
    """The teacher's diffusers directory (output_dir of `streamvid-train teacher`)."""
    num_pairs: int = 1536
    split: str = "train"
    """Prompts of items first_index .. first_index + num_pairs - 1 of this split."""
    first_index: int = 0
    batch_size: int = 64
    num_steps: int = 24
    """Euler steps; with the student's shift the grid must contain its few-step levels."""
    shift: float | None = None
    """Shift of the Euler grid; null: the student sampler's (sampler.shift). Any other value must still put the
    few-step levels on the grid."""
    guidance_scale: float = 1.0
    """Classifier-free guidance g of v = c + g (c - u) against the "" prompt (`score_model.cfg_combine`, the
    package's one convention; standard CFG scale g + 1; 0: no guidance). Was ``cfg_scale`` s = g + 1."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """The student's sampler (mount sampler/self_forcing.yaml): its few-step levels are recorded."""
    world: WorldConfig = field(default_factory=WorldConfig)
    dtype: str = "float32"
    """Storage dtype of the latents: float32 | bfloat16 | float16."""
    precision: str = "32-true"
    """Teacher forwards in 32-true (fp32) or bf16-mixed (bf16 autocast, about 3x faster for the conv teacher on
    CPU); the Euler state is fp32 either way."""
    threads: int = 1
    progress_bar: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("split", self.split, ("train", "val", "heldout"))
        check_choice("precision", self.precision, PRECISIONS)
        check_dtype("dtype", self.dtype)
        if min(self.num_pairs, self.batch_size, self.num_steps, self.threads) < 1 or self.first_index < 0:
            raise ConfigError("num_pairs, batch_size, num_steps and threads must be >= 1, first_index >= 0")
        if self.guidance_scale < 0.0:
            raise ConfigError(f"'guidance_scale' must be >= 0 (0: no guidance), got {self.guidance_scale}")

    @property
    def grid_shift(self) -> float:
        return self.sampler.shift if self.shift is None else self.shift


@dataclass
class FlowDistillConfig:
    """objective=flow_distill: regress the teacher's guided flow at data-noised inputs."""

    guidance_scale: float = 1.0
    """Guidance g of the teacher's target flow c + g (c - u) (`score_model.cfg_combine`; standard CFG scale g + 1).
    Was ``cfg_scale`` s = g + 1."""
    noise: NoiseLevelsConfig = field(default_factory=lambda: NoiseLevelsConfig(shift=3.0, p_chunk_noise=0.5))
    data: ShapesDataConfig = field(default_factory=ShapesDataConfig)

    def __post_init__(self) -> None:
        if self.guidance_scale < 0.0:
            raise ConfigError(f"'flow_distill.guidance_scale' must be >= 0, got {self.guidance_scale}")


@dataclass
class StudentStageConfig(RunConfig):
    """`streamvid-train student`: the causal Wan student regressed onto ODE pairs (or the teacher's flow)."""

    objective: str = "ode"
    """ode: x0 prediction from the pairs' x at a few-step level (Self-Forcing's ODE init) | flow_distill."""
    pairs: str | None = "outputs/train/shapes_ode_pairs"
    """objective=ode: output_dir of `streamvid-train ode-pairs`."""
    teacher: str | None = "assets/shapes/teacher"
    """objective=flow_distill: the teacher's diffusers directory."""
    model: WanModelConfig = field(default_factory=WanModelConfig)
    """The student's sizes (mount model/shapes_probe.yaml)."""
    zero_init: bool = True
    init_from: str | None = None
    """A `CausalWanModel` diffusers directory to start from (same sizes)."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """The student's sampler (mount sampler/self_forcing.yaml): chunk size and few-step levels."""
    block_causal: bool = True
    """Train with the block-causal mask of the sampler's chunk size."""
    level_sampling: str = "per_chunk"
    """ode: the level index of each chunk drawn independently (Self-Forcing) | per_clip (one per sample)."""
    p_uncond: float = 0.0
    """ode: prompt dropout (the pairs are guided solutions of the prompt)."""
    flow_distill: FlowDistillConfig = field(default_factory=FlowDistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("objective", self.objective, ("ode", "flow_distill"))
        check_choice("level_sampling", self.level_sampling, ("per_chunk", "per_clip"))
        if not 0.0 <= self.p_uncond <= 1.0:
            raise ConfigError(f"'p_uncond' must lie in [0, 1], got {self.p_uncond}")
        if self.objective == "ode" and not self.pairs:
            raise ConfigError("objective: ode needs 'pairs' (the output_dir of streamvid-train ode-pairs)")
        if self.objective == "flow_distill" and not self.teacher:
            raise ConfigError("objective: flow_distill needs 'teacher' (a teacher diffusers directory)")

    @property
    def chunk_frames(self) -> int:
        return self.sampler.cache.chunk_frames


def check_chunk(chunk_frames: int, num_frames: int) -> None:
    if chunk_frames < 1 or num_frames % chunk_frames:
        raise ConfigError(f"'chunk_frames'={chunk_frames} must divide the world's {num_frames} frames")
