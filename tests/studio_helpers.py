"""Helpers of the studio tests: the shipped studio config, and a client reading one stream off the WebSocket."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamvid.core.config import load_config
from streamvid.studio.config import StudioConfig
from streamvid.studio.frames import decode_image

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "studio" / "shapes.yaml"


def studio_config(*overrides: str) -> StudioConfig:
    """`configs/studio/shapes.yaml` with dot-list overrides."""
    return load_config(CONFIG, list(overrides), schema=StudioConfig)


@dataclass
class Received:
    """What one stream sent: every JSON message in order and, per chunk, its decoded frames [n, H, W, 3] uint8."""

    messages: list[dict] = field(default_factory=list)
    chunk_frames: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def chunks(self) -> list[dict]:
        return [m for m in self.messages if m["type"] == "chunk"]

    @property
    def last(self) -> dict:
        return self.messages[-1]

    def video(self) -> np.ndarray:
        return np.concatenate([self.chunk_frames[k] for k in sorted(self.chunk_frames)])

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]


def read_stream(ws, until=("done", "error"), on_chunk=None) -> Received:
    """Read messages until one of type ``until``; each chunk's metadata must be followed by exactly its frames
    as binary messages. ``on_chunk(ws, message)`` runs after each chunk's frames (to switch or stop)."""
    got = Received()
    while True:
        raw = ws.receive()
        assert raw.get("text") is not None, "a binary message arrived where JSON was expected"
        message = json.loads(raw["text"])
        got.messages.append(message)
        if message["type"] == "chunk":
            frames = []
            for _ in range(message["frames"]):
                data = ws.receive()
                assert data.get("bytes") is not None, "chunk metadata must be followed by its binary frames"
                frames.append(decode_image(data["bytes"]))
            got.chunk_frames[message["chunk"]] = np.stack(frames)
            if on_chunk is not None:
                on_chunk(ws, message)
        if message["type"] in until:
            return got
