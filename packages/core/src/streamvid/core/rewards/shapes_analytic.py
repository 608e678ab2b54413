"""`ShapesAnalyticReward`: a differentiable version of the shapes-world oracle (`world.oracle`), three axes.

Every hard decision of the oracle becomes a smooth one, so the axes have pixel gradients (`saliency`).
Per video ``[T, 3, H, W]``:

1. background ``bg [3]``: the per-channel median over all pixels and frames (the object covers < 10 % of
   them), detached: it is a reference, not evidence;
2. soft foreground ``m = sigmoid((|x - bg| - mask_threshold) / mask_temperature)`` per pixel;
3. object colour ``c``: the ``m^4``-weighted mean RGB (the power favours the object's interior over its
   anti-aliased rim); soft coverage ``alpha = m * clamp(<x - bg, c - bg> / |c - bg|^2, 0, 1)`` (the oracle's
   projection, gated by ``m`` so that background pixels carry almost no gradient);
4. centroids ``[T, 2]`` = alpha-weighted mean pixel centres; velocities ``[T - 1, 2]``.

Axes, each in [0, 1]:

- ``text`` = mean of: ``P(colour)``, the prompt colour's probability under ``softmax(-|c - palette|^2 /
  colour_temperature)``; ``P(shape)``, a softmax over ``-residual / shape_temperature`` where the residual of
  each shape is the oracle's template fit (``sum |alpha - template| / area`` against an area-matched template
  rendered at the centroid, best of a few blur sigmas; templates are detached references); and the mean over
  prompt segments (frames from `segment_frame_ranges`) of ``sigmoid((p - |q|) / dir_temperature) *
  sigmoid((p - static_px) / dir_temperature)``, ``p`` / ``q`` the segment's mean velocity along / across the
  prompt direction (a soft "dominant axis and sign agree").
- ``motion`` = ``moving * smooth * (1 - teleports)``: ``moving`` = mean over steps of ``sigmoid((|v| -
  static_px) / 0.05)``; ``smooth = 1 / (1 + rms_accel^2)`` within segments (turns allowed); ``teleports`` =
  mean of ``sigmoid((|v| - 3 median|v| - 1) / 0.2)`` (median detached), as in the oracle.
- ``visual`` = ``crispness * cleanliness * integrity``: ``crispness = tanh(2 (r / 0.5)^2)`` with the oracle's
  edge ratio ``r = sum d^2 / sum |d|`` over alpha's neighbour differences near the object (a smooth stand-in
  for its ``clamp(r / 0.5)``); ``cleanliness = 1 / (1 + var / 0.03^2 + (n / 0.03)^2)``, ``var`` the mean
  squared background residual away from the object and ``n`` a robust pixel-noise level over the whole frame,
  ``median |x - box3x3(x)| / 0.636`` (the median of a Gaussian's high-pass residual is 0.636 sigma; a clean
  render is flat almost everywhere, so its median is 0, whereas noise too strong or too uniform for a
  background to exist, e.g. uniform noise where every pixel counts as "object", still raises it);
  ``integrity`` = the mean over frames of ``sigmoid((compactness_max - k) / 0.15)``, ``k = E_alpha|p - c|^2 /
  (area / 2 pi)`` the spread of the soft coverage around its centroid relative to a disc of the same area
  (disc 1, square 1.05, triangle 1.21, two separate objects >= 1.5): the smooth counterpart of the oracle's
  one-connected-object check.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from streamvid.core.rewards.base import AXES, BaseReward
from streamvid.core.rewards.configs import ShapesAnalyticRewardConfig
from streamvid.core.world.corrupt import gaussian_blur
from streamvid.core.world.prompts import PromptSpec, parse_prompt
from streamvid.core.world.render import DIRECTIONS, PALETTE, SHAPES, coverage, segment_frame_ranges

__all__ = ["ShapesAnalyticReward", "ShapesAnalyticRewardConfig", "soft_reading"]

_AREA_TO_SIZE = (1.0, 4 / torch.pi, 2.0)  # bounding-box side = sqrt(area * ratio), in `SHAPES` order
_EPS = 1e-6


def _soft_alpha(video: Tensor, cfg: ShapesAnalyticRewardConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``video [T, 3, H, W]`` -> (gated ``alpha [T, H, W]``, ungated projection ``[T, H, W]``, object colour
    ``[3]``, detached background ``[3]``)."""
    bg = video.detach().flatten(2).permute(1, 0, 2).flatten(1).median(dim=1).values  # [3]
    res = video - bg.view(1, 3, 1, 1)
    dist = (res.pow(2).sum(1) + _EPS).sqrt()
    mask = torch.sigmoid((dist - cfg.mask_threshold) / cfg.mask_temperature)  # [T, H, W]
    weight = mask.pow(4)
    colour = (video * weight[:, None]).sum((0, 2, 3)) / (weight.sum() + _EPS)
    contrast = colour - bg
    proj = (res * contrast.view(1, 3, 1, 1)).sum(1) / (contrast.pow(2).sum() + _EPS)
    proj = proj.clamp(0.0, 1.0)
    return mask * proj, proj, colour, bg


def soft_reading(video: Tensor, cfg: ShapesAnalyticRewardConfig | None = None) -> dict[str, Tensor]:
    """Differentiable measurements of one video ``[T, 3, H, W]`` in [0, 1].

    Returns ``alpha [T, H, W]`` (soft coverage, gated by the foreground mask), ``projection [T, H, W]``
    (ungated), ``colour [3]``, ``background [3]``, ``positions [T, 2]`` (x, y centroids, px), ``area [T]``
    and ``shape_residuals [len(SHAPES)]`` (lower fits better).
    """
    cfg = cfg or ShapesAnalyticRewardConfig()
    t, _, h, w = video.shape
    alpha, proj, colour, bg = _soft_alpha(video, cfg)
    area = alpha.sum((1, 2))
    xs = torch.arange(w, dtype=video.dtype, device=video.device) + 0.5
    ys = torch.arange(h, dtype=video.dtype, device=video.device) + 0.5
    cx = (alpha * xs).sum((1, 2)) / (area + _EPS)
    cy = (alpha * ys[:, None]).sum((1, 2)) / (area + _EPS)
    positions = torch.stack([cx, cy], 1)
    return {
        "alpha": alpha,
        "projection": proj,
        "colour": colour,
        "background": bg,
        "positions": positions,
        "area": area,
        "shape_residuals": _shape_residuals(alpha, positions.detach(), area.detach(), cfg.shape_blurs),
    }


def _shape_residuals(alpha: Tensor, centres: Tensor, area: Tensor, blurs: tuple[float, ...]) -> Tensor:
    """Per shape, ``sum |alpha - template| / area`` of the best-blurred, area-matched template -> ``[K]``."""
    t, h, w = alpha.shape
    k = len(SHAPES)
    ratio = torch.tensor(_AREA_TO_SIZE, dtype=alpha.dtype, device=alpha.device).repeat_interleave(t)
    ids = torch.arange(k, device=alpha.device).repeat_interleave(t)
    sizes = (area.clamp_min(1.0).repeat(k) * ratio).sqrt()
    tmpl = coverage(centres.repeat(k, 1), sizes, ids, h, w, supersample=2)  # [K * T, H, W]
    fits = torch.stack(
        [(alpha.repeat(k, 1, 1) - gaussian_blur(tmpl, s)).abs().sum((1, 2)) for s in blurs]
    )  # [S, K * T]
    fits = fits / (area.repeat(k) + 1.0)
    # soft minimum over blurs so the residual stays smooth in the pixels
    return (-torch.logsumexp(-fits.view(len(blurs), k, t) / 0.02, 0) * 0.02).mean(-1)


def _segment_ids(num_frames: int, num_segments: int, device: torch.device) -> Tensor:
    seg = torch.zeros(num_frames, dtype=torch.long, device=device)
    for k, (a, b) in enumerate(segment_frame_ranges(num_frames, num_segments)):
        seg[a:b] = k
    return seg


def _text(reading: dict[str, Tensor], spec: PromptSpec, cfg: ShapesAnalyticRewardConfig) -> Tensor:
    palette = torch.tensor(
        list(PALETTE.values()), dtype=reading["colour"].dtype, device=reading["colour"].device
    )
    colour_logits = -(reading["colour"] - palette).pow(2).sum(1) / cfg.colour_temperature
    p_colour = colour_logits.softmax(0)[list(PALETTE).index(spec.colour)]
    p_shape = (-reading["shape_residuals"] / cfg.shape_temperature).softmax(0)[SHAPES.index(spec.shape)]
    pos = reading["positions"]
    vel = pos[1:] - pos[:-1]
    agree = []
    for (a, b), name in zip(segment_frame_ranges(pos.shape[0], len(spec.segments)), spec.segments):
        steps = vel[max(a, 1) - 1 : b - 1]
        if steps.shape[0] == 0:  # a one-frame first segment has no step inside it
            steps = vel[:1]
        mean = steps.mean(0)
        ux, uy = DIRECTIONS[name]
        along = mean[0] * ux + mean[1] * uy
        across = (((mean[0] * uy) - (mean[1] * ux)).pow(2) + _EPS).sqrt()
        tau = cfg.dir_temperature
        agree.append(torch.sigmoid((along - across) / tau) * torch.sigmoid((along - cfg.static_px) / tau))
    return (p_colour + p_shape + torch.stack(agree).mean()) / 3


def _motion(reading: dict[str, Tensor], num_segments: int, cfg: ShapesAnalyticRewardConfig) -> Tensor:
    pos = reading["positions"]
    t = pos.shape[0]
    vel = pos[1:] - pos[:-1]
    step = (vel.pow(2).sum(-1) + _EPS).sqrt()
    moving = torch.sigmoid((step - cfg.static_px) / 0.05).mean()
    seg = _segment_ids(t, min(num_segments, t), pos.device)
    same = seg[1:-1] == seg[2:]
    acc = (vel[1:] - vel[:-1])[same]
    rms2 = acc.pow(2).sum(-1).mean() if acc.shape[0] else pos.new_zeros(())
    smooth = 1.0 / (1.0 + rms2)
    teleports = torch.sigmoid((step - 3 * step.detach().median() - 1.0) / 0.2).mean()
    return moving * smooth * (1.0 - teleports)


def _noise_level(video: Tensor) -> Tensor:
    """Robust pixel-noise std of ``video [T, 3, H, W]``: ``median |x - box3x3(x)| / 0.636`` (Gaussian noise of
    std s leaves a high-pass residual of std 0.943 s, whose median absolute value is 0.636 s)."""
    smooth = F.avg_pool2d(F.pad(video, (1, 1, 1, 1), mode="replicate"), 3, 1)
    return (video - smooth).abs().flatten().median() / 0.636


def _integrity(reading: dict[str, Tensor], cfg: ShapesAnalyticRewardConfig) -> Tensor:
    """Mean over frames of ``sigmoid((compactness_max - k) / 0.15)``, ``k`` the coverage's spread around its
    centroid over that of a same-area disc (``area / 2 pi``): one compact object ~1, two apart >= 1.5."""
    alpha, pos, area = reading["alpha"], reading["positions"], reading["area"]
    _, h, w = alpha.shape
    xs = torch.arange(w, dtype=alpha.dtype, device=alpha.device) + 0.5
    ys = torch.arange(h, dtype=alpha.dtype, device=alpha.device) + 0.5
    d2 = (xs[None, None, :] - pos[:, 0, None, None]).pow(2) + (ys[None, :, None] - pos[:, 1, None, None]).pow(2)
    spread = (alpha * d2).sum((1, 2)) / (area + _EPS)
    k = spread / (area / (2 * torch.pi) + _EPS)
    return torch.sigmoid((cfg.compactness_max - k) / 0.15).mean()


def _visual(video: Tensor, reading: dict[str, Tensor], cfg: ShapesAnalyticRewardConfig) -> Tensor:
    near = F.max_pool2d((reading["alpha"].detach() > 0.5).float()[:, None], 7, 1, 3)[:, 0]  # <= 3 px away
    a = reading["projection"] * near  # ungated: the mask's sigmoid would sharpen blurred edges
    d = torch.cat([(a[:, :, 1:] - a[:, :, :-1]).flatten(1), (a[:, 1:] - a[:, :-1]).flatten(1)], 1)
    ratio = d.pow(2).sum(1) / ((d.pow(2) + _EPS).sqrt().sum(1) + _EPS)  # [T]
    crisp = torch.tanh(2 * (ratio / 0.5).pow(2)).mean()
    away = 1.0 - F.max_pool2d(near[:, None], 5, 1, 2)[:, 0]  # background >= 5 px from the object
    res = (video - reading["background"].view(1, 3, 1, 1)).pow(2).mean(1)
    var = (res * away).sum() / (away.sum() + _EPS)
    noise = _noise_level(video) / cfg.noise_scale
    cleanliness = 1.0 / (1.0 + var / cfg.noise_scale**2 + noise.pow(2))
    return crisp * cleanliness * _integrity(reading, cfg)


class ShapesAnalyticReward(BaseReward):
    """Differentiable oracle of the shapes world: ``video [B, T, 3, H, W]`` in [0, 1] -> axes ``[B]`` in [0, 1].

    Samples are scored one by one (no cross-sample statistics). See the module docstring for each axis;
    prompts must parse with `parse_prompt` (ValueError otherwise).
    """

    axes = AXES
    config_class = ShapesAnalyticRewardConfig

    def score_axes(self, video: Tensor, prompts: list[str]) -> dict[str, Tensor]:
        """Per-axis rewards ``{axis: [B]}`` of ``video [B, T, 3, H, W]`` against ``B`` prompts."""
        if video.shape[1] < 2:
            raise ValueError(
                f"ShapesAnalyticReward needs videos of >= 2 frames (motion); got {tuple(video.shape)}"
            )
        cfg = self.config
        rows: dict[str, list[Tensor]] = {axis: [] for axis in self.axes}
        for clip, prompt in zip(video.float(), prompts):
            spec = parse_prompt(prompt)
            reading = soft_reading(clip, cfg)
            rows["text"].append(_text(reading, spec, cfg))
            rows["motion"].append(_motion(reading, len(spec.segments), cfg))
            rows["visual"].append(_visual(clip, reading, cfg))
        return {axis: torch.stack(values) for axis, values in rows.items()}
