"""Corruptions of shapes-world videos, each hurting one oracle axis, to test that scores rank truth first.

=================  ======  =============================================================================
kind               axis    what
=================  ======  =============================================================================
wrong_colour       text    another palette colour
wrong_direction    text    every segment's direction reversed (path mirrored, shifted back into frame)
jitter             motion  i.i.d. Gaussian noise on the centroid positions (``strength`` = sigma, px)
frozen             motion  ``strength`` frames repeat the frame before them (then the object jumps on)
blur               visual  Gaussian blur of every frame (``strength`` = sigma, px)
noise              visual  i.i.d. Gaussian pixel noise, clamped to [0, 1] (``strength`` = sigma)
=================  ======  =============================================================================

Pixel-level pieces (`gaussian_blur`, `add_noise`, `freeze_frames`) work on any video tensor; attribute-level
ones (`recolour`, `reverse_directions`, `jitter_positions`) change what is rendered; `render_corrupted` does
one kind from attributes. All are deterministic given ``seed``.
"""

from __future__ import annotations

import dataclasses
import math
import random

import torch
import torch.nn.functional as F
from torch import Tensor

from streamvid.core.world.dataset import start_range
from streamvid.core.world.render import (
    PALETTE,
    ShapeAttributes,
    WorldConfig,
    make_background,
    render,
    render_trajectory,
    trajectory,
)

__all__ = [
    "CORRUPTION_AXES",
    "DEFAULT_STRENGTH",
    "add_noise",
    "freeze_frames",
    "gaussian_blur",
    "jitter_positions",
    "recolour",
    "render_corrupted",
    "reverse_directions",
]

CORRUPTION_AXES: dict[str, str] = {
    "wrong_colour": "text",
    "wrong_direction": "text",
    "jitter": "motion",
    "frozen": "motion",
    "blur": "visual",
    "noise": "visual",
}
"""Corruption kind -> the oracle axis it should lower."""
DEFAULT_STRENGTH: dict[str, float] = {"jitter": 1.0, "frozen": 4, "blur": 1.0, "noise": 0.08}
"""Default ``strength`` per kind that has one (px, frames, px, pixel sigma)."""
_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def gaussian_blur(video: Tensor, sigma: float) -> Tensor:
    """Blur the last two dims of ``video [..., H, W]`` with a Gaussian of ``sigma`` px (replicate padding)."""
    if sigma <= 0:
        return video.clone()
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=video.device, dtype=video.dtype)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    flat = video.reshape(-1, 1, *video.shape[-2:])
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return flat.view(video.shape)


def add_noise(video: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """``video`` plus i.i.d. Gaussian noise of std ``sigma``, clamped to [0, 1] (same shape)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(video.shape, generator=gen).to(video.device, video.dtype)
    return (video + sigma * noise).clamp(0.0, 1.0)


def freeze_frames(video: Tensor, start: int, length: int) -> Tensor:
    """Copy of ``video [T, ...]`` whose frames ``start + 1 .. start + length`` repeat frame ``start``."""
    t = video.shape[0]
    if start < 0 or length < 0 or start + length >= t:
        raise ValueError(f"cannot freeze {length} frames after frame {start} of a {t}-frame video")
    out = video.clone()
    out[start + 1 : start + 1 + length] = video[start]
    return out


def jitter_positions(positions: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """``positions [T, 2]`` plus i.i.d. Gaussian noise of std ``sigma`` px per coordinate."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(positions.shape, generator=gen, dtype=torch.float32).to(positions.device)
    return positions + sigma * noise


def recolour(attrs: ShapeAttributes, seed: int = 0) -> ShapeAttributes:
    """``attrs`` with a different palette colour, drawn from ``seed``."""
    others = [c for c in PALETTE if c != attrs.colour]
    return dataclasses.replace(attrs, colour=random.Random(seed).choice(others))


def reverse_directions(attrs: ShapeAttributes, config: WorldConfig) -> ShapeAttributes:
    """``attrs`` with every segment's direction reversed, starting where the original path ends (for one
    segment this is the time-reversed clip), moved as little as needed to keep the path in frame."""
    segments = tuple((_OPPOSITE[d], n) for d, n in attrs.segments)
    end = trajectory(attrs.start, attrs.speed, attrs.segments)[-1].tolist()
    lo, hi = start_range(config, attrs.shape, attrs.size, attrs.speed, segments)
    start = tuple(min(max(end[a], lo[a]), max(lo[a], hi[a])) for a in range(2))
    return dataclasses.replace(attrs, segments=segments, start=start)


def render_corrupted(
    attrs: ShapeAttributes,
    kind: str,
    config: WorldConfig,
    seed: int = 0,
    strength: float | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Render ``attrs`` with corruption ``kind`` (see `CORRUPTION_AXES`) -> video ``[T, 3, H, W]`` in [0, 1].

    ``strength`` defaults to `DEFAULT_STRENGTH`; ``seed`` drives the random parts (colour, noise, frame).
    """
    if kind not in CORRUPTION_AXES:
        raise ValueError(f"unknown corruption {kind!r}; expected one of {list(CORRUPTION_AXES)}")
    s = DEFAULT_STRENGTH.get(kind, 0.0) if strength is None else strength
    if kind == "wrong_colour":
        return render(recolour(attrs, seed), config, device)
    if kind == "wrong_direction":
        return render(reverse_directions(attrs, config), config, device)
    if kind == "jitter":
        positions = jitter_positions(trajectory(attrs.start, attrs.speed, attrs.segments), s, seed).to(device)
        background = make_background(config, attrs.texture_seed, device)
        return render_trajectory(positions, attrs.colour, attrs.shape, attrs.size, config, background)
    video = render(attrs, config, device)
    if kind == "blur":
        return gaussian_blur(video, s)
    if kind == "noise":
        return add_noise(video, s, seed)
    length = min(int(s), video.shape[0] - 2)
    start = random.Random(seed).randrange(0, video.shape[0] - length - 1)
    return freeze_frames(video, start, length)
