"""The torch dtypes a config may name, declared once (model weights, reward weights, stored latents)."""

from __future__ import annotations

import torch

from streamvid.core.config import check_choice

__all__ = ["DTYPES", "check_dtype"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Config name -> torch dtype (``torch.<name>``)."""


def check_dtype(key: str, name: str) -> torch.dtype:
    """The torch dtype of ``name``; `ConfigError` naming ``key`` unless it is one of `DTYPES`."""
    check_choice(key, name, DTYPES)
    return DTYPES[name]
