"""`VideoGenerator`: text -> streamed latents -> streamed pixels, built from one typed config.

It bundles the causal model, the codec, the text encoder and the `StreamingSampler`, so every entry point
(`streamvid-generate`, Stream-T1 search, the evaluation runner) builds a generator the same way::

    gen = build_generator(load_config("configs/generate/tiny.yaml", schema=GenerateConfig).generator)
    for frames in gen.stream_video(["a red circle moving left"], num_frames=12, seed=0):
        ...  # frames: [B, t, 3, H, W] in [0, 1], as soon as each chunk is decoded
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from streamvid.core.causal_wan import CausalWanModel, TextContext
from streamvid.core.checkpoints import load_checkpoint
from streamvid.core.codecs import PixelCodec, VideoCodec
from streamvid.core.config import ConfigError, check_choice
from streamvid.core.model_config import WanModelConfig
from streamvid.core.sampler import ChunkCallback, GaussianNoise, StreamingSampler
from streamvid.core.sampler_config import SamplerConfig
from streamvid.core.text import LearnedTextEncoder, TextEncoder
from streamvid.core.text.learned import split_words

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class CodecConfig:
    """Pixels <-> latents."""

    kind: str = "pixel"
    """pixel (lossless space-to-depth, small worlds) | wan_vae (diffusers AutoencoderKLWan from `path`)."""
    path: str | None = None
    """Local directory of a diffusers-format Wan VAE (kind=wan_vae)."""
    patch: int = 2
    """Space-to-depth factor of the pixel codec: latent channels = 3 * patch**2."""

    def __post_init__(self) -> None:
        check_choice("codec.kind", self.kind, ("pixel", "wan_vae"))


@dataclass
class TextEncoderConfig:
    """Prompt -> text states for cross-attention."""

    kind: str = "learned"
    """learned (small word-level encoder) | umt5 (transformers UMT5 encoder from `path`)."""
    path: str | None = None
    """Local directory with the weights; for `learned`, null builds a randomly initialised encoder (smoke runs)."""
    max_length: int = 32
    """Tokens per prompt (Wan's umT5: 512)."""

    def __post_init__(self) -> None:
        check_choice("text_encoder.kind", self.kind, ("learned", "umt5"))


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
        check_choice("dtype", self.dtype, tuple(_DTYPES))


class VideoGenerator:
    """A causal model, its codec, text encoder and sampler, ready to stream pixels."""

    def __init__(self, model: CausalWanModel, codec: VideoCodec, text_encoder: TextEncoder, sampler, height, width):
        self.model, self.codec, self.text_encoder, self.sampler = model, codec, text_encoder, sampler
        self.height, self.width = height, width

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        r = self.codec.spatial_ratio
        return self.codec.latent_channels, self.height // r, self.width // r

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> TextContext:
        emb = self.text_encoder.encode(prompts).embeddings
        param = next(self.model.parameters())
        return self.model.encode_text(emb.to(device=param.device, dtype=param.dtype))

    def stream_video(
        self,
        prompts: list[str],
        num_frames: int | None,
        seed: int,
        callbacks: list[ChunkCallback] | None = None,
        prompt_switches: dict[int, list[str]] | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield decoded pixel chunks `[B, t, 3, H, W]` in [0, 1]; `num_frames` counts latent frames."""
        text = self.encode_prompts(prompts)
        switches = {k: self.encode_prompts(v) for k, v in (prompt_switches or {}).items()}
        decoder = self.codec.decode_stream()
        chunks = self.sampler.stream(
            text, self.latent_shape, num_frames, len(prompts), GaussianNoise(seed), callbacks, switches
        )
        for chunk in chunks:
            yield decoder.push(chunk.latents.float()).clamp(0, 1)


def cast_keeping_fp32_modules(model: CausalWanModel, dtype: torch.dtype) -> CausalWanModel:
    """Cast to `dtype` but keep diffusers' `_keep_in_fp32_modules` (norms, time embedder, modulation) in fp32."""
    if dtype == torch.float32:
        return model
    torch.nn.Module.to(model, dtype=dtype)
    keep = set(model._keep_in_fp32_modules or [])
    for name, module in model.named_modules():
        if keep & set(name.split(".")):
            torch.nn.Module.float(module)
    return model


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_codec(cfg: CodecConfig) -> VideoCodec:
    if cfg.kind == "pixel":
        return PixelCodec(patch=cfg.patch)
    if cfg.path is None:
        raise ConfigError("codec.kind=wan_vae needs codec.path (a local diffusers AutoencoderKLWan directory)")
    from streamvid.core.codecs.wan_vae import WanVAECodec

    return WanVAECodec.from_pretrained(cfg.path)


def build_text_encoder(cfg: TextEncoderConfig, embed_dim: int, vocabulary: list[str]) -> TextEncoder:
    if cfg.kind == "umt5":
        if cfg.path is None:
            raise ConfigError("text_encoder.kind=umt5 needs text_encoder.path (a local UMT5 directory)")
        from streamvid.core.text.umt5 import UMT5TextEncoder

        return UMT5TextEncoder.from_pretrained(cfg.path, max_length=cfg.max_length)
    if cfg.path is not None:
        return LearnedTextEncoder.load(cfg.path)
    return LearnedTextEncoder(vocabulary, embed_dim=embed_dim, max_length=cfg.max_length).eval()


def build_generator(cfg: GeneratorConfig, vocabulary: list[str] | None = None) -> VideoGenerator:
    """Build the model (random or from `cfg.checkpoint`), codec, text encoder and sampler.

    `vocabulary` seeds a randomly initialised learned text encoder (smoke runs without weights).
    """
    codec = build_codec(cfg.codec)
    if cfg.model.in_channels != codec.latent_channels or cfg.model.out_channels != codec.latent_channels:
        raise ConfigError(
            f"model.in_channels/out_channels ({cfg.model.in_channels}/{cfg.model.out_channels}) must equal the "
            f"codec's latent channels ({codec.latent_channels})"
        )
    r = codec.spatial_ratio * max(cfg.model.patch_size[1:])
    if cfg.height % r or cfg.width % r:
        raise ConfigError(f"height/width ({cfg.height}x{cfg.width}) must be multiples of {r} (codec x patch)")
    text_encoder = build_text_encoder(cfg.text_encoder, cfg.model.text_dim, vocabulary or [])
    if text_encoder.embed_dim != cfg.model.text_dim:
        raise ConfigError(f"text encoder width {text_encoder.embed_dim} != model.text_dim {cfg.model.text_dim}")
    model = CausalWanModel(**cfg.model.to_diffusers_kwargs())
    if cfg.checkpoint is not None:
        load_checkpoint(cfg.checkpoint, model, use_ema=cfg.use_ema)
    device = resolve_device(cfg.device)
    model = cast_keeping_fp32_modules(model.to(device), _DTYPES[cfg.dtype]).eval().requires_grad_(False)
    if isinstance(text_encoder, torch.nn.Module):
        text_encoder = text_encoder.to(device)
    sampler = StreamingSampler(model, cfg.sampler.schedule(), cfg.sampler.cache.to_layout(), cfg.sampler.settings())
    return VideoGenerator(model, codec, text_encoder, sampler, cfg.height, cfg.width)


def prompt_vocabulary(prompts: list[str]) -> list[str]:
    """Words of the given prompts (vocabulary of a randomly initialised learned text encoder)."""
    return sorted({w for p in prompts for w in split_words(p)})
