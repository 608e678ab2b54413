"""Frame-level CLIP rewards, differentiable: text-frame similarity and an aesthetic MLP head (anchors 2.4).

Both score every (uniformly sampled) frame with a transformers ``CLIPModel`` loaded from a local folder and
average over frames. Preprocessing is CLIPImageProcessor's in torch: resize the shorter side to the vision
tower's ``image_size`` (bicubic, antialiased, clamped to [0, 1]), center crop to ``image_size``, OpenAI CLIP
mean/std, so gradients reach the pixels.

- `CLIPFrameScore` (axis ``text``): ``scale * cos(image_embed, text_embed)`` (CLIPScore uses scale 100 and
  clips at 0; we do not clip, to keep gradients), then ``(x - mean) / std``.
- `AestheticScore` (axis ``visual``): the L2-normalised CLIP image embedding through a small MLP read from a
  ``.safetensors`` (or torch) file, e.g. LAION aesthetic v2 (768 -> 1024 -> 128 -> 64 -> 16 -> 1, linear
  layers with no activations, keys ``layers.{0,2,4,6,7}.*``) or v1 (one linear layer), then ``(x - mean) / std``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamvid.core.rewards.base import BaseReward
from streamvid.core.rewards.configs import AESTHETIC_ACTIVATIONS, AestheticConfig, CLIPFrameScoreConfig
from streamvid.core.rewards.qwen2vl_preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

__all__ = [
    "AestheticConfig",
    "AestheticScore",
    "CLIPFrameScore",
    "CLIPFrameScoreConfig",
    "MLPHead",
    "clip_preprocess",
    "load_clip",
]

_ACTIVATIONS = dict(zip(AESTHETIC_ACTIVATIONS, (nn.Identity, nn.ReLU, nn.GELU), strict=True))


def clip_preprocess(frames: Tensor, size: int, crop: int | None = None) -> Tensor:
    """``[N, 3, H, W]`` in [0, 1] -> ``[N, 3, crop, crop]`` CLIP input (shorter side to ``size``, center crop)."""
    crop = size if crop is None else crop
    h, w = frames.shape[-2:]
    short, long = min(h, w), max(h, w)
    new_long = int(size * long / short)
    nh, nw = (size, new_long) if h <= w else (new_long, size)
    x = frames.float()
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(
            0.0, 1.0
        )
    if nh < crop or nw < crop:
        raise ValueError(f"resized frame {nh}x{nw} is smaller than the crop {crop}")
    top, left = (nh - crop) // 2, (nw - crop) // 2
    x = x[..., top : top + crop, left : left + crop]
    mean = x.new_tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def load_clip(model_dir: str, dtype: str, device: str, with_tokenizer: bool):
    """``(CLIPModel, tokenizer or None)`` from a local folder; FileNotFoundError naming missing files."""
    from transformers import AutoTokenizer, CLIPModel

    path = Path(model_dir)
    if not model_dir or not path.is_dir():
        raise FileNotFoundError(
            f"CLIP model directory not found: '{model_dir}' (expected config.json and model.safetensors)"
        )
    if not (path / "config.json").is_file() or not (
        any(path.glob("model*.safetensors")) or (path / "pytorch_model.bin").is_file()
    ):
        raise FileNotFoundError(
            f"CLIP model directory '{path}' is incomplete: expected config.json and model.safetensors "
            "(or pytorch_model.bin)"
        )
    model = CLIPModel.from_pretrained(str(path), local_files_only=True, dtype=getattr(torch, dtype))
    tokenizer = None
    if with_tokenizer:
        if not any((path / f).is_file() for f in ("tokenizer.json", "vocab.json")):
            raise FileNotFoundError(
                f"CLIP model directory '{path}' has no tokenizer (tokenizer.json or vocab.json)"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    return model.to(device).eval().requires_grad_(False), tokenizer


def _features(out) -> Tensor:
    """transformers 5 returns a model output with the projected embedding in ``pooler_output``."""
    return out if torch.is_tensor(out) else out.pooler_output


class _CLIPFrames(BaseReward):
    """Shared frame sampling and image embedding of the CLIP rewards."""

    def __init__(self, config, model: nn.Module, tokenizer=None) -> None:
        super().__init__(config)
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = int(model.config.vision_config.image_size)

    def image_embeds(self, video: Tensor) -> Tensor:
        """``[B, T, 3, H, W]`` -> projected image embeddings ``[B, T', D]`` (``T' = num_frames`` or ``T``)."""
        b, t = video.shape[:2]
        n = self.config.num_frames
        idx = torch.arange(t) if not n or n >= t else torch.linspace(0, t - 1, n).round().long()
        frames = video[:, idx.to(video.device)].flatten(0, 1).to(self.model.device)
        pixels = clip_preprocess(frames, self.image_size).to(self.model.dtype)
        return _features(self.model.get_image_features(pixel_values=pixels)).float().reshape(b, len(idx), -1)


class CLIPFrameScore(_CLIPFrames):
    """Text-frame CLIP similarity, mean over frames: ``video [B,T,3,H,W]`` + prompts -> axis ``text`` ``[B]``."""

    axes = ("text",)
    config_class = CLIPFrameScoreConfig

    @classmethod
    def from_config(cls, config: CLIPFrameScoreConfig) -> CLIPFrameScore:
        """Load CLIP and its tokenizer from ``config.model_dir`` (local only)."""
        model, tokenizer = load_clip(config.model_dir, config.dtype, config.device, with_tokenizer=True)
        return cls(config, model, tokenizer)

    def text_embeds(self, prompts: list[str]) -> Tensor:
        """``B`` prompts -> projected text embeddings ``[B, D]`` float32."""
        max_len = int(self.model.config.text_config.max_position_embeddings)
        tok = self.tokenizer(prompts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        out = self.model.get_text_features(
            input_ids=tok["input_ids"].to(self.model.device),
            attention_mask=tok["attention_mask"].to(self.model.device),
        )
        return _features(out).float()

    def score_axes(self, video: Tensor, prompts: list[str]) -> dict[str, Tensor]:
        """``{"text": [B]}``: ``(scale * mean_t cos(frame_t, prompt) - mean) / std``."""
        img = F.normalize(self.image_embeds(video), dim=-1)  # [B, T', D]
        txt = F.normalize(self.text_embeds(prompts), dim=-1)  # [B, D]
        cos = (img * txt.unsqueeze(1)).sum(-1).mean(1)
        return {"text": (self.config.scale * cos - self.config.mean) / self.config.std}


class MLPHead(nn.Module):
    """Linear layers in key order with an optional activation between them: ``[..., D] -> [..., out]``.

    Args:
        weights: state dict with 2-D ``<prefix>weight`` (and optional ``<prefix>bias``) tensors; layers are
            ordered by the last integer in their prefix (``layers.0``, ``layers.2``, ...).
        activation: "none", "relu" or "gelu".
    """

    def __init__(self, weights: dict[str, Tensor], activation: str = "none") -> None:
        super().__init__()
        prefixes = [k[: -len("weight")] for k, v in weights.items() if k.endswith("weight") and v.dim() == 2]
        if not prefixes:
            raise ValueError(f"aesthetic head has no 2-D weight tensors (keys: {sorted(weights)[:8]})")
        order = sorted(prefixes, key=lambda p: [int(n) for n in re.findall(r"\d+", p)] or [0])
        self.layers = nn.ModuleList()
        for prefix in order:
            w, bias = weights[prefix + "weight"], weights.get(prefix + "bias")
            if self.layers and w.shape[1] != self.layers[-1].out_features:
                raise ValueError(f"aesthetic head layer '{prefix}weight' takes {w.shape[1]} inputs; "
                                 f"the previous layer gives {self.layers[-1].out_features}")  # fmt: skip
            layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
            layer.weight.data.copy_(w)
            if bias is not None:
                layer.bias.data.copy_(bias)
            self.layers.append(layer)
        self.act = _ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        """``[..., in_features]`` -> ``[..., out_features]``."""
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == 0 else layer(self.act(x))
        return x


class AestheticScore(_CLIPFrames):
    """CLIP image embedding -> MLP head, mean over frames: ``video [B,T,3,H,W]`` -> axis ``visual`` ``[B]``."""

    axes = ("visual",)
    config_class = AestheticConfig

    def __init__(self, config: AestheticConfig, model: nn.Module, head: MLPHead) -> None:
        super().__init__(config, model)
        self.head = head.to(model.device).eval().requires_grad_(False)

    @classmethod
    def from_config(cls, config: AestheticConfig) -> AestheticScore:
        """Load CLIP from ``config.model_dir`` and the head from ``config.head_path`` (local only)."""
        model, _ = load_clip(config.model_dir, config.dtype, config.device, with_tokenizer=False)
        path = Path(config.head_path)
        if not config.head_path or not path.is_file():
            raise FileNotFoundError(
                f"aesthetic head file not found: '{config.head_path}' (expected a .safetensors file)"
            )
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            weights = load_file(str(path))
        else:
            weights = torch.load(path, map_location="cpu", weights_only=True)
        head = MLPHead(weights, config.activation)
        if head.layers[0].in_features != int(model.config.projection_dim):
            raise ValueError(f"aesthetic head '{path}' takes {head.layers[0].in_features} inputs; "
                             f"CLIP projection_dim is {model.config.projection_dim}")  # fmt: skip
        return cls(config, model, head)

    def score_axes(self, video: Tensor, prompts: list[str]) -> dict[str, Tensor]:
        """``{"visual": [B]}``: ``(mean_t head(embed_t)[0] - mean) / std``; prompts are ignored."""
        emb = self.image_embeds(video)
        if self.config.normalize_embeds:
            emb = F.normalize(emb, dim=-1)
        score = self.head(emb.to(self.head.layers[0].weight.dtype))[..., 0].float().mean(1)
        return {"visual": (score - self.config.mean) / self.config.std}
