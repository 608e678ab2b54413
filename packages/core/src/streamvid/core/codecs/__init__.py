"""Video codecs: pixels ``[B, T, C, H, W]`` in ``[0, 1]`` <-> frame-major latents ``[B, F, c, h, w]``.

`WanVAECodec` imports diffusers lazily (on attribute access) so the pixel codec stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamvid.core.codecs.base import StreamDecoder, VideoCodec
from streamvid.core.codecs.pixel import PixelCodec, PixelStreamDecoder

if TYPE_CHECKING:
    from streamvid.core.codecs.wan_vae import StreamingWanDecoder, WanVAECodec

__all__ = [
    "PixelCodec",
    "PixelStreamDecoder",
    "StreamDecoder",
    "StreamingWanDecoder",
    "VideoCodec",
    "WanVAECodec",
]


def __getattr__(name: str) -> Any:
    if name in ("WanVAECodec", "StreamingWanDecoder"):
        from streamvid.core.codecs import wan_vae

        return getattr(wan_vae, name)
    raise AttributeError(f"module 'streamvid.core.codecs' has no attribute '{name}'")
