"""Prompt grammar of the shapes world: "a red circle moving left, then up".

A prompt names one colour, one shape and a direction per motion segment. `generate_prompt` draws one of many
phrasings (determiner, filler adjective, verb, direction phrase, "then" connector) deterministically from a
seed; `parse_prompt` inverts every phrasing: it reads the attribute words (colour, shape, one direction word
per "then"-separated part) and ignores filler words, so ``parse_prompt(generate_prompt(spec, s)) == spec`` for
every seed. `VOCAB` lists every word the grammar can produce (for a word-level text encoder); words are
lower-case and a comma is a word, as `streamvid.core.text.learned.split_words` splits them.

Segment ``k`` of a ``K``-segment prompt covers frames `segment_frame_ranges(T, K)[k]` of a ``T``-frame video.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from streamvid.core.world.render import DIRECTIONS, PALETTE, SHAPES

__all__ = ["VOCAB", "PromptSpec", "generate_prompt", "parse_prompt", "vocabulary"]

_DETERMINERS = ("a ", "the ", "one ", "")
_ADJECTIVES = ("", "small ", "little ")
_VERBS = ("moving", "moves", "going", "drifting", "sliding", "travelling", "heading", "that moves", "gliding")
_DIRECTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("left", "to the left", "leftwards", "towards the left"),
    "right": ("right", "to the right", "rightwards", "towards the right"),
    "up": ("up", "upwards", "towards the top", "upward"),
    "down": ("down", "downwards", "towards the bottom", "downward"),
}
_CONNECTORS = (", then {d}", ", then turning {d}", ", then turns {d}", " and then {d}", ", and then goes {d}")
_DIRECTION_WORDS: dict[str, str] = {
    "left": "left",
    "leftwards": "left",
    "right": "right",
    "rightwards": "right",
    "up": "up",
    "upward": "up",
    "upwards": "up",
    "top": "up",
    "down": "down",
    "downward": "down",
    "downwards": "down",
    "bottom": "down",
}
_WORD_RE = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks for: a colour, a shape and one direction per motion segment (in order)."""

    colour: str
    shape: str
    segments: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.segments))
        if self.colour not in PALETTE or self.shape not in SHAPES or not self.segments:
            raise ValueError(f"invalid PromptSpec {self!r}: unknown colour/shape or no segments")
        bad = [d for d in self.segments if d not in DIRECTIONS]
        if bad:
            raise ValueError(f"invalid PromptSpec {self!r}: unknown directions {bad}")

    @property
    def canonical(self) -> str:
        """The plain phrasing, e.g. "a red circle moving left, then up"."""
        return generate_prompt(self, canonical=True)


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def generate_prompt(spec: PromptSpec, seed: int | random.Random = 0, canonical: bool = False) -> str:
    """One phrasing of ``spec``, drawn deterministically from ``seed`` (an int or a `random.Random`).

    ``canonical=True`` gives the plain phrasing "a {colour} {shape} moving {dir}[, then {dir}]...".
    """
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)

    def pick(options: Sequence[str]) -> str:
        return options[0] if canonical else rng.choice(options)

    head = f"{pick(_DETERMINERS)}{pick(_ADJECTIVES)}{spec.colour} {spec.shape}"
    first = f"{head} {pick(_VERBS)} {pick(_DIRECTION_PHRASES[spec.segments[0]])}"
    rest = "".join(pick(_CONNECTORS).format(d=pick(_DIRECTION_PHRASES[d])) for d in spec.segments[1:])
    return first + rest


def parse_prompt(text: str) -> PromptSpec:
    """Read ``text`` back into a `PromptSpec`; raises ValueError naming the prompt when it cannot.

    Needs exactly one colour and one shape word (before the first "then") and exactly one direction word in
    each "then"-separated part; other words are ignored.
    """
    words = _words(text)
    parts: list[list[str]] = [[]]
    for w in words:
        if w == "then":
            parts.append([])
        else:
            parts[-1].append(w)
    colours = [w for w in words if w in PALETTE]
    shapes = [w for w in words if w in SHAPES]
    if len(colours) != 1 or len(shapes) != 1:
        raise ValueError(
            f"cannot parse prompt {text!r}: need exactly one colour of {list(PALETTE)} and one shape of "
            f"{list(SHAPES)}, found colours {colours} and shapes {shapes}"
        )
    if colours[0] not in parts[0] or shapes[0] not in parts[0]:
        raise ValueError(f"cannot parse prompt {text!r}: colour and shape must come before the first 'then'")
    segments = []
    for k, part in enumerate(parts):
        found = [_DIRECTION_WORDS[w] for w in part if w in _DIRECTION_WORDS]
        if len(found) != 1:
            raise ValueError(
                f"cannot parse prompt {text!r}: segment {k} ({' '.join(part)!r}) needs exactly one direction "
                f"word of {sorted(_DIRECTION_WORDS)}, found {found}"
            )
        segments.append(found[0])
    return PromptSpec(colours[0], shapes[0], tuple(segments))


def vocabulary() -> list[str]:
    """Every word the grammar can produce (sorted, lower-case, "," included)."""
    fragments = [*_DETERMINERS, *_ADJECTIVES, *_VERBS, *PALETTE, *SHAPES, *_CONNECTORS]
    fragments += [p for phrases in _DIRECTION_PHRASES.values() for p in phrases]
    words = {w for f in fragments for w in _words(f.replace("{d}", ""))}
    return sorted(words)


VOCAB: tuple[str, ...] = tuple(vocabulary())
"""`vocabulary()` as a constant."""
