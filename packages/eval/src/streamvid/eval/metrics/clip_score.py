"""CLIP text-video score: mean over frames of the (optionally clamped and scaled) text-frame cosine.

    score = mean_t  scale * g(cos(E_img(x_t), E_txt(prompt))),   g = max(0, .) if clamp_negative else identity

``E_img`` is ``CLIPModel.get_image_features`` of each preprocessed frame (see
:mod:`streamvid.eval.metrics.consistency`; VBench's ``clip_transform(224)`` when the checkpoint has no
``preprocessor_config.json``), ``E_txt`` is ``get_text_features`` of the prompt tokenised with the checkpoint's
own tokenizer (truncated to the text model's context length, 77 for OpenAI CLIP). Conventions:

- default ``scale=1, clamp_negative=False``: VBench ``appearance_style`` (frame-text CLIP logit / 100, which is
  the cosine because OpenAI CLIP's logit scale is exactly 100), averaged over all frames; range [-1, 1].
- ``scale=2.5, clamp_negative=True``: CLIPScore of Hessel et al. 2021, per frame, averaged.
- ``scale=100, clamp_negative=True``: torchmetrics ``CLIPScore`` / the "CLIP-T" / CLIPSIM numbers of video papers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from streamvid.eval.metrics.consistency import (
    CLIP_VBENCH,
    ImageEncoder,
    check_weights_dir,
    load_model,
    load_preprocess,
)


class CLIPScore:
    """A built metric: ``metric(frames [T, C, H, W], prompt=str) -> float``;
    ``metric(frames [B, T, C, H, W], prompt=str | list of B str) -> float64 [B]``."""

    def __init__(self, encoder: ImageEncoder, tokenizer, scale: float = 1.0, clamp_negative: bool = False,
                 cache_size: int = 1024):  # fmt: skip
        self.encoder, self.tokenizer = encoder, tokenizer
        self.model = encoder.model
        self.scale, self.clamp_negative, self.cache_size = float(scale), bool(clamp_negative), int(cache_size)
        text_cfg = getattr(self.model.config, "text_config", self.model.config)
        self.max_length = int(getattr(text_cfg, "max_position_embeddings", 77))
        self._cache: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def text_embeds(self, prompts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings ``[P, D]`` float32 (each prompt encoded once, then cached)."""
        todo = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if todo:
            tok = self.tokenizer(todo, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            tok = {k: v.to(self.encoder.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
            out = self.model.get_text_features(**tok)
            emb = F.normalize((out if torch.is_tensor(out) else out.pooler_output).float().cpu(), dim=-1)
            if len(self._cache) + len(todo) > self.cache_size:
                self._cache.clear()
            self._cache.update(zip(todo, emb))
        return torch.stack([self._cache[p] for p in prompts])

    def frame_cosines(self, video: torch.Tensor, prompt: str) -> torch.Tensor:
        """Cosine of every frame with the prompt, ``[T]`` float64."""
        img = F.normalize(self.encoder.encode(video).double(), dim=-1)
        return img @ self.text_embeds([prompt])[0].double()

    def score(self, video: torch.Tensor, prompt: str) -> float:
        cos = self.frame_cosines(video, prompt)
        return float(self.scale * (cos.clamp_min(0.0) if self.clamp_negative else cos).mean())

    def __call__(self, frames: torch.Tensor, prompt: str | Sequence[str]):
        frames = torch.as_tensor(frames)
        if frames.ndim != 5:
            if not isinstance(prompt, str):
                raise TypeError(f"one video takes one prompt string, got {type(prompt).__name__}")
            return self.score(frames, prompt)
        prompts = [prompt] * len(frames) if isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(frames):
            raise ValueError(f"{len(frames)} videos but {len(prompts)} prompts")
        return torch.tensor([self.score(v, p) for v, p in zip(frames, prompts)], dtype=torch.float64)


def load_tokenizer(weights_dir: Path):
    """The checkpoint's fast tokenizer (``AutoTokenizer``, local files only, no remote code)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(weights_dir), local_files_only=True, trust_remote_code=False)


def clip_score(weights_dir: str | Path | None = None, *, scale: float = 1.0, clamp_negative: bool = False,
               preprocess: str = "auto", batch_size: int = 32, device: str = "cpu", dtype: str = "float32"
               ) -> CLIPScore:  # fmt: skip
    """Factory: CLIP checkpoint (``CLIPModel`` + tokenizer files) in ``weights_dir``."""
    path = check_weights_dir(weights_dir, "clip_score", tokenizer=True)
    model = load_model(path, dtype, device)
    if not hasattr(model, "get_text_features"):
        raise ValueError(f"metric 'clip_score': {str(path)!r} holds a {type(model).__name__}, not a CLIP-like "
                         f"model with get_text_features")
    encoder = ImageEncoder(model, load_preprocess(path, CLIP_VBENCH, preprocess), batch_size, device)
    return CLIPScore(encoder, load_tokenizer(path), scale, clamp_negative)
