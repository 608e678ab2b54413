"""`BagOfWordsTextEncoder`: a fixed, weight-free text encoder for small synthetic worlds (the shapes world).

A prompt, split into words and punctuation as `LearnedTextEncoder` splits it, becomes the multi-hot vector of the vocabulary words it contains, as **one** token ``[1, D]``
(``per_word=False``), or one one-hot token per known word in prompt order, zero-padded to ``max_length``
(``per_word=True``, as Wan pads its umT5 context). Unknown words are ignored; the empty prompt ``""`` is the
all-zero token, which the shapes-world models use as the null prompt of classifier-free guidance. No weights,
so a checkpoint that was trained with it needs nothing but the vocabulary (``world.vocabulary()``) and ``D``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from streamvid.core.text.base import TextEmbedding
from streamvid.core.text.learned import split_words

__all__ = ["BagOfWordsTextEncoder"]


class BagOfWordsTextEncoder:
    """Prompts -> multi-hot (one token) or one-hot-per-word embeddings of width ``embed_dim``.

    Args:
        vocab: the known words (lower case); word ``i`` is channel ``i``. ``len(vocab) <= embed_dim``.
        embed_dim: token width ``D`` (channels past the vocabulary stay 0).
        per_word: one token per known word (``max_length`` tokens, zero-padded) instead of one bag token.
        max_length: tokens per prompt when ``per_word`` (words past it are dropped).
    """

    def __init__(self, vocab: Sequence[str], embed_dim: int, per_word: bool = False, max_length: int = 12) -> None:
        words = list(dict.fromkeys(w.lower() for w in vocab))
        if len(words) > embed_dim:
            raise ValueError(f"embed_dim={embed_dim} is smaller than the vocabulary ({len(words)} words)")
        self.index = {w: i for i, w in enumerate(words)}
        self.embed_dim, self.per_word = embed_dim, per_word
        self.max_length = max_length if per_word else 1

    def encode(self, prompts: list[str]) -> TextEmbedding:
        """``B`` prompts -> embeddings ``[B, L, D]`` (``L = 1`` for the bag) and mask ``[B, L]``.

        The bag token is always unmasked (the null prompt is its zero vector); per-word tokens are masked
        past the prompt's known words (at least the first token stays unmasked, zero for the null prompt).
        """
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts, not one string")
        out = torch.zeros(len(prompts), self.max_length, self.embed_dim)
        mask = torch.zeros(len(prompts), self.max_length, dtype=torch.bool)
        mask[:, 0] = True
        for row, prompt in enumerate(prompts):
            ids = [self.index[w] for w in split_words(prompt) if w in self.index]
            if not self.per_word:
                out[row, 0, ids] = 1.0
                continue
            ids = ids[: self.max_length]
            out[row, torch.arange(len(ids)), ids] = 1.0
            mask[row, : len(ids)] = True
        return TextEmbedding(out, mask)

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        """Shortcut: the embeddings ``[B, L, D]`` of `encode`."""
        return self.encode(prompts).embeddings
