"""Training and evaluation examples of the learned shapes reward, with oracle targets.

Ground truth is the **oracle** (`world.oracle.score`), not `ShapesAnalyticReward`: the oracle is what defines
the three axes, and the analytic reward is itself an approximation of it. Examples are made on the fly:

- a video from `ShapesDataset`'s attribute sampler (``train`` split; a share ``p_two_segments`` of them with
  two motion segments), rendered clean, with one corruption of `CORRUPTION_AXES` at a random strength (up to
  heavy: noise sigma 0.4, all but one frame frozen), or (``p_degenerate``) as one of the degenerate videos of
  `world.degenerate` (blank, constant, noise, static, vanishing, two objects, blob, ...), so that the reward
  ranks what a half-trained generator makes below good videos;
- its prompt, in a random phrasing, or (with ``p_wrong_prompt``) a wrong one: colour, shape and/or some
  segment directions changed, so ``text`` takes all its levels;
- targets: the oracle's ``(visual, motion, text)`` of that video against that prompt, and its readings
  (colour, shape, direction per segment) of the video.

Every example is a pure function of ``(split, index, stream, focus)`` and the mixture settings of
`ShapesRewardStageConfig`; the evaluation sets use the fixed stream `EVAL_STREAM`, so they do not depend on the
training seed (`bench/shapes_rewards.py` scores the same sets).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from streamvid.core.rewards.shapes_learned import ShapesLearnedReward
from streamvid.core.world.corrupt import CORRUPTION_AXES, render_corrupted
from streamvid.core.world.dataset import SPLITS, sample_attributes
from streamvid.core.world.degenerate import DEGENERATE_AXES, render_degenerate
from streamvid.core.world.oracle import score_details
from streamvid.core.world.prompts import PromptSpec, generate_prompt
from streamvid.core.world.render import DIRECTIONS, PALETTE, SHAPES, WorldConfig, render, segment_frame_ranges
from streamvid.distill.shapes_reward_config import ShapesRewardStageConfig

__all__ = [
    "AXES", "EVAL_STREAM", "STRENGTHS", "make_example", "make_examples", "oracle_targets"]

AXES = ShapesLearnedReward.axes
"""Axis order of the targets ``axes [N, 3]`` and of the network's outputs."""
STRENGTHS: dict[str, tuple[float, float]] = {
    "jitter": (0.1, 3.0),
    "frozen": (1, 10),
    "blur": (0.3, 2.5),
    "noise": (0.01, 0.4),
}
"""Corruption kind -> (low, high) of the uniformly drawn ``strength`` (``frozen``: integer frames)."""
EVAL_STREAM = 1_000_003
"""Stream of the held-out evaluation examples (independent of the training seed)."""


def _wrong_prompt(spec: PromptSpec, rng: np.random.Generator) -> PromptSpec:
    """``spec`` with its colour, shape and/or some directions changed (at least one of the three)."""
    change = rng.random(3) < 0.5
    if not change.any():
        change[rng.integers(3)] = True
    colour, shape, segments = spec.colour, spec.shape, list(spec.segments)
    if change[0]:
        colour = str(rng.choice([c for c in PALETTE if c != colour]))
    if change[1]:
        shape = str(rng.choice([s for s in SHAPES if s != shape]))
    if change[2]:
        flip = rng.random(len(segments)) < 0.5
        flip[rng.integers(len(segments))] = True
        segments = [
            str(rng.choice([d for d in DIRECTIONS if d != s])) if f else s for s, f in zip(segments, flip)
        ]
    return PromptSpec(colour, shape, tuple(segments))


def make_example(
    split: str, index: int, stream: int, cfg: ShapesRewardStageConfig, focus: str | None = None
) -> tuple[Tensor, str, int]:
    """Example ``index`` of a stream -> (video ``[T, 3, H, W]``, prompt, number of motion segments).

    ``focus=None`` draws the training mixture (``p_clean``, any corruption, ``p_wrong_prompt``). ``focus`` an
    axis draws an evaluation example for that axis: clean with probability 1/3, else one of the
    corruptions that lower it (for ``text``: wrong colour, wrong direction or a wrong prompt). Deterministic in
    ``(split, index, stream, focus)``; the dataset item and every random choice derive from them.
    """
    rng = np.random.default_rng([stream, SPLITS.index(split), index, AXES.index(focus) + 1 if focus else 0])
    world = WorldConfig(num_segments=2 if rng.random() < cfg.p_two_segments else 1)
    attrs, prompt = sample_attributes(world, split, int(rng.integers(2**31)))
    if focus is None:
        kind = "clean" if rng.random() < cfg.p_clean else str(rng.choice(list(CORRUPTION_AXES)))
        if rng.random() < cfg.p_degenerate:
            kind = str(rng.choice(list(DEGENERATE_AXES)))
        wrong = rng.random() < cfg.p_wrong_prompt
    else:
        kinds = [k for k, a in CORRUPTION_AXES.items() if a == focus] + (["wrong_prompt"] * (focus == "text"))
        kind = "clean" if rng.random() < 1 / 3 else str(rng.choice(kinds))
        wrong = kind == "wrong_prompt"
        kind = "clean" if wrong else kind
    seed = int(rng.integers(2**31))
    if kind == "clean":
        video = render(attrs, world)
    elif kind in DEGENERATE_AXES:
        video = render_degenerate(attrs, kind, world, seed=seed)
    else:
        lo, hi = STRENGTHS.get(kind, (0.0, 0.0))
        strength = (
            float(rng.integers(int(lo), int(hi) + 1)) if kind == "frozen" else float(rng.uniform(lo, hi))
        )
        video = render_corrupted(attrs, kind, world, seed=seed, strength=strength if hi else None)
    if wrong:
        spec = PromptSpec(attrs.colour, attrs.shape, attrs.directions)
        prompt = generate_prompt(_wrong_prompt(spec, rng), seed)
    return video, prompt, world.num_segments


def make_examples(
    split: str, indices: range | list[int], stream: int, cfg: ShapesRewardStageConfig, focus: str | None = None
) -> tuple[Tensor, list[str], dict[str, Tensor]]:
    """Examples (`make_example`) -> (videos ``[N, T, 3, H, W]``, ``N`` prompts, oracle targets).

    Targets: ``axes [N, 3]`` (oracle scores in `AXES` order) and the oracle's readings of the video as
    auxiliary labels, ``colour [N]``, ``shape [N]``, ``direction [N, T]`` (per frame, from the measured
    direction of the video's segment; -100 where the oracle found none).
    """
    videos, prompts, segments = [], [], []
    for i in indices:
        video, prompt, num_segments = make_example(split, i, stream, cfg, focus)
        videos.append(video)
        prompts.append(prompt)
        segments.append(num_segments)
    return torch.stack(videos), prompts, oracle_targets(videos, prompts, segments)


def oracle_targets(videos: Tensor | list[Tensor], prompts: list[str], num_segments: list[int]) -> dict[str, Tensor]:
    """The oracle's scores and readings of ``N`` videos ``[T, 3, H, W]`` in [0, 1] against their prompts.

    Returns ``axes [N, 3]`` (oracle scores in `AXES` order) and the readings as auxiliary labels: ``colour [N]``,
    ``shape [N]``, ``direction [N, T]`` (per frame, the measured direction of the frame's segment of
    ``num_segments[i]``; ``-100``, cross-entropy's ignore index, where the oracle reads none).
    """
    rows: dict[str, list] = {"axes": [], "colour": [], "shape": [], "direction": []}
    for video, prompt, segments in zip(videos, prompts, num_segments):
        truth = score_details(video, prompt)
        reading = truth.reading
        rows["axes"].append([getattr(truth, a) for a in AXES])
        rows["colour"].append(list(PALETTE).index(reading.colour) if reading.colour else -100)
        rows["shape"].append(SHAPES.index(reading.shape) if reading.shape else -100)
        frames = [-100] * video.shape[0]
        dirs = reading.segment_directions(segments)
        for (a, b), name in zip(segment_frame_ranges(video.shape[0], segments), dirs):
            frames[a:b] = [list(DIRECTIONS).index(name) if name else -100] * (b - a)
        rows["direction"].append(frames)
    return {k: torch.tensor(v, dtype=torch.float32 if k == "axes" else torch.long) for k, v in rows.items()}
