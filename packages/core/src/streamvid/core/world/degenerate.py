"""Degenerate shapes-world videos: what a half-trained generator produces, and what a reward must rank low.

Stream-R1 weights each rollout by ``exp(beta * reward)`` and Stream-T1 keeps the candidates its reward
prefers, so a reward that rates a blank, frozen or noisy clip highly is the first hole both methods fall into.
Every reward trained or searched against must score each video below the clean video it derives from, on
``score`` and on every axis listed for its kind: the axes on which the oracle rates the kind clearly worse on
average (a drop of at least 0.2; a static video is still perfectly crisp, so ``visual`` is not claimed for it).
The contract asks more of a reward than the oracle gives per clip: the oracle can still read the colour,
shape and direction of some heavily noised clips, and a reward must score every one of them lower anyway.

=========================  ======================  =========================================================
kind                       axes lowered            what
=========================  ======================  =========================================================
black                      visual, motion, text    every pixel 0
blank                      visual, motion, text    the world's background, no object
constant                   visual, motion, text    one random colour everywhere (grey or a palette colour)
uniform_noise              visual, motion, text    i.i.d. uniform pixels
heavy_noise                visual, motion, text    the clean video plus Gaussian noise, sigma in [0.2, 0.4]
static                     motion, text            the first frame repeated: no motion at all
vanishing                  visual, motion          the object disappears from the middle frame on
two_objects                visual, text            a second object (other colour and shape) on the mirrored path
blob                       visual                  a soft round blob of the right colour on the right path
wrong_colour_direction     text                    wrong colour *and* every direction reversed
=========================  ======================  =========================================================

`render_degenerate(attrs, kind, config, seed)` makes one from the attributes of a clean video; all kinds are
deterministic given ``seed``. The mild corruptions of `world.corrupt` are the other half of the ranking
contract (each lowers its own axis).
"""

from __future__ import annotations

import dataclasses
import random

import torch
from torch import Tensor

from streamvid.core.world.corrupt import add_noise, recolour, reverse_directions
from streamvid.core.world.dataset import sample_attributes
from streamvid.core.world.render import (
    PALETTE,
    SHAPES,
    ShapeAttributes,
    WorldConfig,
    make_background,
    render,
    trajectory,
)

__all__ = ["DEGENERATE_AXES", "degenerate_examples", "render_degenerate"]

DEGENERATE_AXES: dict[str, tuple[str, ...]] = {
    "black": ("visual", "motion", "text"),
    "blank": ("visual", "motion", "text"),
    "constant": ("visual", "motion", "text"),
    "uniform_noise": ("visual", "motion", "text"),
    "heavy_noise": ("visual", "motion", "text"),
    "static": ("motion", "text"),
    "vanishing": ("visual", "motion"),
    "two_objects": ("visual", "text"),
    "blob": ("visual",),  # it reads as a circle: text drops only for square and triangle prompts
    "wrong_colour_direction": ("text",),
}
"""Degenerate kind -> the reward axes it must score below the clean video on (besides ``score``)."""
_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def _other_object(attrs: ShapeAttributes, config: WorldConfig, rng: random.Random) -> ShapeAttributes:
    """A second object of another colour and shape on the path mirrored through the frame centre (every
    direction reversed): it stays in frame and meets the first object at most near the centre."""
    colour = rng.choice([c for c in PALETTE if c != attrs.colour])
    shape = rng.choice([s for s in SHAPES if s != attrs.shape])
    segments = tuple((_OPPOSITE[d], n) for d, n in attrs.segments)
    start = (config.width - attrs.start[0], config.height - attrs.start[1])
    return dataclasses.replace(attrs, colour=colour, shape=shape, segments=segments, start=start)


def _blob(attrs: ShapeAttributes, config: WorldConfig, device) -> Tensor:
    """A Gaussian blob (sigma = size / 3) of the prompt's colour following the true path -> ``[T, 3, H, W]``."""
    centres = trajectory(attrs.start, attrs.speed, attrs.segments).to(device)  # [T, 2]
    xs = torch.arange(config.width, device=device, dtype=torch.float32) + 0.5
    ys = torch.arange(config.height, device=device, dtype=torch.float32) + 0.5
    d2 = (xs[None, None, :] - centres[:, 0, None, None]) ** 2 + (ys[None, :, None] - centres[:, 1, None, None]) ** 2
    alpha = torch.exp(-d2 / (2 * (attrs.size / 3) ** 2))[:, None]  # [T, 1, H, W], peak 1
    colour = torch.tensor(PALETTE[attrs.colour], device=device, dtype=torch.float32).view(1, 3, 1, 1)
    background = make_background(config, attrs.texture_seed, device)
    return background * (1 - alpha) + colour * alpha


def render_degenerate(
    attrs: ShapeAttributes,
    kind: str,
    config: WorldConfig,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Tensor:
    """The degenerate video ``kind`` (see `DEGENERATE_AXES`) made from clean ``attrs`` -> ``[T, 3, H, W]``
    in [0, 1]. ``seed`` drives the random parts (colour, noise level and noise)."""
    if kind not in DEGENERATE_AXES:
        raise ValueError(f"unknown degenerate kind {kind!r}; expected one of {list(DEGENERATE_AXES)}")
    rng = random.Random(seed)
    t, h, w = config.num_frames, config.height, config.width
    if kind == "black":
        return torch.zeros(t, 3, h, w, device=device)
    if kind == "blank":
        return make_background(config, attrs.texture_seed, device).expand(t, 3, h, w).clone()
    if kind == "constant":
        colour = rng.choice([(0.5, 0.5, 0.5), *PALETTE.values()])
        return torch.tensor(colour, device=device).view(1, 3, 1, 1).expand(t, 3, h, w).clone()
    if kind == "uniform_noise":
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(t, 3, h, w, generator=gen).to(device)
    if kind == "wrong_colour_direction":
        return render(reverse_directions(recolour(attrs, seed), config), config, device)
    if kind == "blob":
        return _blob(attrs, config, device)
    video = render(attrs, config, device)
    if kind == "heavy_noise":
        return add_noise(video, rng.uniform(0.2, 0.4), seed)
    if kind == "static":
        return video[:1].expand_as(video).clone()
    if kind == "vanishing":
        out = video.clone()
        out[t // 2 :] = make_background(config, attrs.texture_seed, device)
        return out
    # two_objects: composite the second object over the first video where it differs from the background
    second = render(_other_object(attrs, config, rng), config, device)
    background = make_background(config, attrs.texture_seed, device)
    where = (second - background).abs().sum(1, keepdim=True) > 1e-3
    return torch.where(where, second, video)


def degenerate_examples(
    split: str, n: int, config: WorldConfig | None = None, seed: int = 0
) -> tuple[Tensor, list[str], dict[str, Tensor]]:
    """The first ``n`` items of ``split`` and every degenerate version of them.

    Returns (clean videos ``[n, T, 3, H, W]``, their ``n`` prompts, ``{kind: [n, T, 3, H, W]}`` for every kind
    of `DEGENERATE_AXES`); the i-th degenerate video derives from the i-th clean one with seed ``seed + i``.
    """
    config = config or WorldConfig()
    items = [sample_attributes(config, split, i) for i in range(n)]
    clean = torch.stack([render(attrs, config) for attrs, _ in items])
    kinds = {
        kind: torch.stack([render_degenerate(attrs, kind, config, seed + i) for i, (attrs, _) in enumerate(items)])
        for kind in DEGENERATE_AXES
    }
    return clean, [prompt for _, prompt in items], kinds
