"""Typed config of a `StreamVidPipeline` (model, checkpoint, codec, text encoder, sampler, frame size, device).

Kept apart from `generator.py` so that loading or validating a config never imports diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamvid.core.config import check_choice
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
