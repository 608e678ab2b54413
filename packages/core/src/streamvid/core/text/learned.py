"""`LearnedTextEncoder`: a small trainable word-level transformer encoder for small synthetic worlds.

Prompts are lower-cased and split into words and punctuation marks (``\\w+|[^\\w\\s]``); each maps to its
vocabulary id or ``<unk>``; an ``<eos>`` token is appended (so no prompt is empty) and the sequence is
truncated / padded with ``<pad>`` to ``max_length``. Embedding + learned positions -> ``num_layers`` pre-norm
``nn.TransformerEncoderLayer`` (dropout 0, padding keys masked) -> LayerNorm -> zero at padding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from streamvid.core.text.base import TextEmbedding, zero_padding

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, EOS)
WEIGHTS_NAME = "text_encoder.safetensors"
CONFIG_NAME = "text_encoder.json"
_WORD_RE = re.compile(r"\w+|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Lower-case ``text`` and split it into words and single punctuation marks."""
    return _WORD_RE.findall(text.lower())


class LearnedTextEncoder(nn.Module):
    """Word-level transformer text encoder.

    Args:
        vocab: known words (lower-cased and de-duplicated, order kept); ids 0-2 are ``<pad>, <unk>, <eos>``.
        embed_dim: width ``D`` of the output embeddings.
        max_length: tokens ``L`` per prompt, ``<eos>`` included.
        num_layers: transformer encoder layers.
        num_heads: attention heads (must divide ``embed_dim``).
        ff_dim: feed-forward width (default ``4 * embed_dim``).
        seed: seeds the parameter initialisation (without touching the global RNG state).
    """

    def __init__(
        self,
        vocab: Sequence[str],
        embed_dim: int = 64,
        max_length: int = 32,
        num_layers: int = 2,
        num_heads: int = 4,
        ff_dim: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(vocab, str):
            raise TypeError("vocab must be a sequence of words, got a single str")
        if max_length < 1 or embed_dim % num_heads:
            raise ValueError(
                f"need max_length >= 1 and embed_dim divisible by num_heads; got max_length={max_length}, "
                f"embed_dim={embed_dim}, num_heads={num_heads}"
            )
        words = [w.lower() for w in vocab if w.lower() not in SPECIAL_TOKENS]
        self.vocab: list[str] = list(SPECIAL_TOKENS) + list(dict.fromkeys(words))
        self.word_to_id = {w: i for i, w in enumerate(self.vocab)}
        self.embed_dim = embed_dim
        self.max_length = max_length
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.ff_dim = ff_dim or 4 * embed_dim
        self.seed = seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.token_embedding = nn.Embedding(len(self.vocab), embed_dim, padding_idx=0)
            self.position_embedding = nn.Parameter(torch.randn(max_length, embed_dim) * 0.02)
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(
                    embed_dim, num_heads, self.ff_dim, dropout=0.0, batch_first=True, norm_first=True
                )
                for _ in range(num_layers)
            )
            self.norm = nn.LayerNorm(embed_dim)

    @property
    def config(self) -> dict:
        """Constructor arguments, as written to ``text_encoder.json``."""
        return {
            "vocab": self.vocab[len(SPECIAL_TOKENS) :],
            "embed_dim": self.embed_dim,
            "max_length": self.max_length,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "seed": self.seed,
        }

    def tokenize(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Prompts -> ``(ids [B, L] int64, mask [B, L] bool)`` on the parameters' device."""
        if isinstance(prompts, str):
            raise TypeError("encode() takes a list of prompts, got a single str")
        unk, eos = self.word_to_id[UNK], self.word_to_id[EOS]
        ids = torch.zeros(len(prompts), self.max_length, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            toks = [self.word_to_id.get(w, unk) for w in split_words(prompt)][: self.max_length - 1] + [eos]
            ids[row, : len(toks)] = torch.tensor(toks)
        device = self.token_embedding.weight.device
        return ids.to(device), (ids != 0).to(device)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Token ids ``[B, L]`` and mask ``[B, L]`` bool -> embeddings ``[B, L, D]``, zero at padding."""
        x = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~mask)
        return zero_padding(self.norm(x), mask)

    def encode(self, prompts: list[str]) -> TextEmbedding:
        """``B`` prompts -> embeddings ``[B, max_length, embed_dim]`` (differentiable) and mask ``[B, L]``."""
        ids, mask = self.tokenize(prompts)
        return TextEmbedding(self(ids, mask), mask)

    def save(self, directory: str | Path) -> None:
        """Write ``text_encoder.safetensors`` (weights) and ``text_encoder.json`` (vocab and sizes)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_NAME))
        (path / CONFIG_NAME).write_text(json.dumps(self.config, indent=2))

    @classmethod
    def load(cls, directory: str | Path, device: torch.device | str | None = None) -> LearnedTextEncoder:
        """Rebuild from a folder written by `save` (strict key match)."""
        path = Path(directory)
        missing = [n for n in (WEIGHTS_NAME, CONFIG_NAME) if not (path / n).is_file()]
        if missing:
            raise FileNotFoundError(f"learned text encoder folder '{path}' lacks {', '.join(missing)}")
        encoder = cls(**json.loads((path / CONFIG_NAME).read_text()))
        encoder.load_state_dict(load_file(str(path / WEIGHTS_NAME)))
        return encoder.to(device) if device is not None else encoder
