"""Synthetic videos with known answers for the streamvid.eval metric tests (uint8 [T, 3, H, W])."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch


def _texture(h: int, w: int, seed: int = 0, lo: int = 40, hi: int = 200, sigma: float = 2.0) -> torch.Tensor:
    """Smooth RGB noise texture, uint8 [3, H, W], values in [lo, hi] (room to brighten without clipping)."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), sigma)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return torch.from_numpy(np.round(lo + (hi - lo) * tex).astype(np.uint8)).permute(2, 0, 1).contiguous()


@pytest.fixture
def texture():
    return _texture


@pytest.fixture
def static_video():
    """16 identical textured frames, 64x64."""
    return _texture(64, 64).unsqueeze(0).repeat(16, 1, 1, 1)
