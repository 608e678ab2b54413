"""Typed config of a `StreamVidPipeline` (model, checkpoint, codec, text encoder, sampler, frame size, device).

Kept apart from `generator.py` so that loading or validating a config never imports diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamvid.core.config import ConfigError, check_choice
from streamvid.core.dtypes import check_dtype
from streamvid.core.model_config import WanModelConfig
from streamvid.core.sampler_config import SamplerConfig


@dataclass
class CodecConfig:
    """Pixels <-> latents."""

    kind: str = "pixel"
    """pixel (lossless space-to-depth, small worlds) | wan_vae (diffusers AutoencoderKLWan from `path`)."""
    path: str | None = None
    """Local directory of a diffusers-format Wan VAE (kind=wan_vae)."""
    patch: int = 2
    """Space-to-depth factor of the pixel codec: latent channels = 3 * patch**2."""
    dtype: str = "float32"
    """wan_vae: the dtype its weights are loaded straight into (safetensors -> dtype; paper rows: bfloat16, the
    VAE is frozen). Latents and pixels keep the caller's dtype."""

    def __post_init__(self) -> None:
        check_choice("codec.kind", self.kind, ("pixel", "wan_vae"))
        check_dtype("codec.dtype", self.dtype)


@dataclass
class TextEncoderConfig:
    """Prompt -> text states for cross-attention."""

    kind: str = "learned"
    """learned (small word-level encoder) | umt5 (transformers UMT5 encoder from `path`) | shapes_bag (the
    weight-free multi-hot bag of the shapes-world vocabulary, `BagOfWordsTextEncoder`, that the shapes-world
    teacher and student are trained with)."""
    path: str | None = None
    """Local directory with the weights; for `learned`, null builds a randomly initialised encoder (smoke runs)."""
    max_length: int = 32
    """Tokens per prompt (Wan's umT5: 512)."""
    dtype: str = "float32"
    """umt5: the dtype its weights are loaded straight into (paper rows: bfloat16; umT5-XXL is 22.7 GB in fp32)."""

    def __post_init__(self) -> None:
        check_choice("text_encoder.kind", self.kind, ("learned", "umt5", "shapes_bag"))
        check_dtype("text_encoder.dtype", self.dtype)


@dataclass
class GeneratorConfig:
    """Everything needed to stream video from a prompt."""

    model: WanModelConfig = field(default_factory=WanModelConfig)
    checkpoint: str | None = None
    """Student weights (safetensors / diffusers dir / Self-Forcing-family .pt); null = random initialisation."""
    use_ema: bool = True
    """Take `generator_ema` from Self-Forcing-family checkpoints when present."""
    codec: CodecConfig = field(default_factory=CodecConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    height: int = 32
    """Video height in pixels."""
    width: int = 32
    """Video width in pixels."""
    dtype: str = "float32"
    """Model dtype: float32 | bfloat16 | float16."""
    device: str = "auto"
    """auto (cuda when available) | cpu | cuda | cuda:N."""

    def __post_init__(self) -> None:
        check_dtype("dtype", self.dtype)


def codec_geometry(cfg: CodecConfig) -> tuple[int, int] | None:
    """`(latent_channels, spatial_ratio)` of the pixel codec `cfg` builds, without building it; None for a VAE
    read from `path` (its own config says; `build_generator` checks the built codec)."""
    return (3 * cfg.patch**2, cfg.patch) if cfg.kind == "pixel" else None


def check_generator(cfg: GeneratorConfig, where: str = "generator") -> None:
    """Raise `ConfigError` (naming `where`.field) when the parts of `cfg` cannot be built together.

    What `build_generator` would otherwise find only after importing diffusers and building the model: model
    channels vs the codec's latent channels, the frame size vs codec x patch, learned position tables vs the
    tokens per frame, the shapes-world bag encoder's width vs its vocabulary, and a CUDA device on a machine
    without one. Loading or validating never builds anything, so this runs in milliseconds.
    """
    check_device(cfg.device, f"{where}.device")
    check_text_encoder(cfg, where)
    geometry = codec_geometry(cfg.codec)
    if geometry is not None:
        check_codec_fit(cfg, *geometry, where)


def check_codec_fit(cfg: GeneratorConfig, channels: int, ratio: int, where: str = "generator") -> None:
    """`ConfigError` unless the model and frame size fit a codec of `channels` latent channels and `ratio`."""
    m = cfg.model
    if m.in_channels != channels or m.out_channels != channels:
        raise ConfigError(
            f"{where}.model.in_channels/out_channels ({m.in_channels}/{m.out_channels}) must equal the latent "
            f"channels of {where}.codec ({cfg.codec.kind}: {channels})"
        )
    r = ratio * max(m.patch_size[1:])
    if cfg.height < r or cfg.width < r or cfg.height % r or cfg.width % r:
        raise ConfigError(f"{where}.height/width ({cfg.height}x{cfg.width}) must be positive multiples of {r} "
                          f"(codec {ratio} x patch {max(m.patch_size[1:])})")
    if m.learned_positions is not None:
        tokens = (cfg.height // ratio // m.patch_size[1], cfg.width // ratio // m.patch_size[2])
        _, n_h, n_w = m.learned_positions
        if tokens[0] > n_h or tokens[1] > n_w:
            raise ConfigError(
                f"{where}.height/width {cfg.height}x{cfg.width} make {tokens[0]}x{tokens[1]} tokens per frame, but "
                f"{where}.model.learned_positions cover {n_h}x{n_w} (at most {n_h * r}x{n_w * r} pixels)"
            )


def check_text_encoder(cfg: GeneratorConfig, where: str = "generator") -> None:
    """`ConfigError` when the bag-of-words encoder cannot give every shapes-world word a channel."""
    m = cfg.model
    if cfg.text_encoder.kind == "shapes_bag":
        from streamvid.core.world.prompts import VOCAB

        if m.text_dim < len(VOCAB):
            raise ConfigError(f"{where}.text_encoder.kind=shapes_bag needs {where}.model.text_dim >= {len(VOCAB)} "
                              f"(one channel per shapes-world word), got {m.text_dim}")


def check_device(name: str, what: str = "device") -> None:
    """Raise `ConfigError` for a CUDA device on a torch without CUDA, or a name torch does not know."""
    import torch

    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{what}={name!r} is not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{what}={name!r}, but this torch has no CUDA device (torch {torch.__version__}); "
                          f"use {what.rpartition('.')[2]}=cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{what}={name!r}, but only {torch.cuda.device_count()} CUDA device(s) are visible")
