"""Oracle of the shapes world: measurements from pixels only, and ground-truth scores for three axes.

`measure(video)` never sees the attributes. Per frame it estimates the background (the per-pixel temporal
median where it agrees with the frame's median colour, else the frame median, so a static texture cancels and
a frozen object is not mistaken for background), the object colour (mean of the strongest foreground pixels,
nearest `PALETTE` entry), the coverage ``alpha`` of every pixel (projection of ``pixel - background`` on
``colour - background``: exact for the renderer's blend), and from ``alpha`` near the object (pixels within
one pixel of ``alpha > 0.5``): area and centroid (sub-pixel); from ``alpha`` within three pixels: shape (the
area-matched template of each shape, rendered at the centroid and blurred by the best of a few sigmas, that
fits ``alpha`` best; so blur lowers ``visual`` but not ``text``), blur and crispness; connected components of
``alpha > 0.5``; and the noise level, a robust (MAD) standard deviation of the background residual away from
the object.

Axis scores, each in [0, 1] (`score`):

- ``text``: mean of colour match, shape match and the fraction of segments whose measured direction (dominant
  axis and sign of the mean velocity over the segment's frames) equals the prompt's.
- ``motion``: ``moving * smooth * (1 - teleports)``: ``moving`` is the fraction of steps that move by more
  than 0.25 px, ``smooth = 1 / (1 + rms_accel^2)`` with the RMS acceleration (px/frame^2) inside segments
  (turns between segments are allowed), ``teleports`` the fraction of steps longer than ``3 * median + 1`` px.
- ``visual``: ``crispness * cleanliness * integrity``: ``crispness = clamp(r / 0.5)`` with ``r = sum d^2 /
  sum |d|`` over the neighbour differences ``d`` of ``alpha`` (1/2 to 1 for a one-pixel anti-aliased edge,
  ~0.28 / sigma for a Gaussian blur); ``cleanliness = 1 / (1 + (noise / 0.03)^2)``; ``integrity`` the
  fraction of frames showing exactly one connected object.

A video without any object scores 0 on every axis, with the reason in `OracleScore.reasons`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from streamvid.core.world.corrupt import gaussian_blur
from streamvid.core.world.prompts import PromptSpec, parse_prompt
from streamvid.core.world.render import DIRECTIONS, PALETTE, SHAPES, coverage, segment_frame_ranges

__all__ = [
    "ChunkBackground",
    "OracleReading",
    "chunk_background",
    "OracleScore",
    "measure",
    "measure_batch",
    "score",
    "score_batch",
    "score_details",
]

_MIN_CONTRAST = 0.25
_STATIC_PX = 0.25
_BLUR_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
_AREA_TO_SIZE = {"square": 1.0, "circle": 4 / math.pi, "triangle": 2.0}


@dataclass
class OracleReading:
    """What the oracle sees in one video ``[T, 3, H, W]``; absent frames hold NaN positions."""

    colour: str | None
    """Nearest palette colour of the mean foreground RGB (None without an object)."""
    rgb: tuple[float, float, float] | None
    """Mean RGB of the strongest foreground pixels."""
    shape: str | None
    """Best-fitting shape template."""
    shape_residuals: dict[str, float]
    """Mean ``sum |alpha - template| / area`` per shape (lower fits better)."""
    present: Tensor
    """``[T]`` bool: an object was found in the frame."""
    positions: Tensor
    """``[T, 2]`` centroids (x, y) in pixels."""
    area: Tensor
    """``[T]`` object area in pixels (sum of alpha)."""
    components: Tensor
    """``[T]`` long: connected components of ``alpha > 0.5``."""
    blur: float
    """Gaussian sigma (px, from a coarse grid) of the best-fitting blurred template."""
    crispness: float
    """Edge sharpness in [0, 1], mean over frames with an object."""
    noise: float
    """Robust standard deviation of the background residual."""
    reasons: list[str] = field(default_factory=list)
    """Why measurements are missing, if any."""

    @property
    def velocities(self) -> Tensor:
        """``[T - 1, 2]`` per-step displacement (px/frame); NaN where a frame is absent."""
        return self.positions[1:] - self.positions[:-1]

    @property
    def speed(self) -> float:
        """Median step length in px/frame over valid steps (NaN if none)."""
        v = self.velocities.norm(dim=-1)
        v = v[~v.isnan()]
        return float(v.median()) if v.numel() else float("nan")

    def segment_directions(self, num_segments: int) -> list[str | None]:
        """Direction of each of ``K`` evenly split segments (None when static or unmeasurable)."""
        out: list[str | None] = []
        vel = self.velocities
        for a, b in segment_frame_ranges(self.positions.shape[0], num_segments):
            v = vel[max(a, 1) - 1 : b - 1]
            v = v[~v.isnan().any(-1)]
            if not v.numel() or v.mean(0).abs().max() < _STATIC_PX:
                out.append(None)
                continue
            m = v.mean(0)
            axis = int(m.abs().argmax())
            sign = 1.0 if m[axis] > 0 else -1.0
            unit = (sign, 0.0) if axis == 0 else (0.0, sign)
            out.append(next(name for name, d in DIRECTIONS.items() if d == unit))
        return out


@dataclass
class OracleScore:
    """Axis scores in [0, 1], their parts, and the reasons for any zero."""

    text: float
    motion: float
    visual: float
    parts: dict[str, float]
    reasons: list[str]
    reading: OracleReading

    def as_dict(self) -> dict[str, float]:
        """``{"text", "motion", "visual"}`` -> score."""
        return {"text": self.text, "motion": self.motion, "visual": self.visual}


def _dilate(mask: Tensor, radius: int) -> Tensor:
    return F.max_pool2d(mask[:, None].float(), 2 * radius + 1, 1, radius)[:, 0] > 0


def _count_components(mask: Tensor) -> Tensor:
    """8-connected components per frame of a ``[T, H, W]`` bool mask -> ``[T]`` long."""
    t, h, w = mask.shape
    m = mask.float()[:, None]
    labels = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.float32).view(1, 1, h, w) * m
    for _ in range(h * w):
        new = F.max_pool2d(labels, 3, 1, 1) * m
        if torch.equal(new, labels):
            break
        labels = new
    return torch.tensor([int(labels[i][labels[i] > 0].unique().numel()) for i in range(t)])


def _crispness(alpha: Tensor) -> Tensor:
    """Per-frame edge sharpness ``[T]``: ``clamp((sum d^2 / sum |d|) / 0.5, 0, 1)`` over alpha's steps."""
    d = torch.cat(
        [(alpha[:, :, 1:] - alpha[:, :, :-1]).flatten(1), (alpha[:, 1:] - alpha[:, :-1]).flatten(1)], 1
    )
    r = (d**2).sum(1) / d.abs().sum(1).clamp_min(1e-8)
    return (r / 0.5).clamp(0.0, 1.0)


def _fit_shapes(alpha: Tensor, region: Tensor, centres: Tensor) -> tuple[dict[str, float], dict[str, float]]:
    """Per shape: mean residual ``sum |alpha - template| / area`` of the best-blurred area-matched template
    (``alpha``, ``region`` ``[n, H, W]``, ``centres`` ``[n, 2]``), and that blur sigma. Blurred templates
    keep a blurred shape recognisable: blur is a visual defect, not a wrong shape."""
    n, h, w = alpha.shape
    k = len(SHAPES)
    target, region = alpha.repeat(k, 1, 1), region.repeat(k, 1, 1)  # [k * n, H, W], shape-major
    area = target.sum((1, 2))
    ratio = torch.tensor([_AREA_TO_SIZE[name] for name in SHAPES], device=alpha.device).repeat_interleave(n)
    ids = torch.arange(k, device=alpha.device).repeat_interleave(n)
    tmpl = coverage(centres.repeat(k, 1), (area * ratio).sqrt(), ids, h, w, supersample=4)
    fits = torch.stack(
        [(target - gaussian_blur(tmpl, sigma) * region).abs().sum((1, 2)) / area for sigma in _BLUR_SIGMAS]
    )
    best = fits.view(len(_BLUR_SIGMAS), k, n).mean(-1).min(0)  # over sigmas, per shape
    residuals = {name: float(best.values[i]) for i, name in enumerate(SHAPES)}
    return residuals, {name: _BLUR_SIGMAS[int(best.indices[i])] for i, name in enumerate(SHAPES)}


def _empty_reading(t: int, reasons: list[str]) -> OracleReading:
    return OracleReading(
        colour=None,
        rgb=None,
        shape=None,
        shape_residuals={},
        present=torch.zeros(t, dtype=torch.bool),
        positions=torch.full((t, 2), float("nan")),
        area=torch.zeros(t),
        components=torch.zeros(t, dtype=torch.long),
        blur=0.0,
        crispness=0.0,
        noise=0.0,
        reasons=reasons,
    )


def measure(video: Tensor) -> OracleReading:
    """Measure one video ``[T, 3, H, W]`` in [0, 1] (any device) from its pixels alone."""
    if video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"measure expects a video [T, 3, H, W], got shape {list(video.shape)}")
    v = video.detach().float()
    t, _, h, w = v.shape
    frame_bg = v.flatten(2).median(-1).values[:, :, None, None]  # [T, 3, 1, 1]
    pixel_bg = v.median(0).values[None]  # [1, 3, H, W]: static background, moving object removed
    bg = torch.where((pixel_bg - frame_bg).norm(dim=1, keepdim=True) < 0.15, pixel_bg, frame_bg)
    diff = (v - bg).norm(dim=1)  # [T, H, W]
    peak = diff.flatten(1).max(1).values
    present = peak > _MIN_CONTRAST
    reasons = [
        f"frame {i}: no object (peak contrast {float(peak[i]):.3f})" for i in range(t) if not present[i]
    ]
    nan2 = torch.full((t, 2), float("nan"), device=v.device)
    if not present.any():
        return _empty_reading(t, [*reasons, "no object in any frame"])
    core = present[:, None, None] & (diff >= 0.6 * peak[:, None, None])
    rgb = v.permute(1, 0, 2, 3)[:, core].mean(1)  # [3]
    palette = torch.tensor(list(PALETTE.values()), device=v.device)
    colour = list(PALETTE)[int((palette - rgb).norm(dim=1).argmin())]
    contrast = rgb.view(1, 3, 1, 1) - bg
    alpha = ((v - bg) * contrast).sum(1) / (contrast**2).sum(1).clamp_min(1e-6)
    alpha = alpha.clamp(0.0, 1.0) * present[:, None, None]
    hard = alpha > 0.5
    faint = present & ~hard.flatten(1).any(1)
    reasons += [
        f"frame {i}: no solid object (alpha <= 0.5 everywhere)" for i in faint.nonzero()[:, 0].tolist()
    ]
    present = present & ~faint
    wide = alpha * _dilate(hard, 3) * present[:, None, None]  # keeps blur tails, for crispness
    alpha = alpha * _dilate(hard, 1) * present[:, None, None]
    area = alpha.sum((1, 2))
    ys = torch.arange(h, device=v.device, dtype=torch.float32) + 0.5
    xs = torch.arange(w, device=v.device, dtype=torch.float32) + 0.5
    cx = (alpha * xs).sum((1, 2)) / area.clamp_min(1e-8)
    cy = (alpha * ys[:, None]).sum((1, 2)) / area.clamp_min(1e-8)
    positions = torch.where(present[:, None], torch.stack([cx, cy], 1), nan2)
    idx = present.nonzero()[:, 0]
    if not idx.numel():
        return _empty_reading(t, [*reasons, "no frame with a solid object (alpha > 0.5)"])
    # the shape is one per video: fit templates on at most 4 evenly spaced frames (cost)
    sub = idx[torch.linspace(0, idx.numel() - 1, min(4, idx.numel()), device=idx.device).round().long()]
    residuals, blurs = _fit_shapes(wide[sub], _dilate(hard, 3)[sub], positions[sub])
    shape = min(residuals, key=residuals.__getitem__)
    noise_px = (v - bg).permute(1, 0, 2, 3)[:, ~_dilate(hard, 2)].flatten()
    noise = float(1.4826 * (noise_px - noise_px.median()).abs().median()) if noise_px.numel() else 0.0
    return OracleReading(
        colour=colour,
        rgb=tuple(float(c) for c in rgb),
        shape=shape,
        shape_residuals=residuals,
        blur=blurs[shape],
        present=present.cpu(),
        positions=positions.cpu(),
        area=area.cpu(),
        components=_count_components(hard).cpu(),
        crispness=float(_crispness(wide[idx]).mean()),
        noise=noise,
        reasons=reasons,
    )


def measure_batch(videos: Tensor) -> list[OracleReading]:
    """`measure` each video of ``[B, T, 3, H, W]``."""
    if videos.ndim != 5:
        raise ValueError(f"measure_batch expects videos [B, T, 3, H, W], got shape {list(videos.shape)}")
    return [measure(video) for video in videos]


def _motion_parts(reading: OracleReading, num_segments: int) -> dict[str, float]:
    t = reading.positions.shape[0]
    vel = reading.velocities
    step = vel.norm(dim=-1)
    valid = ~step.isnan()
    moving = float((valid & (step > _STATIC_PX)).float().mean())
    seg = torch.zeros(t, dtype=torch.long)
    for k, (a, b) in enumerate(segment_frame_ranges(t, num_segments)):
        seg[a:b] = k
    acc = vel[1:] - vel[:-1]  # accel at frame i + 1 uses steps into frames i + 1 and i + 2
    same = (seg[1:-1] == seg[2:]) & ~acc.isnan().any(-1)
    rms = float(acc[same].norm(dim=-1).pow(2).mean().sqrt()) if same.any() else 0.0
    med = float(step[valid].median()) if valid.any() else 0.0
    teleports = float((valid & (step > 3 * med + 1.0)).float().mean())
    smooth = 1.0 / (1.0 + rms**2)
    return {"moving": moving, "smooth": smooth, "teleports": teleports, "rms_accel": rms}


def score_details(video: Tensor, prompt: str | PromptSpec) -> OracleScore:
    """Ground-truth ``text``, ``motion``, ``visual`` scores of ``video [T, 3, H, W]`` against ``prompt``."""
    spec = prompt if isinstance(prompt, PromptSpec) else parse_prompt(prompt)
    reading = measure(video)
    reasons = list(reading.reasons)
    if reading.colour is None or reading.present.sum() < 2:
        reasons.append("fewer than two frames show an object: all axes score 0")
        return OracleScore(0.0, 0.0, 0.0, {}, reasons, reading)
    k = len(spec.segments)
    dirs = reading.segment_directions(k)
    parts = {
        "colour": float(reading.colour == spec.colour),
        "shape": float(reading.shape == spec.shape),
        "direction": sum(d == s for d, s in zip(dirs, spec.segments)) / k,
        **_motion_parts(reading, k),
        "crispness": reading.crispness,
        "cleanliness": 1.0 / (1.0 + (reading.noise / 0.03) ** 2),
        "integrity": float((reading.components == 1).float().mean()),
    }
    text = (parts["colour"] + parts["shape"] + parts["direction"]) / 3
    motion = parts["moving"] * parts["smooth"] * (1.0 - parts["teleports"])
    visual = parts["crispness"] * parts["cleanliness"] * parts["integrity"]
    return OracleScore(text, motion, visual, parts, reasons, reading)


def score(video: Tensor, prompt: str | PromptSpec) -> dict[str, float]:
    """``{"text", "motion", "visual"}`` ground-truth scores in [0, 1] of one video ``[T, 3, H, W]``."""
    return score_details(video, prompt).as_dict()


def score_batch(videos: Tensor, prompts: Sequence[str | PromptSpec]) -> dict[str, Tensor]:
    """Scores of ``videos [B, T, 3, H, W]`` against ``B`` prompts -> ``{axis: Tensor[B]}`` (float32, CPU)."""
    if videos.ndim != 5 or len(prompts) != videos.shape[0]:
        raise ValueError(
            f"score_batch expects videos [B, T, 3, H, W] and B prompts, got {list(videos.shape)} and "
            f"{len(prompts)} prompts"
        )
    rows = [score(v, p) for v, p in zip(videos, prompts)]
    return {axis: torch.tensor([r[axis] for r in rows]) for axis in ("text", "motion", "visual")}


@dataclass
class ChunkBackground:
    """Background of a streamed video, chunk by chunk (`chunk_background`).

    Attributes:
        level: ``[C, 3]`` mean background colour of each chunk (per-frame median colour, averaged).
        noise: ``[C]`` robust (MAD) standard deviation of the background residual of each chunk, as the
            oracle's ``noise`` (``cleanliness`` is 1/2 at 0.03).
    """

    level: Tensor
    noise: Tensor

    def noise_ratio(self) -> float:
        """Mean noise of the chunks after the first over the first chunk's (1 = no seam in background noise)."""
        return float(self.noise[1:].mean() / self.noise[0].clamp_min(1e-4)) if len(self.noise) > 1 else 1.0

    def level_shift(self) -> float:
        """Mean RGB distance of each later chunk's background colour from the first chunk's."""
        return float((self.level[1:] - self.level[0]).norm(dim=-1).mean()) if len(self.level) > 1 else 0.0


def chunk_background(video: Tensor, chunk_frames: int) -> ChunkBackground:
    """Background colour and noise per chunk of ``video [T, 3, H, W]`` in [0, 1] (``T`` a multiple of
    ``chunk_frames``).

    Each frame's background colour is its median colour; pixels farther than 0.15 (RGB L2) from it, dilated by
    2 px, are the object and are left out; the noise of a chunk is ``1.4826 * MAD`` of its frames' background
    residuals (all channels), the estimator of `measure`. It reads what the video-level oracle averages away:
    a chunk whose background is lighter or noisier than the others (a streaming seam).
    """
    if video.ndim != 4 or video.shape[1] != 3 or video.shape[0] % chunk_frames:
        raise ValueError(
            f"chunk_background expects a video [T, 3, H, W] with T a multiple of {chunk_frames}, got "
            f"{list(video.shape)}"
        )
    v = video.detach().float()
    frame_bg = v.flatten(2).median(-1).values  # [T, 3]
    residual = v - frame_bg[:, :, None, None]  # [T, 3, H, W]
    background = ~_dilate(residual.norm(dim=1) > 0.15, 2)  # [T, H, W]
    levels, noises = [], []
    for start in range(0, v.shape[0], chunk_frames):
        part = slice(start, start + chunk_frames)
        px = residual[part].permute(1, 0, 2, 3)[:, background[part]].flatten()
        noises.append(1.4826 * (px - px.median()).abs().median() if px.numel() else torch.zeros(()))
        levels.append(frame_bg[part].mean(0))
    return ChunkBackground(torch.stack(levels).cpu(), torch.stack(noises).cpu())
