"""`build_generator`: the one way to build a `StreamVidPipeline` (text -> streamed pixels) from a typed config.

It builds the causal model, the codec, the text encoder and the sampler settings into a `StreamVidPipeline`, so
every entry point (`streamvid-generate`, Stream-T1 search, the evaluation runner, `StreamVidPipeline.from_pretrained`)
builds a generator the same way::

    pipe = build_generator(load_config("configs/generate/tiny_random.yaml", schema=GenerateConfig).generator)
    for frames in pipe.stream("a red circle moving left", num_frames=12, seed=0):
        ...  # frames: [B, t, 3, H, W] in [0, 1], as soon as each chunk is decoded

The config dataclasses live in `generator_config` (cheap to import, no diffusers); they are re-exported here.
"""

from __future__ import annotations

import dataclasses

import torch

from streamvid.core.causal_wan import CausalWanModel
from streamvid.core.checkpoints import CheckpointFormatError, CheckpointMismatchError, load_checkpoint
from streamvid.core.codecs import PixelCodec, VideoCodec
from streamvid.core.config import ConfigError
from streamvid.core.dtypes import DTYPES, check_dtype
from streamvid.core.generator_config import (
    CodecConfig,
    GeneratorConfig,
    TextEncoderConfig,
    check_codec_fit,
    check_generator,
)
from streamvid.core.pipeline import StreamVidPipeline
from streamvid.core.text import LearnedTextEncoder, TextEncoder
from streamvid.core.text.learned import split_words


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

    return WanVAECodec.from_pretrained(cfg.path, dtype=check_dtype("codec.dtype", cfg.dtype))


def build_text_encoder(cfg: TextEncoderConfig, embed_dim: int, vocabulary: list[str]) -> TextEncoder:
    if cfg.kind == "umt5":
        if cfg.path is None:
            raise ConfigError("text_encoder.kind=umt5 needs text_encoder.path (a local UMT5 directory)")
        from streamvid.core.text.umt5 import UMT5TextEncoder

        return UMT5TextEncoder.from_pretrained(cfg.path, max_length=cfg.max_length,
                                               dtype=check_dtype("text_encoder.dtype", cfg.dtype))
    if cfg.kind == "shapes_bag":
        from streamvid.core.text.bag_of_words import BagOfWordsTextEncoder
        from streamvid.core.world import vocabulary as shapes_vocabulary

        return BagOfWordsTextEncoder(shapes_vocabulary(), embed_dim=embed_dim)
    if cfg.path is not None:
        return LearnedTextEncoder.load(cfg.path).eval()
    return LearnedTextEncoder(vocabulary, embed_dim=embed_dim, max_length=cfg.max_length).eval()


def build_generator(cfg: GeneratorConfig, vocabulary: list[str] | None = None) -> StreamVidPipeline:
    """Build the model (random or from `cfg.checkpoint`), codec, text encoder and sampler into a pipeline.

    `vocabulary` seeds a randomly initialised learned text encoder (smoke runs without weights).
    """
    check_generator(cfg)  # the config alone: channels, frame size, positions, text encoder, device
    codec = build_codec(cfg.codec)
    check_codec_fit(cfg, codec.latent_channels, codec.spatial_ratio)  # a VAE read from its path
    text_encoder = build_text_encoder(cfg.text_encoder, cfg.model.text_dim, vocabulary or [])
    if text_encoder.embed_dim != cfg.model.text_dim:
        raise ConfigError(f"text encoder width {text_encoder.embed_dim} != model.text_dim {cfg.model.text_dim}")
    model = CausalWanModel(**cfg.model.to_diffusers_kwargs())
    if cfg.checkpoint is not None:
        load_generator_checkpoint(cfg, model)
    device = resolve_device(cfg.device)
    model = cast_keeping_fp32_modules(model.to(device), DTYPES[cfg.dtype]).eval().requires_grad_(False)
    if isinstance(text_encoder, torch.nn.Module):
        text_encoder = text_encoder.to(device)
    return StreamVidPipeline(model, codec, text_encoder, cfg.sampler, cfg.height, cfg.width,
                             codec_config=dataclasses.asdict(cfg.codec),
                             text_encoder_config=dataclasses.asdict(cfg.text_encoder))


def load_generator_checkpoint(cfg: GeneratorConfig, model: CausalWanModel) -> None:
    """Load `cfg.checkpoint` into `model`; errors name the setting (`generator.checkpoint`) and keep their type."""
    try:
        load_checkpoint(cfg.checkpoint, model, use_ema=cfg.use_ema)
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(
            f"generator.checkpoint {cfg.checkpoint} does not fit generator.model (set model.* to the checkpoint's "
            f"architecture): {err}"
        ) from None
    except (FileNotFoundError, CheckpointFormatError) as err:
        raise type(err)(f"generator.checkpoint: {err}") from None


def random_parts(cfg: GeneratorConfig) -> list[str]:
    """The parts `build_generator` initialises randomly: "model" (no checkpoint), "text encoder" (learned, no path).

    A smoke run has both; a trained checkpoint with a random text encoder cannot follow its prompts.
    """
    parts = ["model"] if cfg.checkpoint is None else []
    if cfg.text_encoder.kind == "learned" and cfg.text_encoder.path is None:
        parts.append("text encoder")
    return parts


def prompt_vocabulary(prompts: list[str]) -> list[str]:
    """Words of the given prompts (vocabulary of a randomly initialised learned text encoder)."""
    return sorted({w for p in prompts for w in split_words(p)})


__all__ = [
    "CodecConfig",
    "GeneratorConfig",
    "TextEncoderConfig",
    "StreamVidPipeline",
    "build_codec",
    "build_generator",
    "build_text_encoder",
    "cast_keeping_fp32_modules",
    "load_generator_checkpoint",
    "prompt_vocabulary",
    "random_parts",
    "resolve_device",
]
