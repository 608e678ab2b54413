"""Frames as binary WebSocket messages: one encoded image per frame (Pillow)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from streamvid.core.video_io import to_uint8_frames

MIME = {"png": "image/png", "jpeg": "image/jpeg"}


def encode_frames(pixels: torch.Tensor, fmt: str, jpeg_quality: int = 90) -> list[bytes]:
    """``pixels [n, 3, H, W]`` in [0, 1] -> one PNG or JPEG file per frame (uint8 as `write_video` rounds)."""
    return [encode_image(frame, fmt, jpeg_quality) for frame in to_uint8_frames(pixels)]


def encode_image(frame: np.ndarray, fmt: str, jpeg_quality: int = 90) -> bytes:
    """``frame [H, W, 3]`` uint8 -> the bytes of one image file (no colour profile, so a canvas draws it as is)."""
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(frame).save(buf, format="PNG", optimize=True)
    elif fmt == "jpeg":
        Image.fromarray(frame).save(buf, format="JPEG", quality=jpeg_quality)
    else:
        raise ValueError(f"frame format must be one of {sorted(MIME)}, got {fmt!r}")
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """The inverse of `encode_image`: ``[H, W, 3]`` uint8."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
