"""Text encoders: prompts -> `TextEmbedding` ``[B, L, D]`` with a ``[B, L]`` mask, zero at padding.

`UMT5TextEncoder` imports transformers lazily (on attribute access).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamvid.core.text.base import TextEmbedding, TextEncoder, zero_padding
from streamvid.core.text.learned import LearnedTextEncoder

if TYPE_CHECKING:
    from streamvid.core.text.umt5 import UMT5TextEncoder

__all__ = ["LearnedTextEncoder", "TextEmbedding", "TextEncoder", "UMT5TextEncoder", "zero_padding"]


def __getattr__(name: str) -> Any:
    if name == "UMT5TextEncoder":
        from streamvid.core.text.umt5 import UMT5TextEncoder

        return UMT5TextEncoder
    raise AttributeError(f"module 'streamvid.core.text' has no attribute '{name}'")
