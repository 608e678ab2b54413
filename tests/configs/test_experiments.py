"""The experiment rows under experiments/ (DMD / Stream-R1, `streamvid-train r1`) compose, say what they
claim, and fit the models and the DeepSpeed layout they name.

* every YAML under experiments/ composes against `DMDStageConfig`;
* each row sets exactly the Stream-R1 flags of its table row (`FLAGS`) and otherwise equals its base (the
  paper rows: experiments/stream_r1/stream_r1.yaml; the shapes rows: configs/train/shapes_r1.yaml), with its
  own output_dir; a row and its twin at the other scale set the same flags;
* paper rows: methods.md A.8's values; the student, critic and real score built on the meta device (no
  weights, no memory) have ~1.42e9 / ~1.42e9 / ~14.3e9 parameters; the DeepSpeed config each row implies has
  its ZeRO stage, and devices x nodes x batch x accumulation = the reference's 64 rollouts per optimiser step;
* the row files and docs name only rows and commands that exist.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

import pytest
import torch

from streamvid.core.config import load_config
from streamvid.core.model_config import WanModelConfig
from streamvid.distill.dmd_config import DMDStageConfig

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
PAPER, SHAPES = EXPERIMENTS / "stream_r1", EXPERIMENTS / "shapes"
PAPER_BASE = PAPER / "stream_r1.yaml"
SHAPES_BASE = REPO / "configs" / "train" / "shapes_r1.yaml"

ALL_ROWS = sorted(PAPER.glob("*.yaml")) + sorted(SHAPES.glob("*.yaml"))  # the Stream-R1 rows (DMDStageConfig)
PAPER_ROWS = sorted(PAPER.glob("*.yaml"))
SHAPES_ROWS = sorted(SHAPES.glob("*.yaml"))

# (reward_weighting, reward_mode when weighting, spatial_reward, temporal_saliency_weighting) of each row.
OFF = (False, None, False, False)
FLAGS = {
    "dmd": OFF,  # Table 3 "DMD baseline" (plain DMD)
    "reward_forcing": (True, "MQ", False, False),  # Table 1 "Reward Forcing" (Re-DMD)
    "inter_only": (True, "Overall", False, False),  # supplementary exp(beta r)-only step
    "inter_spatial": (True, "Overall", True, False),  # Table 3 "+ Spatial reward W_s"
    "inter_spatial_balance": (True, "BalancedOverall", True, False),  # Table 3 "+ Balanced multi-dim reward"
    "stream_r1": (True, "BalancedOverall", True, True),  # Table 1 "Stream-R1" = Table 3 full
    "stream_r1_zero3": (True, "BalancedOverall", True, True),  # the same under ZeRO-3
}
EXPECTED_SHAPES = {
    "dmd",
    "reward_forcing",
    "stream_r1",
    "inter_only",
    "inter_spatial",
    "inter_spatial_balance",
}

# Sizes of the Wan2.1 checkpoints a paper row names by directory: 1.3B = the schema defaults
# (configs/model/wan2.1_t2v_1.3b.yaml); 14B = Wan-AI/Wan2.1-T2V-14B(-Diffusers) config.json (dim 5120 =
# 40 heads x 128, ffn 13824, 40 layers). No configs/model fragment holds the 14B sizes yet.
WAN_SIZES = {
    "Wan2.1-T2V-1.3B": WanModelConfig(),
    "Wan2.1-T2V-14B": WanModelConfig(num_attention_heads=40, ffn_dim=13824, num_layers=40),
}
PARAMS = {"Wan2.1-T2V-1.3B": 1.419e9, "Wan2.1-T2V-14B": 14.29e9}
REFERENCE_ROLLOUTS_PER_STEP = 64  # A.2.4: 1 per GPU x 8 GPUs x 8 accumulation micro-steps
NEGATIVE_PROMPT_START = "色调艳丽，过曝，静态，细节模糊不清"  # Wan's standard negative prompt


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@functools.cache
def load(path: Path) -> DMDStageConfig:
    return load_config(path, schema=DMDStageConfig)


def flags(cfg: DMDStageConfig) -> tuple:
    r1 = cfg.stream_r1
    return (
        r1.reward_weighting,
        r1.reward_mode if r1.reward_weighting else None,
        r1.spatial_reward,
        r1.temporal_saliency_weighting if r1.spatial_reward else False,
    )


def num_params_on_meta(kwargs: dict) -> int:
    from streamvid.core.causal_wan import CausalWanModel

    with torch.device("meta"):
        model = CausalWanModel(**kwargs)
    assert all(p.device.type == "meta" for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


@functools.cache
def checkpoint_params(name: str) -> int:
    return num_params_on_meta(WAN_SIZES[name].to_diffusers_kwargs())


def named_checkpoint(path: str) -> str:
    """The Wan2.1 checkpoint a weight directory holds, by name (weights/Wan2.1-T2V-14B-Diffusers/...)."""
    found = [name for name in WAN_SIZES if f"{name}-" in path or path.rstrip("/").endswith(name)]
    assert len(found) == 1, f"{path} names none (or several) of {list(WAN_SIZES)}"
    return found[0]


# ------------------------------------------------------------------------------------------------ all rows


def test_the_rows_exist() -> None:
    assert {p.stem for p in PAPER_ROWS} == set(FLAGS)
    assert {p.stem for p in SHAPES_ROWS} == EXPECTED_SHAPES
    assert set(ALL_ROWS) == set(PAPER_ROWS) | set(SHAPES_ROWS)


@pytest.mark.parametrize("path", ALL_ROWS, ids=rel)
def test_row_composes_and_sets_the_flags_of_its_table_row(path: Path) -> None:
    cfg = load(path)
    assert isinstance(cfg, DMDStageConfig)
    assert flags(cfg) == FLAGS[path.stem], f"{rel(path)}: {flags(cfg)}"
    assert cfg.stream_r1.uses_reward == (FLAGS[path.stem] != OFF)
    assert cfg.output_dir == f"outputs/experiments/{path.parent.name}/{path.stem}"
    if cfg.stream_r1.spatial_reward:
        assert cfg.stream_r1.spatial_reward_min_weight == 0.15


@pytest.mark.parametrize("path", ALL_ROWS, ids=rel)
def test_row_changes_only_its_flags_and_output_dir(path: Path) -> None:
    """Everything but output_dir, the Stream-R1 flags (and the ZeRO stage of the ZeRO-3 row) is the base's."""
    cfg, base = load(path), load(PAPER_BASE if path.parent == PAPER else SHAPES_BASE)
    r1 = dataclasses.replace(
        cfg.stream_r1,
        reward_weighting=base.stream_r1.reward_weighting,
        reward_mode=base.stream_r1.reward_mode,
        spatial_reward=base.stream_r1.spatial_reward,
        temporal_saliency_weighting=base.stream_r1.temporal_saliency_weighting,
    )
    assert r1 == base.stream_r1
    rest = dataclasses.replace(
        cfg, output_dir=base.output_dir, stream_r1=base.stream_r1, deepspeed=base.deepspeed
    )
    assert rest == base
    if path.stem != "stream_r1_zero3":
        assert cfg.deepspeed == base.deepspeed


def test_output_dirs_are_distinct() -> None:
    dirs = [load(p).output_dir for p in ALL_ROWS]
    assert len(set(dirs)) == len(dirs)


@pytest.mark.parametrize("path", ALL_ROWS, ids=rel)
def test_header_gives_the_command(path: Path) -> None:
    head = path.read_text().split("\nbase:")[0]
    if path.parent == SHAPES:
        assert f"make train-r1 CONFIG={rel(path)}" in head
    else:
        assert f"streamvid-train r1 --config {rel(path)}" in head


# ------------------------------------------------------------------------------------------------ paper rows


@pytest.mark.parametrize("path", PAPER_ROWS, ids=rel)
def test_paper_row_has_the_a8_settings(path: Path) -> None:
    cfg = load(path)
    d, r1, t = cfg.dmd, cfg.stream_r1, cfg.trainer
    assert (d.guidance_scale, d.fake_guidance_scale, d.timestep_shift, d.min_step, d.max_step) == (
        3.0,
        0.0,
        5.0,
        20,
        980,
    )
    assert (d.dfake_gen_update_ratio, d.gradient_accumulation_steps, d.ema_weight, d.ema_start_step) == (
        5,
        8,
        0.99,
        25,
    )
    assert d.negative_prompt.startswith(NEGATIVE_PROMPT_START)
    for optim, lr in ((cfg.generator_optim, 2e-6), (cfg.critic_optim, 4e-7)):
        assert (optim.lr, tuple(optim.betas), optim.weight_decay, optim.max_grad_norm) == (
            lr,
            (0.0, 0.999),
            0.01,
            10.0,
        )
    assert (r1.beta, r1.reward_dims, r1.reward_norm) == (2.0, ["VQ", "MQ", "TA"], None)
    assert (r1.reward_balance_lambda, r1.reward_balance_window, r1.reward_balance_warmup) == (0.5, 50, 50)
    assert (r1.spatial_reward_metrics, r1.spatial_reward_combination) == (["MQ", "VQ", "TA"], "adaptive")
    assert (r1.temporal_saliency_min_weight, r1.spatial_reward_min_weight) == (0.2, 0.15)
    assert (cfg.num_training_frames, cfg.video_size, cfg.chunk_frames) == (21, (480, 832), 3)
    assert list(cfg.sampler.denoising_steps) == [1000, 750, 500, 250] and cfg.sampler.warp
    cache = cfg.sampler.cache
    # Reward Forcing's local_attn_size=9, sink_size=3: the 9 attended frames include the sink (methods.md A.1)
    assert (cache.sink_frames, cache.local_attn_frames, cache.rolling_frames, cache.eviction, cache.ema_alpha) == (
        3,
        9,
        6,
        "ema_sink",
        0.999,
    )
    assert (t.max_steps, t.batch_size, t.precision, t.accelerator, t.devices) == (
        1000,
        1,
        "bf16-mixed",
        "gpu",
        8,
    )
    assert cfg.codec.kind == "wan_vae" and cfg.codec.path == "weights/Wan2.1-T2V-1.3B-Diffusers/vae"
    assert cfg.text_encoder.kind == "umt5" and cfg.text_encoder.max_length == 512
    assert cfg.reward.name == "videoalign"
    va = cfg.reward.config()
    assert va.checkpoint_dir == "weights/VideoReward" and va.dtype == "bfloat16" and va.fps is None
    assert re.fullmatch(r"cuda:\d+", va.device)
    assert cfg.student == "weights/self_forcing/ode_init"
    assert cfg.prompts == "weights/prompts/vidprom_filtered_extended.txt"


def test_videoalign_device_follows_the_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_LOCALID", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert load_config(PAPER_BASE, schema=DMDStageConfig).reward.config().device == "cuda:5"
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setenv("SLURM_LOCALID", "3")
    assert load_config(PAPER_BASE, schema=DMDStageConfig).reward.config().device == "cuda:3"


@pytest.mark.parametrize("path", PAPER_ROWS, ids=rel)
def test_paper_row_networks_have_the_paper_sizes(path: Path) -> None:
    """Student (the row's model sizes), critic and real score (the checkpoints their paths name), on meta."""
    cfg = load(path)
    assert num_params_on_meta(cfg.model.to_diffusers_kwargs()) == pytest.approx(1.419e9, rel=5e-3)
    assert cfg.model == WAN_SIZES["Wan2.1-T2V-1.3B"]
    critic, real = named_checkpoint(cfg.critic), named_checkpoint(cfg.teacher)
    assert (critic, real) == ("Wan2.1-T2V-1.3B", "Wan2.1-T2V-14B")
    for name in (critic, real):
        sizes = WAN_SIZES[name]
        assert (sizes.in_channels, sizes.text_dim) == (
            cfg.model.in_channels,
            cfg.model.text_dim,
        )  # as check_r1
        assert checkpoint_params(name) == pytest.approx(PARAMS[name], rel=5e-3)


@pytest.mark.parametrize("path", PAPER_ROWS, ids=rel)
def test_paper_row_deepspeed_config(path: Path) -> None:
    from streamvid.distill.deepspeed_cpu import deepspeed_config

    cfg = load(path)
    t = cfg.trainer
    assert cfg.deepspeed.enabled
    ds = deepspeed_config(
        cfg.deepspeed.zero_stage,
        bf16=t.precision.startswith("bf16") and t.accelerator != "cpu",
        micro_batch_size=t.batch_size,
    )
    assert (
        ds["zero_optimization"]["stage"]
        == cfg.deepspeed.zero_stage
        == (3 if path.stem.endswith("zero3") else 2)
    )
    assert ds["bf16"]["enabled"] and ds["gradient_clipping"] == 0.0
    assert "gradient_accumulation_steps" not in ds  # the module accumulates (set_accumulation_boundary)
    assert ds["train_micro_batch_size_per_gpu"] == t.batch_size
    num_nodes = t.num_nodes
    world_size = t.devices * num_nodes
    if cfg.deepspeed.zero_stage == 3:
        assert world_size >= 2
    assert world_size * t.batch_size * cfg.dmd.gradient_accumulation_steps == REFERENCE_ROLLOUTS_PER_STEP


# ------------------------------------------------------------------------------------------------ twins, docs


@pytest.mark.parametrize("stem", sorted(EXPECTED_SHAPES), ids=str)
def test_paper_and_shapes_twins_set_the_same_flags(stem: str) -> None:
    paper, shapes = load(PAPER / f"{stem}.yaml"), load(SHAPES / f"{stem}.yaml")
    assert flags(paper) == flags(shapes)
    assert paper.stream_r1.spatial_reward_min_weight == shapes.stream_r1.spatial_reward_min_weight


def test_shapes_stream_r1_is_the_shipped_shapes_config() -> None:
    assert dataclasses.replace(load(SHAPES / "stream_r1.yaml"), output_dir="x") == dataclasses.replace(
        load(SHAPES_BASE), output_dir="x"
    )


@pytest.mark.parametrize("doc", ["docs/reproduction.md", "experiments/README.md"])
def test_docs_name_existing_rows(doc: str) -> None:
    text = (REPO / doc).read_text()
    named = set(re.findall(r"experiments/(?:stream_r1|shapes)/[\w.]+\.yaml", text))
    assert named, doc
    missing = sorted(p for p in named if not (REPO / p).is_file())
    assert not missing, f"{doc} names rows that do not exist: {missing}"
    for command in re.findall(r"streamvid-train (\w[\w-]*)", text):
        assert command in ("r1", "teacher", "ode-pairs", "student"), command
