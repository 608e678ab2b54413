"""Typed config of the DMD / Stream-R1 stage (`streamvid-train r1`, `make train-r1`).

Every flag of methods.md A.8 is a field here, with Stream-R1's shipped value as its default (paper scale); the
shapes-world YAML (`configs/train/shapes_r1.yaml`) and the experiment rows (`experiments/`) override what they
change. Sections:

* `DMDConfig` (A.2): score timesteps, guidance, TTUR, accumulation, EMA;
* `StreamR1Config` (A.4-A.6): the reward weights (all off = plain DMD, ``reward_mode: MQ`` without intra weights =
  Reward Forcing's Re-DMD);
* `NetOptimConfig` x 2: AdamW of the generator and of the critic, each with its own gradient-norm clip;
* `DeepSpeedSection`: ZeRO stage (off: plain Lightning in one process).

The reference's step accounting is in *raw micro-steps* (`full_training_steps` x accumulation); here
``trainer.max_steps`` counts optimiser steps, and ``ema_start_step`` too (the reference's 200 raw steps with
accumulation 8 are 25 optimiser steps). This module imports neither Lightning nor diffusers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from streamvid.core.config import ConfigError, check_choice
from streamvid.core.dtypes import check_dtype
from streamvid.core.generator_config import CodecConfig, TextEncoderConfig
from streamvid.core.model_config import WanModelConfig
from streamvid.core.rewards.configs import RewardSelection
from streamvid.core.sampler_config import SamplerConfig
from streamvid.core.world import WorldConfig
from streamvid.distill.stage_config import RunConfig, TrainerConfig
from streamvid.distill.stream_r1_inter import AXES, AXIS_OF, REWARD_MODES
from streamvid.distill.stream_r1_intra import FUSIONS

__all__ = [
    "DMDConfig",
    "DMDStageConfig",
    "DeepSpeedSection",
    "LongTuningConfig",
    "NetOptimConfig",
    "NOT_IMPLEMENTED",
    "StreamR1Config",
]

NOT_IMPLEMENTED = (
    "dmd.fake_guidance_scale",
    "dmd.ts_schedule",
    "dmd.ts_schedule_max",
    "dmd.same_step_across_blocks",
    "dmd.independent_first_frame",
    "dmd.denoising_loss_type",
    "stream_r1.spatial_reward_method",
)
"""Reference flags of methods.md A.8 that are not implemented: each is a field so that a reference config reads
as is, and only its default (Stream-R1's shipped value) is accepted; `DMDStageConfig` refuses any other value."""


@dataclass
class NetOptimConfig:
    """AdamW of one network (A.2.4) with its own gradient-norm clip."""

    lr: float = 2e-6
    betas: tuple[float, float] = (0.0, 0.999)
    weight_decay: float = 0.01
    max_grad_norm: float = 10.0
    """Clip of this network's gradient norm (0: off); clipped per network, as the reference."""

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.max_grad_norm < 0 or self.weight_decay < 0:
            raise ConfigError(f"need lr > 0, max_grad_norm >= 0, weight_decay >= 0; got {self}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must lie in [0, 1), got {self.betas}")


@dataclass
class DMDConfig:
    """Self-Forcing DMD (methods.md A.2)."""

    guidance_scale: float = 3.0
    """g of the real score's c + g (c - u) (3 = standard CFG scale 4; `score_model.cfg_combine`)."""
    timestep_shift: float = 5.0
    num_train_timestep: int = 1000
    min_step: int = 20
    max_step: int = 980
    min_score_timestep: int = 0
    last_step_only: bool = False
    """Always exit at the last step (false: uniform over the steps)."""
    dfake_gen_update_ratio: int = 5
    """TTUR: a generator update on every ratio-th optimiser step; the critic updates on every step."""
    gradient_accumulation_steps: int = 8
    """Micro-steps per optimiser step (each: generator fwd/bwd when it updates, then critic fwd/bwd)."""
    rollouts_per_step: int | None = None
    """The global batch: rollouts per optimiser step over every rank (the reference's 64); when set it must equal
    trainer.batch_size x gradient_accumulation_steps x world size (checked before anything loads), so a run on
    another number of GPUs keeps the paper's batch or is refused with the accumulation that would."""
    ema_weight: float = 0.99
    ema_start_step: int = 25
    """Optimiser step from which the generator's EMA exists (copied then, updated after each generator step)."""
    negative_prompt: str = ""
    """The real score's unconditional prompt (Wan: its standard negative prompt; shapes world: "")."""

    # Reference flags not implemented (`NOT_IMPLEMENTED`): only these defaults, Stream-R1's shipped values.
    fake_guidance_scale: float = 0.0
    """The critic's guidance (0: conditional only)."""
    ts_schedule: bool = False
    """The reference's timestep curriculum."""
    ts_schedule_max: bool = False
    same_step_across_blocks: bool = True
    """One exit step per rollout for every chunk."""
    independent_first_frame: bool = False
    denoising_loss_type: str = "flow"
    """The critic's loss: flow matching (`dmd.critic_flow_loss`)."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_score_timestep < self.num_train_timestep:
            raise ConfigError(f"dmd.min_score_timestep must lie in [0, {self.num_train_timestep})")
        if not 0 < self.min_step < self.max_step < self.num_train_timestep:
            raise ConfigError(f"dmd: need 0 < min_step < max_step < {self.num_train_timestep}")
        if self.dfake_gen_update_ratio < 1 or self.gradient_accumulation_steps < 1 or self.ema_start_step < 0:
            raise ConfigError("dmd: dfake_gen_update_ratio and gradient_accumulation_steps >= 1, ema_start_step >= 0")
        if not 0.0 <= self.ema_weight < 1.0:
            raise ConfigError(f"dmd.ema_weight must lie in [0, 1), got {self.ema_weight}")


@dataclass
class StreamR1Config:
    """Stream-R1's reward weights (methods.md A.4-A.6), shipped values as defaults.

    ``reward_mode``, ``reward_dims`` and ``spatial_reward_metrics`` take the paper's axis names (VQ, MQ, TA; the
    reference's flags, A.8); code reads them as axis names through `base_axes` and `saliency_axes`."""

    reward_weighting: bool = True
    """The inter-reliability weight exp(beta r_final) per sample (false: 1)."""
    beta: float = 2.0
    reward_mode: str = "BalancedOverall"
    """VQ | MQ (Reward Forcing's Re-DMD) | TA | Overall | BalancedOverall (Overall minus the balance penalty)."""
    reward_dims: list[str] = field(default_factory=lambda: ["VQ", "MQ", "TA"])
    """The axes Overall / BalancedOverall average (paper names)."""
    reward_norm: dict[str, list[float]] | None = None
    """Per axis name (visual / motion / text) [mu, sigma]: r = (raw - mu) / sigma. null: the reward's own scale
    (VideoAlign's adapter already z-normalises; the shapes rewards are in [0, 1] and set it)."""
    reward_balance_lambda: float = 0.5
    reward_balance_window: int = 50
    reward_balance_warmup: int = 50
    spatial_reward: bool = True
    """The intra-perplexity weight map from reward saliency (false: 1)."""
    spatial_reward_method: str = "gradient"
    """A reference flag not implemented beyond this default (`NOT_IMPLEMENTED`)."""
    spatial_reward_metrics: list[str] = field(default_factory=lambda: ["MQ", "VQ", "TA"])
    """The axes whose saliency is fused, in the order of the fusion weights (paper names)."""
    spatial_reward_combination: str = "adaptive"
    spatial_reward_temperature: float = 1.0
    spatial_reward_strength: float = 1.0
    spatial_reward_min_weight: float = 0.15
    temporal_saliency_weighting: bool = True
    temporal_saliency_strength: float = 1.0
    temporal_saliency_min_weight: float = 0.2

    def __post_init__(self) -> None:
        check_choice("stream_r1.reward_mode", self.reward_mode, REWARD_MODES)
        check_choice("stream_r1.spatial_reward_combination", self.spatial_reward_combination, FUSIONS)
        for key in ("reward_dims", "spatial_reward_metrics"):
            dims = list(getattr(self, key))
            bad = [d for d in dims if d not in AXIS_OF]
            if bad or not dims or len(set(dims)) != len(dims):
                raise ConfigError(f"stream_r1.{key}: {dims} must be distinct names among {list(AXIS_OF)}")
        if self.reward_norm is not None:
            for axis, pair in self.reward_norm.items():
                if axis not in AXES or len(pair) != 2 or pair[1] <= 0:
                    raise ConfigError(
                        f"stream_r1.reward_norm.{axis}: need an axis in {list(AXES)} with [mu, sigma > 0]"
                    )
        if self.reward_balance_window < 4 or self.reward_balance_warmup < 0 or self.reward_balance_lambda < 0:
            raise ConfigError("stream_r1: reward_balance_window >= 4, reward_balance_warmup >= 0, lambda >= 0")
        if self.spatial_reward_temperature <= 0:
            raise ConfigError("stream_r1.spatial_reward_temperature must be > 0")
        for key in ("spatial_reward_strength", "spatial_reward_min_weight", "temporal_saliency_strength",
                    "temporal_saliency_min_weight"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"stream_r1.{key} must lie in [0, 1], got {getattr(self, key)}")

    @property
    def uses_reward(self) -> bool:
        """Whether the generator step calls the reward at all (plain DMD does not)."""
        return self.reward_weighting or self.spatial_reward

    @property
    def uses_balance(self) -> bool:
        return self.reward_weighting and self.reward_mode == "BalancedOverall"

    @property
    def base_axes(self) -> tuple[str, ...]:
        """The axes whose mean is the base reward of ``reward_mode`` (A.4): one axis, or ``reward_dims``."""
        if self.reward_mode in AXIS_OF:
            return (AXIS_OF[self.reward_mode],)
        return tuple(AXIS_OF[d] for d in self.reward_dims)

    @property
    def saliency_axes(self) -> tuple[str, ...]:
        """``spatial_reward_metrics`` as axis names, in fusion order (A.6 step 3)."""
        return tuple(AXIS_OF[d] for d in self.spatial_reward_metrics)

    @property
    def norm(self) -> dict[str, tuple[float, float]] | None:
        """``reward_norm`` as axis -> (mu, sigma), or None (A.3.1)."""
        return {k: tuple(v) for k, v in self.reward_norm.items()} if self.reward_norm else None


@dataclass
class DeepSpeedSection:
    """DeepSpeed ZeRO through Lightning (`streamvid.distill.deepspeed_cpu`); off: plain Lightning."""

    enabled: bool = False
    zero_stage: int = 2
    """1, 2 or 3 (3 also partitions the weights, the frozen real score's too, each built inside
    ``deepspeed.zero.Init`` by `DMDModule.configure_model`)."""

    def __post_init__(self) -> None:
        check_choice("deepspeed.zero_stage", self.zero_stage, (1, 2, 3))


@dataclass
class LongTuningConfig:
    """LongLive's streaming long tuning and switch training (off by default).

    The student rolls out ``rollout_frames`` latent frames with its cache's sink and window (the sampler's cache
    layout: set ``sampler.cache.local_attn_frames``); the real and fake scores supervise one teacher-length window of
    it (``num_training_frames``), whose start is drawn uniformly over the chunk boundaries in
    ``[0, rollout_frames - num_training_frames]`` (LongLive extends one rollout window by window and supervises each
    new window; drawing the window's position per step gives the same windows without carrying a cache between
    optimiser steps, so a resumed run redraws exactly). Chunks before the window run without gradient; their K/V
    are constants, as every cached chunk's are (A.2.1).
    """

    rollout_frames: int = 0
    """Latent frames of the long rollout; 0: off (the rollout is the supervised window itself)."""
    switch_probability: float = 0.0
    """Switch training: the probability that a rollout with chunks before its window switches prompt at the
    window's start (the sampler's prompt switch, with KV re-cache when ``sampler.recache_on_switch``); the window is
    then supervised, and rewarded, under the new prompt (`PromptSource.switch_targets`)."""

    @property
    def enabled(self) -> bool:
        return self.rollout_frames > 0


@dataclass
class DMDStageConfig(RunConfig):
    """`streamvid-train r1`: DMD / Stream-R1 of the causal student from its ODE init (`RunConfig`: output_dir,
    run_dir, resume, seed)."""

    student: str = "assets/shapes/student"
    """The ODE-init student (a CausalWanModel diffusers directory)."""
    teacher: str = "assets/shapes/teacher"
    """The real score (frozen)."""
    critic: str | None = None
    """The fake score's initial weights; null: a copy of the teacher (as DMD2 / Self-Forcing initialise it)."""
    teacher_model: WanModelConfig | None = None
    """The real score's sizes when it is a Wan (paper rows: model/wan2.1_t2v_14b.yaml), checked against the
    teacher directory's config.json and used by ``--dry-run``'s memory plan when the directory is missing; null:
    whatever the directory holds (the shapes world's conv teacher)."""
    frozen_dtype: str = "float32"
    """The dtype the real score is loaded straight into (diffusers ``from_pretrained(torch_dtype=...)``: built on
    the meta device, safetensors read into the dtype; paper rows: bfloat16). A critic initialised from the teacher
    is copied and made float32 (it trains). Under ZeRO-3 every network is built inside ``deepspeed.zero.Init`` in
    the engine's weight dtype (bf16 with ``bf16-mixed``), partitioned as it is read."""
    model: WanModelConfig = field(default_factory=WanModelConfig)
    """The student's sizes (mount model/shapes_probe.yaml): a checkpoint of another size fails before training."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """The student's few-step schedule and chunks (mount sampler/self_forcing.yaml)."""
    world: WorldConfig = field(default_factory=WorldConfig)
    """Shapes world: its train-split prompts (unless ``prompts``), frame count and size (unless set below), and
    the fixed val prompts of the sample videos."""
    prompts: str | None = None
    """A text file of training prompts, one per line (paper scale: VidProM); null: the shapes world's train split."""
    num_training_frames: int | None = None
    """Latent frames per rollout (Stream-R1: 21); null: the world's frame count (pixel codec: one per frame)."""
    height: int | None = None
    """Video height in pixels (Stream-R1: 480); null: the world's."""
    width: int | None = None
    codec: CodecConfig = field(default_factory=CodecConfig)
    """Latents -> pixels for the reward (pixel for the shapes world, wan_vae with a local path at paper scale)."""
    text_encoder: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(kind="shapes_bag"))
    reward: RewardSelection = field(default_factory=lambda: RewardSelection(name="shapes_learned"))
    dmd: DMDConfig = field(default_factory=DMDConfig)
    stream_r1: StreamR1Config = field(default_factory=StreamR1Config)
    generator_optim: NetOptimConfig = field(default_factory=NetOptimConfig)
    critic_optim: NetOptimConfig = field(default_factory=lambda: NetOptimConfig(lr=4e-7))
    deepspeed: DeepSpeedSection = field(default_factory=DeepSpeedSection)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=1000, batch_size=1,
                                                                         precision="32-true"))
    """max_steps: optimiser steps; batch_size: rollouts per micro-step and process."""
    gradient_checkpointing: bool = False
    """Recompute the student's and the critic's block activations in backward (A.8: on at paper scale); networks
    without diffusers' gradient checkpointing (the shapes conv critic) run as they are."""
    sample_every: int = 50
    """Optimiser steps between fixed-seed sample videos (and intra weight maps) in the logs, with oracle scores."""
    sample_prompts: int = 4
    long_tuning: LongTuningConfig = field(default_factory=LongTuningConfig)
    """LongLive's long tuning and switch training (off by default; see `LongTuningConfig`)."""
    snapshot_every: int = 0
    """Optimiser steps between kept copies of the exported (EMA) student in ``<output_dir>/snapshots/step_NNNNNN``
    (a training curve is read from them afterwards); 0: none, only the latest export in ``output_dir``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_not_implemented(self)
        check_dtype("frozen_dtype", self.frozen_dtype)
        if self.snapshot_every < 0:
            raise ConfigError(f"snapshot_every must be >= 0, got {self.snapshot_every}")
        if self.latent_frames % self.chunk_frames:
            raise ConfigError(
                f"num_training_frames={self.latent_frames} is not a multiple of the sampler's chunk_frames="
                f"{self.chunk_frames}"
            )
        self._check_long_tuning()
        if self.sample_every < 1 or self.sample_prompts < 0:
            raise ConfigError("sample_every must be >= 1 and sample_prompts >= 0")
        world = self.trainer.devices * self.trainer.num_nodes
        if self.deepspeed.enabled and self.deepspeed.zero_stage == 3 and world < 2:
            raise ConfigError(
                f"deepspeed.zero_stage=3 partitions parameters over processes; the world size (trainer.devices x "
                f"trainer.num_nodes) is {world} (use >= 2 processes, or zero_stage 2 / deepspeed.enabled false)"
            )
        if world > 1 and not self.deepspeed.enabled:
            raise ConfigError(
                f"a world size of {world} (trainer.devices x trainer.num_nodes) needs deepspeed.enabled: true "
                "(the multi-process path)"
            )
        check_global_batch(self.dmd.rollouts_per_step, self.trainer.batch_size, self.dmd.gradient_accumulation_steps,
                           world)

    def _check_long_tuning(self) -> None:
        lt = self.long_tuning
        if not 0.0 <= lt.switch_probability <= 1.0:
            raise ConfigError(f"long_tuning.switch_probability must be in [0, 1], got {lt.switch_probability}")
        if not lt.enabled:
            if lt.rollout_frames < 0:
                raise ConfigError(f"long_tuning.rollout_frames must be >= 0, got {lt.rollout_frames}")
            if lt.switch_probability > 0:
                raise ConfigError("long_tuning.switch_probability > 0 needs long_tuning.rollout_frames > "
                                  "num_training_frames (a switch happens before the supervised window)")
            return
        if lt.rollout_frames <= self.latent_frames or lt.rollout_frames % self.chunk_frames:
            raise ConfigError(
                f"long_tuning.rollout_frames={lt.rollout_frames} must exceed num_training_frames="
                f"{self.latent_frames} and be a multiple of the sampler's chunk_frames={self.chunk_frames}"
            )
        if self.sampler.cache.local_attn_frames is None:
            raise ConfigError(
                "long_tuning needs a bounded attention window (sampler.cache.local_attn_frames): the long rollout "
                "would otherwise attend past the teacher's horizon (LongLive: frame sink + local window)"
            )

    @property
    def window_starts(self) -> list[int]:
        """Latent frames at which the supervised window may start: ``[0]`` without long tuning."""
        if not self.long_tuning.enabled:
            return [0]
        return list(range(0, self.long_tuning.rollout_frames - self.latent_frames + 1, self.chunk_frames))

    @property
    def chunk_frames(self) -> int:
        return self.sampler.cache.chunk_frames

    @property
    def latent_frames(self) -> int:
        return self.world.num_frames if self.num_training_frames is None else self.num_training_frames

    @property
    def video_size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return (self.height or self.world.height, self.width or self.world.width)


def check_global_batch(rollouts: int | None, batch: int, accumulation: int, world: int) -> None:
    """`ConfigError` unless ``rollouts`` (None: unchecked) = batch x accumulation x world, naming the fix."""
    if rollouts is None or rollouts == batch * accumulation * world:
        return
    per_step = batch * world
    if rollouts % per_step:
        raise ConfigError(
            f"dmd.rollouts_per_step={rollouts} is not divisible by trainer.batch_size x world size = {batch} x {world} "
            f"(trainer.devices x trainer.num_nodes): choose a world size that divides the batch")
    raise ConfigError(
        f"dmd.rollouts_per_step={rollouts} but trainer.batch_size x dmd.gradient_accumulation_steps x world size = "
        f"{batch} x {accumulation} x {world} = {batch * accumulation * world}: set "
        f"dmd.gradient_accumulation_steps={rollouts // per_step}")


def check_not_implemented(cfg: DMDStageConfig) -> None:
    """`ConfigError` for a reference flag of `NOT_IMPLEMENTED` set to anything but its default."""
    for key in NOT_IMPLEMENTED:
        section_name, name = key.split(".")
        section = getattr(cfg, section_name)
        default = next(f.default for f in dataclasses.fields(section) if f.name == name)
        if getattr(section, name) != default:
            raise ConfigError(f"{key}: only {default!r} is implemented (Stream-R1 ships it; a reference flag kept "
                              f"so that reference configs read as is); got {getattr(section, name)!r}")
