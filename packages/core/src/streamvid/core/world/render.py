"""Renderer of the shapes world: one coloured, anti-aliased shape moving on a dark background.

Coordinates are continuous pixels: ``x`` to the right, ``y`` downwards; pixel ``(row i, column j)`` covers
``[j, j + 1] x [i, i + 1]``, so its centre is ``(j + 0.5, i + 0.5)``. A position is the shape's **area
centroid** (for the triangle, one third of the height above its base), so the oracle's intensity-weighted
centroid recovers it exactly. Every shape has a ``size x size`` bounding box: a square of side ``size``, a
circle of diameter ``size``, and an upward isosceles triangle of base and height ``size`` (fill ratios of the
box: 1, pi/4, 1/2).

Anti-aliasing is analytic: the signed distance to the shape is evaluated on a ``supersample x supersample``
grid inside each pixel, clamped to a one-sub-pixel ramp (``clamp(0.5 - d, 0, 1)``) and averaged, which gives
the area coverage to within ~0.5 % (sharp triangle corners) and centroids to ~0.05 px. Rendering is pure
torch, deterministic, and runs on the device of its inputs.

Defaults (`WorldConfig`) and why. A probe at 16x16 px with 8 frames and 4-px squares at 1 px/frame (4x4
patches) learned colours but not motion: over a clip the square moved 7 px, under twice its own size, a
quarter of a token per frame. Here: 32x32 px (the pixel codec with patch 2 plus the Wan 1x2x2 patch give
8x8 tokens of 4x4 px per frame, 64 tokens), 12 frames (4 chunks of 3, 3 of 4), fps 8, objects of 7-8 px
(2x2 tokens) moving at 2 px/frame (half a token per frame), i.e. 22 px over the clip: ~3 object sizes and
5.5 tokens, across nearly the whole frame. Motion is the dominant change in the pixels, and the path has
so little slack along its axis that the start position already tells the direction, which keeps direction
learnable for a small model on a CPU (a 1.5 M-parameter conv flow model reaches 72-91 % direction
accuracy, chance 25 %, after 15 minutes on one core: docs/shapes_world.md). The limit is geometric:
``size + speed * steps <= 32`` keeps the object in frame (`WorldConfig` checks it), so a longer clip per
segment needs a lower speed or a larger frame; multi-segment videos (``num_segments``) turn instead,
12 frames per segment fit at the defaults.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from streamvid.core.config import ConfigError

__all__ = [
    "DIRECTIONS",
    "PALETTE",
    "SHAPES",
    "ShapeAttributes",
    "WorldConfig",
    "coverage",
    "make_background",
    "render",
    "render_batch",
    "render_trajectory",
    "segment_frame_ranges",
    "shape_extent",
    "trajectory",
]

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.95, 0.20, 0.20),
    "green": (0.20, 0.85, 0.25),
    "blue": (0.25, 0.40, 1.00),
    "yellow": (0.95, 0.90, 0.20),
    "magenta": (0.90, 0.25, 0.90),
    "cyan": (0.20, 0.85, 0.90),
    "white": (0.95, 0.95, 0.95),
}
"""Colour name -> RGB in [0, 1]; pairwise distances >= 0.65, every colour >= 0.8 away from the background."""
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
"""Shape names; the index is the shape id used by `coverage`."""
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
"""Direction name -> unit displacement ``(dx, dy)`` in image coordinates (y points down)."""


@dataclass
class WorldConfig:
    """The shapes world: frame geometry, what the dataset samples, and how it is drawn."""

    height: int = 32
    """Frame height ``H`` in pixels."""
    width: int = 32
    """Frame width ``W`` in pixels."""
    num_frames: int = 12
    """Frames ``T`` per video (a multiple of 3- and 4-frame chunks)."""
    fps: int = 8
    """Frames per second, for writing videos; motion is defined per frame."""
    num_segments: int = 1
    """Motion segments per video (directions in turn, as in "moving left, then up"); frames split evenly."""
    size_min: float = 7.0
    """Smallest object size in pixels (bounding-box side)."""
    size_max: float = 8.0
    """Largest object size in pixels; the dataset samples uniformly in [size_min, size_max]."""
    speed_min: float = 2.0
    """Smallest speed in pixels per frame."""
    speed_max: float = 2.0
    """Largest speed in pixels per frame; the dataset samples uniformly in [speed_min, speed_max]."""
    margin: float = 0.0
    """Minimum distance in pixels between the object's bounding box and the frame border, in every frame."""
    colours: tuple[str, ...] = tuple(PALETTE)
    """Colour names the dataset draws from (keys of `PALETTE`)."""
    shapes: tuple[str, ...] = SHAPES
    """Shape names the dataset draws from (subset of `SHAPES`)."""
    directions: tuple[str, ...] = tuple(DIRECTIONS)
    """Directions the dataset draws from (keys of `DIRECTIONS`)."""
    heldout_pairs: tuple[str, ...] = ("green circle", "magenta square", "yellow triangle")
    """"colour shape" pairs excluded from train/val and making up the held-out split."""
    background: tuple[float, float, float] = (0.1, 0.1, 0.1)
    """Background RGB in [0, 1]."""
    texture: float = 0.0
    """Amplitude of a faint static grey texture added to the background (0: plain)."""
    supersample: int = 4
    """Sub-samples per pixel side for the anti-aliased coverage."""
    seed: int = 0
    """Dataset seed; item ``i`` of a split depends only on (seed, split, i)."""

    def __post_init__(self) -> None:
        for name, values, known in (
            ("colours", self.colours, PALETTE),
            ("shapes", self.shapes, SHAPES),
            ("directions", self.directions, DIRECTIONS),
        ):
            unknown = [v for v in values if v not in known]
            if unknown or not values:
                raise ConfigError(f"'{name}' must be a non-empty subset of {list(known)}, got {list(values)}")
        if not (1 <= self.num_segments <= self.num_frames - 1):
            raise ConfigError(f"'num_segments' must be in [1, num_frames - 1], got {self.num_segments}")
        if not (0 < self.size_min <= self.size_max and 0 <= self.speed_min <= self.speed_max):
            raise ConfigError(
                f"need 0 < size_min <= size_max and 0 <= speed_min <= speed_max; got sizes "
                f"[{self.size_min}, {self.size_max}], speeds [{self.speed_min}, {self.speed_max}]"
            )
        ranges = segment_frame_ranges(self.num_frames, self.num_segments)
        steps = max(b - a - (k == 0) for k, (a, b) in enumerate(ranges))
        room = min(self.height, self.width) - 2 * self.margin
        if self.size_max + steps * self.speed_max > room + 1e-6:
            raise ConfigError(
                f"objects leave the frame: size_max + {steps} steps x speed_max = "
                f"{self.size_max + steps * self.speed_max:g} px > {room:g} px available; lower speed_max, "
                "size_max or num_frames per segment, or raise height/width"
            )


@dataclass(frozen=True)
class ShapeAttributes:
    """Everything needed to render one video: what moves, where it starts and how it moves.

    ``segments`` is ``((direction, num_frames), ...)``; the frame counts sum to ``T``. The displacement from
    frame ``t - 1`` to frame ``t`` follows the direction of the segment that contains frame ``t``.
    """

    colour: str
    shape: str
    size: float
    start: tuple[float, float]
    speed: float
    segments: tuple[tuple[str, int], ...]
    texture_seed: int = 0

    def __post_init__(self) -> None:
        if self.colour not in PALETTE or self.shape not in SHAPES:
            raise ValueError(f"unknown colour {self.colour!r} or shape {self.shape!r}")
        bad = [d for d, n in self.segments if d not in DIRECTIONS or n < 1]
        if bad or not self.segments:
            raise ValueError(f"segments must be (direction, frames >= 1) pairs, got {self.segments}")

    @property
    def num_frames(self) -> int:
        """Frames ``T`` of the video."""
        return sum(n for _, n in self.segments)

    @property
    def directions(self) -> tuple[str, ...]:
        """The direction of each segment."""
        return tuple(d for d, _ in self.segments)


def segment_frame_ranges(num_frames: int, num_segments: int) -> list[tuple[int, int]]:
    """Split frames ``[0, T)`` evenly into ``K`` consecutive ``(start, stop)`` ranges covering the clip."""
    if not 1 <= num_segments <= num_frames:
        raise ValueError(f"need 1 <= num_segments <= num_frames, got {num_segments} and {num_frames}")
    bounds = [round(k * num_frames / num_segments) for k in range(num_segments + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def shape_extent(shape: str, size: float) -> tuple[float, float, float, float]:
    """Bounding box ``(left, top, right, bottom)`` of a shape relative to its centroid, in pixels."""
    h = size / 2
    if shape == "triangle":
        return (-h, -2 * size / 3, h, size / 3)
    return (-h, -h, h, h)


def trajectory(start: Sequence[float], speed: float, segments: Sequence[tuple[str, int]]) -> Tensor:
    """Centroid positions ``[T, 2]`` (x, y; float32) of a piecewise constant-velocity path."""
    steps = [DIRECTIONS[d] for d, n in segments for _ in range(n)]
    vel = torch.tensor(steps, dtype=torch.float64) * speed
    vel[0] = 0.0  # frame 0 sits at the start
    return (torch.tensor(start, dtype=torch.float64) + vel.cumsum(0)).float()


def _square_sdf(dx: Tensor, dy: Tensor, s: Tensor) -> Tensor:
    return torch.maximum(dx.abs(), dy.abs()) - s / 2


def _circle_sdf(dx: Tensor, dy: Tensor, s: Tensor) -> Tensor:
    return torch.sqrt(dx**2 + dy**2) - s / 2


def _triangle_sdf(dx: Tensor, dy: Tensor, s: Tensor) -> Tensor:
    """Max of the three edges' signed distances (exact inside, a close bound outside near the corners)."""
    apex = dy + 2 * s / 3  # vertical distance below the apex
    sides = torch.maximum(-2 * dx - apex, 2 * dx - apex) / math.sqrt(5.0)
    return torch.maximum(dy - s / 3, sides)


_SDFS = (_square_sdf, _circle_sdf, _triangle_sdf)


def coverage(
    centres: Tensor, sizes: Tensor, shape_ids: Tensor, height: int, width: int, supersample: int = 4
) -> Tensor:
    """Anti-aliased area coverage ``[N, H, W]`` in [0, 1] of ``N`` shapes.

    Args:
        centres: ``[N, 2]`` centroids (x, y) in pixels.
        sizes: ``[N]`` bounding-box sides in pixels.
        shape_ids: ``[N]`` long indices into `SHAPES`.
        height, width: frame size.
        supersample: sub-samples per pixel side.
    """
    ss = supersample
    dev, dt = centres.device, centres.dtype if centres.is_floating_point() else torch.float32
    xs = (torch.arange(width * ss, device=dev, dtype=dt) + 0.5) / ss
    ys = (torch.arange(height * ss, device=dev, dtype=dt) + 0.5) / ss
    dx = xs[None, None, :] - centres[:, 0, None, None]  # [N, 1, W*ss]
    dy = ys[None, :, None] - centres[:, 1, None, None]  # [N, H*ss, 1]
    s = sizes.to(dev, dt)[:, None, None]
    ids = shape_ids.to(dev)
    sdf = torch.empty(centres.shape[0], height * ss, width * ss, device=dev, dtype=dt)
    for k in ids.unique().tolist():  # only the shapes present: each SDF costs a full pass
        sel = ids == k
        sdf[sel] = _SDFS[k](dx[sel], dy[sel], s[sel])
    cov = (0.5 - sdf * ss).clamp(0.0, 1.0)
    return F.avg_pool2d(cov[:, None], ss)[:, 0] if ss > 1 else cov


def make_background(config: WorldConfig, seed: int = 0, device: torch.device | str = "cpu") -> Tensor:
    """Background ``[3, H, W]``: the plain `config.background` plus a faint static texture if enabled."""
    base = torch.tensor(config.background, dtype=torch.float32).view(3, 1, 1)
    bg = base.expand(3, config.height, config.width).clone()
    if config.texture > 0:
        gen = torch.Generator().manual_seed(seed)
        low = torch.rand(1, 1, max(config.height // 4, 1), max(config.width // 4, 1), generator=gen)
        tex = F.interpolate(low, size=(config.height, config.width), mode="bilinear", align_corners=False)
        bg = bg + config.texture * (2 * tex[0] - 1)
    return bg.clamp(0.0, 1.0).to(device)


def render_trajectory(
    positions: Tensor,
    colour: str | Sequence[float],
    shape: str,
    size: float,
    config: WorldConfig,
    background: Tensor | None = None,
) -> Tensor:
    """Render one shape along ``positions [T, 2]`` -> video ``[T, 3, H, W]`` in [0, 1] (positions' device).

    ``colour`` is a palette name or an RGB triple; ``background`` is ``[3, H, W]`` (default: plain).
    """
    dev = positions.device
    rgb = PALETTE[colour] if isinstance(colour, str) else tuple(colour)
    if background is None:
        background = make_background(config, device=dev)
    t = positions.shape[0]
    cov = coverage(
        positions.float(),
        torch.full((t,), float(size), device=dev),
        torch.full((t,), SHAPES.index(shape), device=dev, dtype=torch.long),
        config.height,
        config.width,
        config.supersample,
    )[:, None]
    fg = torch.tensor(rgb, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    return (background.to(dev)[None] * (1 - cov) + fg * cov).clamp(0.0, 1.0)


def render(attrs: ShapeAttributes, config: WorldConfig, device: torch.device | str = "cpu") -> Tensor:
    """Render one video ``[T, 3, H, W]`` float32 in [0, 1] from its attributes."""
    positions = trajectory(attrs.start, attrs.speed, attrs.segments).to(device)
    background = make_background(config, attrs.texture_seed, device)
    return render_trajectory(positions, attrs.colour, attrs.shape, attrs.size, config, background)


def render_batch(
    attrs: Sequence[ShapeAttributes], config: WorldConfig, device: torch.device | str = "cpu"
) -> Tensor:
    """Render ``B`` videos of equal length in one coverage pass -> ``[B, T, 3, H, W]`` float32 in [0, 1]."""
    lengths = {a.num_frames for a in attrs}
    if len(lengths) != 1:
        raise ValueError(f"render_batch needs videos of one length, got frame counts {sorted(lengths)}")
    (t,) = lengths
    pos = torch.stack([trajectory(a.start, a.speed, a.segments) for a in attrs]).to(device)  # [B, T, 2]
    sizes = torch.tensor([a.size for a in attrs], device=device).repeat_interleave(t)
    ids = torch.tensor([SHAPES.index(a.shape) for a in attrs], device=device).repeat_interleave(t)
    cov = coverage(pos.flatten(0, 1), sizes, ids, config.height, config.width, config.supersample)
    cov = cov.view(len(attrs), t, 1, config.height, config.width)
    fg = torch.tensor([PALETTE[a.colour] for a in attrs], device=device).view(-1, 1, 3, 1, 1)
    bg = torch.stack([make_background(config, a.texture_seed, device) for a in attrs])[:, None]
    return (bg * (1 - cov) + fg * cov).clamp(0.0, 1.0)
