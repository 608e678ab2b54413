"""`PixelCodec`: lossless space-to-depth for the small synthetic shapes world.

Latents are pixels rearranged with ``torch.nn.functional.pixel_unshuffle`` (factor ``p``): a pixel frame
``[C, H, W]`` becomes ``[C * p * p, H / p, W / p]`` (channel ``c * p * p + i * p + j`` holds pixel
``(c, y * p + i, x * p + j)``), then mapped affinely ``[0, 1] -> [-1, 1]`` by ``y = 2 x - 1`` so latents have
the zero-centred range the diffusion model expects. The temporal ratio is 1 (one latent frame per pixel frame,
no causal first frame), so streaming needs no state.

Exactness: the rearrangement is exact; ``2 x - 1`` and its inverse ``(y + 1) / 2`` are exact in float32 for
values on a ``2**-24`` grid (``torch.rand`` output, ``k / 256``, ...). Values with finer low bits (e.g.
``k / 255`` below 0.25) may move by one float32 ulp of 1 (<= 6e-8).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from streamvid.core.codecs.base import check_latents, check_video


class PixelCodec:
    """`VideoCodec` by space-to-depth.

    Args:
        patch: spatial factor ``p``; ``H`` and ``W`` must be divisible by it.
        channels: pixel channels ``C`` (3 for RGB).

    Shapes: ``[B, T, C, H, W]`` in ``[0, 1]`` <-> ``[B, T, C * p * p, H / p, W / p]`` in ``[-1, 1]``.
    """

    temporal_ratio: int = 1

    def __init__(self, patch: int = 2, channels: int = 3) -> None:
        if patch < 1 or channels < 1:
            raise ValueError(
                f"PixelCodec needs patch >= 1 and channels >= 1, got patch={patch}, channels={channels}"
            )
        self.patch = patch
        self.channels = channels

    @property
    def latent_channels(self) -> int:
        """``C * p * p``."""
        return self.channels * self.patch * self.patch

    @property
    def spatial_ratio(self) -> int:
        """The patch factor ``p``."""
        return self.patch

    def num_pixel_frames(self, num_latent_frames: int) -> int:
        """One pixel frame per latent frame."""
        if num_latent_frames < 0:
            raise ValueError(f"num_latent_frames must be >= 0, got {num_latent_frames}")
        return num_latent_frames

    def encode(self, video: Tensor) -> Tensor:
        """Pixels ``[B, T, C, H, W]`` in ``[0, 1]`` -> latents ``[B, T, C*p*p, H/p, W/p]`` in ``[-1, 1]``."""
        check_video(video)
        batch, frames, channels, height, width = video.shape
        p = self.patch
        if channels != self.channels:
            raise ValueError(
                f"video has C={channels} channels, PixelCodec expects {self.channels} (shape {tuple(video.shape)})"
            )
        if height % p or width % p:
            raise ValueError(f"video H, W must be divisible by patch={p}, got shape {tuple(video.shape)}")
        z = F.pixel_unshuffle(video.reshape(batch * frames, channels, height, width), p)
        return (z * 2.0 - 1.0).reshape(batch, frames, self.latent_channels, height // p, width // p)

    def decode(self, latents: Tensor) -> Tensor:
        """Latents ``[B, T, C*p*p, h, w]`` in ``[-1, 1]`` -> pixels ``[B, T, C, h*p, w*p]`` in ``[0, 1]``.

        No clamping: latents outside ``[-1, 1]`` decode outside ``[0, 1]``.
        """
        check_latents(latents, self.latent_channels)
        batch, frames, c, h, w = latents.shape
        x = F.pixel_shuffle(((latents + 1.0) / 2.0).reshape(batch * frames, c, h, w), self.patch)
        return x.reshape(batch, frames, self.channels, h * self.patch, w * self.patch)

    def decode_stream(self) -> PixelStreamDecoder:
        """A `StreamDecoder` that decodes each chunk independently (no state is needed)."""
        return PixelStreamDecoder(self)


class PixelStreamDecoder:
    """Stateless `StreamDecoder` for `PixelCodec`: ``push(z) == codec.decode(z)``."""

    def __init__(self, codec: PixelCodec) -> None:
        self.codec = codec

    def push(self, latents: Tensor) -> Tensor:
        """Latents ``[B, f, C*p*p, h, w]`` -> pixels ``[B, f, C, h*p, w*p]``."""
        return self.codec.decode(latents)

    def reset(self) -> None:
        """Nothing to forget."""
