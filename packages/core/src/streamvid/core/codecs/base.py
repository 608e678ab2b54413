"""The `VideoCodec` interface: pixels <-> latents, with a stateful streaming decoder.

Conventions used by the whole repo:

- pixels are ``[B, T, C, H, W]``, float, in ``[0, 1]``;
- latents are **frame-major** ``[B, F, c, h, w]`` (diffusers' Wan VAE works in ``[B, c, F, h, w]``;
  codecs transpose internally);
- ``T = 1 + temporal_ratio * (F - 1)`` (causal codecs: the first latent frame covers one pixel frame,
  every later one covers ``temporal_ratio``), ``H = spatial_ratio * h``, ``W = spatial_ratio * w``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


def causal_num_pixel_frames(num_latent_frames: int, temporal_ratio: int) -> int:
    """Pixel frames produced by ``num_latent_frames`` of a causal codec: ``1 + r * (F - 1)`` (0 for F=0)."""
    if num_latent_frames < 0:
        raise ValueError(f"num_latent_frames must be >= 0, got {num_latent_frames}")
    if num_latent_frames == 0:
        return 0
    return 1 + temporal_ratio * (num_latent_frames - 1)


def causal_num_latent_frames(num_pixel_frames: int, temporal_ratio: int) -> int:
    """Inverse of `causal_num_pixel_frames`; raises unless ``T = 1 + r * k`` for an integer ``k >= 0``."""
    if num_pixel_frames < 1 or (num_pixel_frames - 1) % temporal_ratio != 0:
        raise ValueError(
            f"a causal codec with temporal_ratio={temporal_ratio} needs T = 1 + {temporal_ratio}*k pixel "
            f"frames, got T={num_pixel_frames}"
        )
    return 1 + (num_pixel_frames - 1) // temporal_ratio


def check_video(video: Tensor, name: str = "video") -> None:
    """Raise a ValueError unless ``video`` is a 5-d ``[B, T, C, H, W]`` floating tensor."""
    if video.dim() != 5:
        raise ValueError(f"{name} must be [B, T, C, H, W] (5-d), got shape {tuple(video.shape)}")
    if not video.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor in [0, 1], got dtype {video.dtype}")


def check_latents(latents: Tensor, channels: int, name: str = "latents") -> None:
    """Raise a ValueError unless ``latents`` is ``[B, F, channels, h, w]``."""
    if latents.dim() != 5 or latents.shape[2] != channels:
        raise ValueError(
            f"{name} must be frame-major [B, F, c={channels}, h, w], got shape {tuple(latents.shape)}"
        )


@runtime_checkable
class StreamDecoder(Protocol):
    """Decodes latents chunk by chunk, keeping whatever state the codec needs between chunks.

    Pushing chunks ``z[:, a:b]`` in order and concatenating the outputs along dim 1 equals
    ``codec.decode(z)`` (up to float round-off).
    """

    def push(self, latents: Tensor) -> Tensor:
        """Decode the next ``[B, f, c, h, w]`` latent chunk into ``[B, t, C, H, W]`` pixels in ``[0, 1]``."""
        ...

    def reset(self) -> None:
        """Forget all state; the next `push` starts a new video."""
        ...


@runtime_checkable
class VideoCodec(Protocol):
    """Maps pixel videos ``[B, T, C, H, W]`` in ``[0, 1]`` to latents ``[B, F, c, h, w]`` and back."""

    latent_channels: int
    """Channels ``c`` of a latent frame."""
    temporal_ratio: int
    """Pixel frames per latent frame (after the first, for causal codecs)."""
    spatial_ratio: int
    """Pixels per latent cell along H and along W."""

    def encode(self, video: Tensor) -> Tensor:
        """``[B, T, C, H, W]`` in ``[0, 1]`` -> latents ``[B, F, c, h, w]``."""
        ...

    def decode(self, latents: Tensor) -> Tensor:
        """Latents ``[B, F, c, h, w]`` -> ``[B, T, C, H, W]`` in ``[0, 1]``."""
        ...

    def decode_stream(self) -> StreamDecoder:
        """A fresh `StreamDecoder` for one video (or one batch of videos)."""
        ...

    def num_pixel_frames(self, num_latent_frames: int) -> int:
        """Pixel frames ``T`` decoded from ``num_latent_frames`` latent frames."""
        ...
