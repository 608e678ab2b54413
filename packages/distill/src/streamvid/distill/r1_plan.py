"""Per-rank memory plan of a `streamvid-train r1` run (``--dry-run``), from the config alone (issue 20 §1).

The networks are built on the meta device (no weights, no memory) to count their parameters: from a weight
directory's ``config.json`` when it exists, else from the config's sizes (``model`` for the student and a missing
critic, ``teacher_model`` for the real score). `plan_memory` is pure arithmetic on those counts (tested against
hand-computed values); GiB = 2**30 bytes.

The arithmetic (DeepSpeed mixed precision as `deepspeed_cpu.deepspeed_config` sets it up; N = world size,
T = student + critic parameters, F = the real score's, s = 1/N where a ZeRO stage shards and 1 where it does not):

* parameters (trainable weights): T x w x s3, with w = 2 B in a bf16 DeepSpeed engine, else 4 B; s3 = 1/N under
  ZeRO-3 only;
* gradients: T x w x s2, s2 = 1/N under ZeRO-2 and ZeRO-3 (without DeepSpeed: T x 4 B);
* optimizer states: Adam m and v (8 B) plus DeepSpeed's fp32 partition of the weights (4 B; the masters of a bf16
  engine, a copy in an fp32 one): T x 12 B x s2 (without DeepSpeed: T x 8 B, the fp32 weights are the masters);
* frozen weights: F x f x s3 with f = the engine's weight size w inside DeepSpeed (Lightning converts every module
  of the engine to its precision: bf16, or fp32 under ``32-true``), else ``frozen_dtype``'s size, plus the text
  encoder and the VAE in their dtypes (not sharded; counted when their directory holds a config);
* EMA: a copy of the student in the engine's weight dtype, on every rank;
* DeepSpeed buffers: the reduce bucket and the all-gather (ZeRO-2) / prefetch (ZeRO-3) bucket of
  `deepspeed_cpu.deepspeed_config`, in the gradients' dtype;
* activations, estimated per rollout: with gradient checkpointing the block inputs of every exit-step forward
  (tokens x layers x dim x a, a = 2 B under bf16, else 4 B) plus one block's activations for one chunk (chunk
  tokens x (18 dim + 2 ffn) x a); without it, every block's (tokens x layers x (18 dim + 2 ffn) x a)
  (docs/reproduction.md §4); the larger of the student's and the critic's;
* ZeRO-3's live gathered parameters: DeepSpeed keeps the layers it all-gathered for a forward resident up to
  ``stage3_max_live_parameters`` elements (and re-uses them within ``stage3_max_reuse_distance``), so
  min(max live, S + C + F) x w per rank (`deepspeed_cpu.deepspeed_config` sets DeepSpeed's defaults, 1e9);
* peak host RAM while loading, per rank: the student and critic in fp32 (4 B), the real score in
  ``frozen_dtype`` (read straight into it) plus its largest safetensors file, which is mapped while it is read
  (without the directory: diffusers' 10 GB shards, or the whole network in fp32 when smaller), text encoder and
  VAE in their dtypes. Under ZeRO-3 the networks are built inside ``deepspeed.zero.Init``
  (`networks.load_model_dir_partitioned`): (T + F) x w / N, plus the largest single module gathered in full
  while rank 0 reads it (x 12 B: the gathered fp32 weights, the tensor read and its mapped file pages); today's
  path (before the dtype fields and zero.Init) loaded every network whole in fp32 on every rank (its files are
  the weights: no extra copy).

The reward model (VideoAlign, ~4.4 GB bf16) is not included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from streamvid.core.dtypes import check_dtype
from streamvid.core.model_config import WanModelConfig
from streamvid.distill.dmd_config import DMDStageConfig

__all__ = ["MemoryPlan", "NetworkCount", "count_networks", "format_plan", "plan_memory", "plan_r1"]

GIB = 2**30


@dataclass(frozen=True)
class NetworkCount:
    """One network of the run: its parameters and where the count came from."""

    name: str
    params: int
    source: str
    dim: int = 0
    ffn_dim: int = 0
    num_layers: int = 0
    largest_module: int = 0
    """The parameters of the largest single module (its own, not its children's): ZeRO-3 loading gathers one at
    a time."""


@dataclass
class MemoryPlan:
    """Per-rank bytes of one configuration; `rows` in GiB for printing."""

    world_size: int
    zero_stage: int
    """0 without DeepSpeed."""
    bf16_engine: bool
    parameters: float
    gradients: float
    optimizer_states: float
    frozen_weights: float
    ema: float
    activations: float
    buffers: float
    live_gathered: float
    host_peak_loading: float
    host_peak_loading_fp32: float
    notes: list[str] = field(default_factory=list)

    @property
    def device_total(self) -> float:
        return (self.parameters + self.gradients + self.optimizer_states + self.frozen_weights + self.ema
                + self.activations + self.buffers + self.live_gathered)

    def rows(self) -> list[tuple[str, float]]:
        live = [("ZeRO-3 live gathered parameters", self.live_gathered / GIB)] if self.zero_stage == 3 else []
        return [("parameters (trainable weights)", self.parameters / GIB), ("gradients", self.gradients / GIB),
                ("optimizer states", self.optimizer_states / GIB), ("frozen weights", self.frozen_weights / GIB),
                ("generator EMA", self.ema / GIB), ("activations (estimate)", self.activations / GIB),
                ("DeepSpeed buckets", self.buffers / GIB), *live,
                ("total per rank (device)", self.device_total / GIB),
                ("peak host RAM while loading", self.host_peak_loading / GIB),
                ("  the same with every network in fp32", self.host_peak_loading_fp32 / GIB)]


def plan_memory(*, student: int, critic: int, real: int, world_size: int, zero_stage: int, bf16_engine: bool,
                frozen_itemsize: int, extra_frozen_bytes: int = 0, activation_bytes: int = 0,
                extra_frozen_fp32_bytes: int | None = None, bucket_elements: int = 0,
                loading_transient_bytes: int = 0, max_live_elements: int = 0,
                largest_module: int = 0) -> MemoryPlan:
    """The per-rank arithmetic of the module docstring, in bytes (parameter counts in, `MemoryPlan` out).

    Args:
        student, critic, real: parameter counts (the trainable student and critic, the frozen real score).
        world_size: processes (GPUs) in the run; zero_stage: 0 (no DeepSpeed), 2 or 3.
        bf16_engine: a DeepSpeed engine in bf16 (weights and gradients 2 B).
        frozen_itemsize: bytes per parameter of the real score as loaded (``frozen_dtype``).
        extra_frozen_bytes: text encoder + VAE as loaded (not sharded); extra_frozen_fp32_bytes: the same in fp32
            (default: ``extra_frozen_bytes``).
        activation_bytes: the activation estimate (`activation_estimate`).
        bucket_elements: DeepSpeed's reduce + all-gather / prefetch bucket sizes (ZeRO stages only).
        loading_transient_bytes: the real score's largest weight file, mapped while it is read into its dtype
            (not under ZeRO-3, which reads one module at a time).
        max_live_elements: ZeRO-3's ``stage3_max_live_parameters``; largest_module: the parameters of the
            largest single module of the three networks (ZeRO-3 loading).
    """
    if zero_stage not in (0, 2, 3):
        raise ValueError(f"zero_stage must be 0, 2 or 3, got {zero_stage}")
    trainable = student + critic
    n = world_size
    shard_states = 1 / n if zero_stage in (2, 3) else 1.0
    shard_weights = 1 / n if zero_stage == 3 else 1.0
    w = 2 if bf16_engine else 4
    parameters = trainable * w * shard_weights
    gradients = trainable * w * shard_states
    optimizer = trainable * (12 if zero_stage else 8) * shard_states
    frozen_b = w if zero_stage else frozen_itemsize
    frozen = real * frozen_b * shard_weights + extra_frozen_bytes
    ema = student * w
    if extra_frozen_fp32_bytes is None:
        extra_frozen_fp32_bytes = extra_frozen_bytes
    if zero_stage == 3:
        host = (trainable + real) * w / n + 12 * largest_module + extra_frozen_bytes
        live = min(max_live_elements, trainable + real) * w
    else:
        host = 4 * trainable + frozen_itemsize * real + extra_frozen_bytes + loading_transient_bytes
        live = 0
    host_fp32 = 4 * (trainable + real) + extra_frozen_fp32_bytes
    buffers = bucket_elements * w if zero_stage else 0
    return MemoryPlan(n, zero_stage, bf16_engine, parameters, gradients, optimizer, frozen, ema,
                      float(activation_bytes), float(buffers), float(live), float(host), float(host_fp32))


def activation_estimate(net: NetworkCount, tokens: int, chunk_tokens: int, itemsize: int, checkpointing: bool) -> int:
    """Bytes kept for the backward of one network's forwards over ``tokens`` tokens (module docstring)."""
    per_token_block = 18 * net.dim + 2 * net.ffn_dim
    if checkpointing:
        return tokens * net.num_layers * net.dim * itemsize + chunk_tokens * per_token_block * itemsize
    return tokens * net.num_layers * per_token_block * itemsize


def _meta_counts(cls, config: dict) -> tuple[int, int]:
    """(parameters, parameters of the largest single module) of ``cls.from_config(config)`` on the meta device."""
    with torch.device("meta"):
        model = cls.from_config(config)
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return sum(p.numel() for p in model.parameters()), largest


def _meta_count(cls, config: dict) -> int:
    return _meta_counts(cls, config)[0]


def _wan_count(name: str, sizes: WanModelConfig, source: str) -> NetworkCount:
    from streamvid.core.causal_wan import CausalWanModel

    params, largest = _meta_counts(CausalWanModel, sizes.to_diffusers_kwargs())
    return NetworkCount(name, params, source, sizes.num_attention_heads * sizes.attention_head_dim, sizes.ffn_dim,
                        sizes.num_layers, largest)


def _dir_count(name: str, path: str) -> NetworkCount | None:
    """The network in diffusers directory ``path`` counted on the meta device, or None when it has no config."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    if config.get("_class_name") == "ConvFlowNet":
        from streamvid.core.conv_flow import ConvFlowNet

        params, largest = _meta_counts(ConvFlowNet, config)
        return NetworkCount(name, params, f"{path} (config.json)", largest_module=largest)
    from streamvid.core.causal_wan import CausalWanModel

    dim = config.get("num_attention_heads", 0) * config.get("attention_head_dim", 0)
    params, largest = _meta_counts(CausalWanModel, config)
    return NetworkCount(name, params, f"{path} (config.json)", dim, config.get("ffn_dim", 0),
                        config.get("num_layers", 0), largest)


def count_networks(cfg: DMDStageConfig) -> dict[str, NetworkCount]:
    """student, critic and real score: from their directories' config.json, else from the config's sizes."""
    student = _dir_count("student", cfg.student) or _wan_count("student", cfg.model, "model: (config)")
    real = _dir_count("real", cfg.teacher) or (
        _wan_count("real", cfg.teacher_model, "teacher_model: (config)") if cfg.teacher_model is not None
        else _wan_count("real", cfg.model, "model: (config; no teacher_model)"))
    if cfg.critic is None:
        critic = NetworkCount("critic", real.params, "a copy of the real score", real.dim, real.ffn_dim,
                              real.num_layers, real.largest_module)
    else:
        critic = _dir_count("critic", cfg.critic) or _wan_count("critic", cfg.model, "model: (config)")
    return {"student": student, "critic": critic, "real": real}


SHARD_BYTES = 10 * 10**9
"""diffusers' default ``max_shard_size`` (10GB): the file size assumed for a missing weight directory."""


def _largest_weight_file(path: str, params: int) -> int:
    files = list(Path(path).glob("*.safetensors"))
    return max(f.stat().st_size for f in files) if files else min(4 * params, SHARD_BYTES)


def _frozen_extras(cfg: DMDStageConfig) -> tuple[int, int, list[str]]:
    """(bytes as loaded, bytes in fp32, notes) of the text encoder and the VAE, counted from their configs."""
    loaded, fp32, notes = 0, 0, []
    if cfg.codec.kind == "wan_vae":
        from diffusers import AutoencoderKLWan

        path = Path(cfg.codec.path or "")
        config = AutoencoderKLWan.load_config(str(path)) if (path / "config.json").is_file() else {}
        params = _meta_count(AutoencoderKLWan, config)  # no config: diffusers' defaults are Wan2.1's VAE
        loaded += params * check_dtype("codec.dtype", cfg.codec.dtype).itemsize
        fp32 += params * 4
        notes.append(f"VAE {params / 1e6:.0f} M parameters ({'config.json' if config else 'Wan2.1 VAE defaults'})")
    if cfg.text_encoder.kind == "umt5":
        path = Path(cfg.text_encoder.path or "")
        if (path / "config.json").is_file():
            from transformers import UMT5Config, UMT5EncoderModel

            with torch.device("meta"):
                params = sum(p.numel() for p in UMT5EncoderModel(UMT5Config.from_json_file(path / "config.json"))
                             .parameters())
            loaded += params * check_dtype("text_encoder.dtype", cfg.text_encoder.dtype).itemsize
            fp32 += params * 4
            notes.append(f"umT5 encoder {params / 1e9:.2f} B parameters")
        else:
            notes.append(f"text encoder not counted: {path}/config.json missing")
    return loaded, fp32, notes


def plan_r1(cfg: DMDStageConfig) -> tuple[MemoryPlan, dict[str, NetworkCount]]:
    """The plan of ``cfg`` at its world size and ZeRO stage."""
    nets = count_networks(cfg)
    world = cfg.trainer.devices * cfg.trainer.num_nodes
    stage = cfg.deepspeed.zero_stage if cfg.deepspeed.enabled else 0
    bf16_precision = cfg.trainer.precision.startswith("bf16")
    bf16_engine = cfg.deepspeed.enabled and bf16_precision and cfg.trainer.accelerator != "cpu"
    act_size = 2 if bf16_precision else 4
    height, width = cfg.video_size
    ratio = cfg.codec.patch if cfg.codec.kind == "pixel" else 8
    _, p_h, p_w = cfg.model.patch_size
    tpf = (height // ratio // p_h) * (width // ratio // p_w)
    tokens = cfg.trainer.batch_size * cfg.latent_frames * tpf
    chunk_tokens = cfg.trainer.batch_size * cfg.chunk_frames * tpf
    acts = max(activation_estimate(nets[k], tokens, chunk_tokens, act_size, cfg.gradient_checkpointing)
               for k in ("student", "critic"))
    extra, extra_fp32, notes = _frozen_extras(cfg)
    from streamvid.distill.deepspeed_cpu import deepspeed_config

    zero = deepspeed_config(max(stage, 1))["zero_optimization"]
    second = zero.get("stage3_prefetch_bucket_size", zero["allgather_bucket_size"]) if stage == 3 else \
        zero["allgather_bucket_size"]
    buckets = int(zero["reduce_bucket_size"] + second)
    plan = plan_memory(student=nets["student"].params, critic=nets["critic"].params, real=nets["real"].params,
                       world_size=world, zero_stage=stage, bf16_engine=bf16_engine,
                       frozen_itemsize=check_dtype("frozen_dtype", cfg.frozen_dtype).itemsize,
                       extra_frozen_bytes=extra, extra_frozen_fp32_bytes=extra_fp32, activation_bytes=acts,
                       bucket_elements=buckets,
                       loading_transient_bytes=_largest_weight_file(cfg.teacher, nets["real"].params),
                       max_live_elements=int(zero.get("stage3_max_live_parameters", 0)),
                       largest_module=max(n.largest_module for n in nets.values()))
    plan.notes = notes + [f"{tokens} tokens per rollout batch ({cfg.latent_frames} latent frames x {tpf}), "
                          f"gradient checkpointing {'on' if cfg.gradient_checkpointing else 'off'}",
                          "not included: the reward model"]
    return plan, nets


def format_plan(plan: MemoryPlan, nets: dict[str, NetworkCount], config: str) -> str:
    """The table ``--dry-run`` prints."""
    stage = f"ZeRO-{plan.zero_stage}" if plan.zero_stage else "no DeepSpeed"
    lines = [f"memory plan per rank: {config}, world size {plan.world_size}, {stage}, "
             f"{'bf16' if plan.bf16_engine else 'fp32'} weights"]
    for net in nets.values():
        lines.append(f"  {net.name:<8} {net.params / 1e9:8.3f} B parameters  ({net.source})")
    for name, gib in plan.rows():
        lines.append(f"  {name:<40} {gib:9.2f} GiB")
    lines += [f"  note: {n}" for n in plan.notes]
    return "\n".join(lines)
