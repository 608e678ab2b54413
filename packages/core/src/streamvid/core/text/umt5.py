"""`UMT5TextEncoder`: Wan's umT5-XXL text encoder through transformers, loaded from a local directory only.

Encoding follows diffusers' ``WanPipeline._get_t5_prompt_embeds``: clean the prompt (``ftfy`` when installed,
HTML unescape, collapse whitespace), tokenize with right padding to ``max_length`` (512 for Wan) with
truncation and the end-of-sequence token, run the encoder with the attention mask, and zero the output at
padded positions.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, UMT5EncoderModel

from streamvid.core.text.base import TextEmbedding, zero_padding

_TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json")


def clean_prompt(text: str) -> str:
    """diffusers' Wan ``prompt_clean``: ftfy (if installed), double HTML unescape, collapse whitespace."""
    try:
        import ftfy
    except ImportError:
        ftfy = None
    if ftfy is not None:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def _check_dir(path: Path, what: str, names: tuple[str, ...], need_all: bool) -> None:
    """Raise FileNotFoundError naming ``path`` unless it holds ``names`` (all of them, or any one)."""
    expected = (" and " if need_all else " or ").join(names)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} directory not found: '{path}' (expected a folder with {expected})")
    found = [(path / n).is_file() for n in names]
    if not (all(found) if need_all else any(found)):
        raise FileNotFoundError(f"{what} directory '{path}' is incomplete: expected {expected}")


class UMT5TextEncoder(nn.Module):
    """Frozen umT5 encoder: ``B`` prompts -> `TextEmbedding` ``[B, max_length, d_model]``, zero at padding.

    Args:
        model: a transformers ``UMT5EncoderModel``; its device and dtype are used for encoding.
        tokenizer: the matching tokenizer (forced to right padding).
        max_length: tokens per prompt after padding / truncation (512 for Wan).
    """

    def __init__(self, model: UMT5EncoderModel, tokenizer, max_length: int = 512) -> None:
        super().__init__()
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"  # zeroing below assumes real tokens come first
        self.max_length = max_length
        self.model.requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls,
        local_dir: str | Path,
        max_length: int = 512,
        dtype: torch.dtype = torch.float32,
        subfolder: str | None = None,
        tokenizer_subfolder: str | None = None,
    ) -> UMT5TextEncoder:
        """Load model and tokenizer from a local folder (never downloads, no remote code).

        For a diffusers Wan folder pass ``subfolder="text_encoder", tokenizer_subfolder="tokenizer"``;
        by default both are read from ``local_dir`` itself.
        """
        root = Path(local_dir)
        model_dir = root / subfolder if subfolder else root
        tok_dir = root / tokenizer_subfolder if tokenizer_subfolder else model_dir
        _check_dir(model_dir, "umT5 model", ("config.json",), need_all=True)
        if not any(model_dir.glob("model*.safetensors")) and not any(model_dir.glob("pytorch_model*.bin")):
            raise FileNotFoundError(
                f"umT5 model directory '{model_dir}' has no weights (expected model.safetensors, "
                "sharded model-*.safetensors or pytorch_model.bin)"
            )
        _check_dir(tok_dir, "umT5 tokenizer", _TOKENIZER_FILES, need_all=False)
        model = UMT5EncoderModel.from_pretrained(
            str(model_dir), dtype=dtype, local_files_only=True, trust_remote_code=False
        )
        tokenizer = AutoTokenizer.from_pretrained(
            str(tok_dir), local_files_only=True, trust_remote_code=False
        )
        return cls(model.eval(), tokenizer, max_length=max_length)

    @property
    def embed_dim(self) -> int:
        """``d_model`` of the encoder (4096 for umT5-XXL)."""
        return int(self.model.config.d_model)

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> ``(input_ids [B, L] int64, mask [B, L] bool)`` on the model's device."""
        if isinstance(prompts, str):
            raise TypeError("encode() takes a list of prompts, got a single str")
        out = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = self.model.device
        return out["input_ids"].to(device), out["attention_mask"].to(device).bool()

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> TextEmbedding:
        """``B`` prompts -> embeddings ``[B, max_length, d_model]`` (model dtype, zero at padding), mask ``[B, L]``."""
        ids, mask = self.tokenize(prompts)
        hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return TextEmbedding(zero_padding(hidden, mask), mask)
