"""The `TextEncoder` interface and its output, `TextEmbedding`.

Wan convention: prompts are padded (or truncated) to a fixed ``max_length`` (512 for umT5) and the encoder
output at padded positions is set to zero, so the diffusion model's cross-attention sees exact zeros there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class TextEmbedding:
    """Encoded prompts.

    Attributes:
        embeddings: ``[B, L, D]`` float; zero where ``mask`` is False.
        mask: ``[B, L]`` bool; True at real tokens (including the end-of-sequence token).
    """

    embeddings: Tensor
    mask: Tensor

    def __post_init__(self) -> None:
        e, m = self.embeddings, self.mask
        if e.dim() != 3 or m.shape != e.shape[:2] or m.dtype != torch.bool:
            raise ValueError(
                f"TextEmbedding needs embeddings [B, L, D] and a bool mask [B, L]; got embeddings "
                f"{tuple(e.shape)} and mask {tuple(m.shape)} ({m.dtype})"
            )

    @property
    def lengths(self) -> Tensor:
        """``[B]`` int64: number of real tokens per prompt."""
        return self.mask.sum(dim=1)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextEmbedding:
        """Move both tensors to ``device``; cast only ``embeddings`` to ``dtype``."""
        return TextEmbedding(self.embeddings.to(device=device, dtype=dtype), self.mask.to(device=device))

    def __getitem__(self, index: int | slice | Tensor) -> TextEmbedding:
        """Select batch rows, e.g. ``emb[0:1]``, keeping the batch dimension for slices."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return TextEmbedding(self.embeddings[index], self.mask[index])

    @staticmethod
    def cat(items: list[TextEmbedding]) -> TextEmbedding:
        """Concatenate along the batch dimension (all items must share ``L`` and ``D``)."""
        return TextEmbedding(torch.cat([i.embeddings for i in items]), torch.cat([i.mask for i in items]))


def zero_padding(embeddings: Tensor, mask: Tensor) -> Tensor:
    """Set ``embeddings [B, L, D]`` to 0 where ``mask [B, L]`` is False (Wan's padding convention)."""
    return embeddings.masked_fill(~mask.unsqueeze(-1), 0.0)


@runtime_checkable
class TextEncoder(Protocol):
    """Maps a batch of prompts to a `TextEmbedding` of fixed length ``max_length`` and width ``embed_dim``."""

    embed_dim: int
    """Width ``D`` of each token embedding."""
    max_length: int
    """Length ``L`` every prompt is padded / truncated to."""

    def encode(self, prompts: list[str]) -> TextEmbedding:
        """``B`` prompts -> embeddings ``[B, max_length, embed_dim]`` (zero at padding) and mask ``[B, L]``."""
        ...
