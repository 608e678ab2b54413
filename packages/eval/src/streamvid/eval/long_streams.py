"""Multi-segment shapes-world streams: the prompt plans and per-segment oracle reading of issue 18 §3's bars.

A plan streams one colour / shape pair through ``segments`` single-direction prompts, switched in at segment
boundaries (the sampler's prompt switch, with LongLive's KV re-cache when the sampler is configured for it). The
directions go out and back along one axis, then along the other (e.g. left, right, up, down), so the object stays
in frame. Each segment is read by the pixel oracle against its own prompt.

Used by ``bench/long_stream.py`` (plain sampling, the bars) and ``bench/t1_long.py`` (search strategies).
"""

from __future__ import annotations

import random

import torch

from streamvid.core.world.oracle import score_details

__all__ = ["AXES", "OPPOSITE", "segment_directions", "segment_plans", "segment_scores", "switch_integrity"]

AXES = ("text", "motion", "visual")
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def segment_directions(index: int, segments: int) -> list[str]:
    """Out and back along one axis, then the other: e.g. left, right, up, down (first axis and sign per plan
    ``index``, drawn from ``random.Random(1000 + index)``)."""
    rng = random.Random(1000 + index)
    first = rng.choice(["left", "right"]) if rng.random() < 0.5 else rng.choice(["up", "down"])
    other = rng.choice(["up", "down"]) if first in ("left", "right") else rng.choice(["left", "right"])
    cycle = [first, OPPOSITE[first], other, OPPOSITE[other]]
    return [cycle[i % 4] for i in range(segments)]


def segment_plans(pairs: list[tuple[str, str]], n: int, segments: int) -> list[list[str]]:
    """``n`` plans of ``segments`` prompts; plan i takes colour / shape pair ``i mod len(pairs)``."""
    plans = []
    for i in range(n):
        colour, shape = pairs[i % len(pairs)]
        plans.append([f"a {colour} {shape} moving {d}" for d in segment_directions(i, segments)])
    return plans


def segment_scores(pixels: torch.Tensor, prompts: list[str], seg_frames: int) -> list[dict[str, float]]:
    """Oracle scores of each segment of ``pixels [T, 3, H, W]`` (``seg_frames`` frames each) against its own
    prompt: text / motion / visual and the colour, shape and direction parts."""
    out = []
    for s, prompt in enumerate(prompts):
        r = score_details(pixels[s * seg_frames:(s + 1) * seg_frames], prompt)
        out.append({**{a: float(getattr(r, a)) for a in AXES}, "colour": float(r.parts.get("colour", 0.0)),
                    "shape": float(r.parts.get("shape", 0.0)), "direction": float(r.parts.get("direction", 0.0)),
                    "integrity": float(r.parts.get("integrity", 0.0))})
    return out


def switch_integrity(pixels: torch.Tensor, prompts: list[str], seg_frames: int, frames: int = 6) -> float:
    """Mean over the prompt switches of the oracle's ``integrity`` (the share of frames whose object is one
    connected component, 0 when fewer than two frames show an object) in the first ``frames`` frames after each
    switch of ``pixels [T, 3, H, W]``: where a re-cached switch breaks the object into fragments."""
    values = [score_details(pixels[s * seg_frames:s * seg_frames + frames], prompts[s]).parts.get("integrity", 0.0)
              for s in range(1, len(prompts))]
    return float(sum(values) / len(values)) if values else float("nan")
