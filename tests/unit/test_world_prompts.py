"""Shapes world prompt grammar: generation, parsing (its inverse), vocabulary and segment time ranges."""

from __future__ import annotations

import itertools
import random

import pytest

from streamvid.core.text.learned import split_words
from streamvid.core.world import (
    DIRECTIONS,
    PALETTE,
    SHAPES,
    VOCAB,
    PromptSpec,
    WorldConfig,
    generate_prompt,
    parse_prompt,
    sample_attributes,
    segment_frame_ranges,
)


def _random_spec(rng: random.Random, num_segments: int) -> PromptSpec:
    dirs = [rng.choice(list(DIRECTIONS))]
    for _ in range(num_segments - 1):
        dirs.append(rng.choice([d for d in DIRECTIONS if d != dirs[-1]]))
    return PromptSpec(rng.choice(list(PALETTE)), rng.choice(SHAPES), dirs)


def test_round_trip_every_single_segment_spec_and_many_seeds():
    for colour, shape, direction in itertools.product(PALETTE, SHAPES, DIRECTIONS):
        spec = PromptSpec(colour, shape, (direction,))
        assert parse_prompt(spec.canonical) == spec
        for seed in range(40):
            text = generate_prompt(spec, seed)
            assert parse_prompt(text) == spec, text


def test_round_trip_multi_segment_many_seeds():
    rng = random.Random(0)
    phrasings = set()
    for seed in range(500):
        spec = _random_spec(rng, rng.randint(2, 5))
        text = generate_prompt(spec, seed)
        phrasings.add(text)
        assert parse_prompt(text) == spec, text
        assert set(split_words(text)) <= set(VOCAB), text
    assert len(phrasings) == 500


def test_generation_is_deterministic_and_varied():
    spec = PromptSpec("red", "circle", ["left"])
    assert spec.segments == ("left",)  # lists become tuples: specs compare and hash
    assert generate_prompt(spec, 3) == generate_prompt(spec, 3)
    assert generate_prompt(spec, random.Random(3)) == generate_prompt(spec, 3)
    assert len({generate_prompt(spec, s) for s in range(100)}) > 30
    assert spec.canonical == "a red circle moving left"
    multi = PromptSpec("red", "circle", ("left", "up", "right"))
    assert multi.canonical == "a red circle moving left, then up, then right"
    for text in (
        "a red circle moves left",
        "red circle going to the left",
        "a small red circle drifting left",
    ):
        assert parse_prompt(text) == spec


@pytest.mark.parametrize(
    "text, reason",
    [
        ("a purple dog running", "colour"),
        ("a red blue circle moving left", "colour"),
        ("a red circle", "direction"),
        ("a red circle moving left and up", "direction"),
        ("a red circle moving left, then", "direction"),
        ("moving left, then a red circle up", "before the first"),
    ],
)
def test_parse_errors_name_the_prompt(text, reason):
    with pytest.raises(ValueError, match=reason) as err:
        parse_prompt(text)
    assert repr(text) in str(err.value)


def test_vocabulary_is_lower_case_and_complete():
    assert "," in VOCAB and "then" in VOCAB
    assert all(w == w.lower() for w in VOCAB) and list(VOCAB) == sorted(set(VOCAB))
    assert set(PALETTE) | set(SHAPES) | set(DIRECTIONS) <= set(VOCAB)


@pytest.mark.parametrize("num_frames, num_segments", [(12, 1), (12, 3), (48, 4), (50, 3), (7, 7)])
def test_segment_ranges_cover_the_clip(num_frames, num_segments):
    ranges = segment_frame_ranges(num_frames, num_segments)
    assert len(ranges) == num_segments and ranges[0][0] == 0 and ranges[-1][1] == num_frames
    assert all(a < b for a, b in ranges) and all(b == c for (_, b), (c, _) in zip(ranges, ranges[1:]))
    lengths = [b - a for a, b in ranges]
    assert max(lengths) - min(lengths) <= 1


def test_dataset_prompts_parse_to_their_segments_and_time_ranges():
    cfg = WorldConfig(num_frames=48, num_segments=4)
    ranges = segment_frame_ranges(48, 4)
    for i in range(40):
        attrs, prompt = sample_attributes(cfg, "train", i)
        assert parse_prompt(prompt) == PromptSpec(attrs.colour, attrs.shape, attrs.directions)
        assert [n for _, n in attrs.segments] == [b - a for a, b in ranges]
