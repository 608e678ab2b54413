"""VBench subject / background consistency on local transformers checkpoints, plus the shared image encoder.

Formula (VBench ``subject_consistency.py`` / ``background_consistency.py``): with L2-normalised per-frame
features ``f_0 .. f_{T-1}``, each cosine is clamped at 0 *before* averaging,

    score = 1/(T-1) * sum_{k=1}^{T-1} ( max(0, cos(f_{k-1}, f_k)) + max(0, cos(f_0, f_k)) ) / 2

(per-video average, VBench's single-video mode). A static video scores 1.0; ``T < 2`` is a ValueError.

Backbones (weights are read only from ``weights_dir``: ``local_files_only=True``, ``trust_remote_code=False``):

- subject consistency: DINO ViT-B/16 (``ViTModel``, e.g. a ``facebook/dino-vitb16`` snapshot) or any
  ``Dinov2Model``; the feature is the CLS token of ``last_hidden_state`` (after the final layer norm, as
  DINO's hub model returns it).
- background consistency: CLIP ViT-B/32 (``CLIPModel``); the feature is ``get_image_features`` (the projected
  image embedding, as OpenAI ``clip.encode_image``).

Any model with ``get_image_features`` is encoded with it, anything else by its CLS token.

Preprocessing is done in torch on float frames in [0, 1]. ``preprocess="auto"`` reads the directory's
``preprocessor_config.json`` (resize, centre crop, mean / std, resample) and falls back to VBench's transforms
when the file is absent; ``preprocess="vbench"`` always uses VBench's transforms:

- DINO: shorter side -> 224 (bilinear, no antialias), no crop, ImageNet mean / std.
- CLIP: shorter side -> 224 (bicubic, no antialias), centre crop 224, OpenAI CLIP mean / std.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from streamvid.eval.metrics.registry import as_video, per_video

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "vocab.json + merges.txt")
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL codes; others keep the default interpolation


@dataclass(frozen=True)
class Preprocess:
    """Frames ``[T, C, H, W]`` float in [0, 1] -> normalised pixels ``[T, 3, h, w]``."""

    size: int | tuple[int, int] | None = 224
    """int: shorter side (aspect kept, long side ``int(size * long / short)``); (h, w): exact; None: no resize."""
    crop: tuple[int, int] | None = None
    """Centre crop (h, w), or None."""
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD
    interpolation: str = "bilinear"
    antialias: bool = False
    crop_round: bool = True
    """Crop offset ``round((H - h) / 2)`` as torchvision (VBench); False: ``(H - h) // 2`` as HF processors."""

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.size is not None:
            h, w = x.shape[-2:]
            if isinstance(self.size, int):
                short, long = min(h, w), max(h, w)
                other = int(self.size * long / short)
                out = (self.size, other) if h <= w else (other, self.size)
            else:
                out = tuple(self.size)
            if out != (h, w):
                x = F.interpolate(x, size=out, mode=self.interpolation, antialias=self.antialias,
                                  **({} if self.interpolation == "nearest" else {"align_corners": False}))
        if self.crop is not None:
            (h, w), (ch, cw) = x.shape[-2:], self.crop
            if ch > h or cw > w:
                raise ValueError(f"centre crop {self.crop} is larger than the resized frame {(h, w)}")
            top, left = ((round((h - ch) / 2), round((w - cw) / 2)) if self.crop_round
                         else ((h - ch) // 2, (w - cw) // 2))  # fmt: skip
            x = x[..., top : top + ch, left : left + cw]
        if self.interpolation == "bicubic":
            x = x.clamp(0.0, 1.0)  # bicubic overshoot: VBench / PIL resize uint8 frames, which saturate
        if self.mean is not None:
            mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x


DINO_VBENCH = Preprocess(224, None, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
CLIP_VBENCH = Preprocess(224, (224, 224), CLIP_MEAN, CLIP_STD, "bicubic")


def _hw(value, square: bool) -> int | tuple[int, int]:
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        return int(value["height"]), int(value["width"])
    return (int(value), int(value)) if square else int(value)


def load_preprocess(weights_dir: str | Path, default: Preprocess, mode: str = "auto") -> Preprocess:
    """``default`` (VBench's transform), or the HF ``preprocessor_config.json`` in ``weights_dir`` (mode "auto")."""
    if mode not in ("auto", "vbench"):
        raise ValueError(f"preprocess must be 'auto' or 'vbench', got {mode!r}")
    path = Path(weights_dir) / "preprocessor_config.json"
    if mode == "vbench" or not path.is_file():
        return default
    cfg = json.loads(path.read_text())
    kind = str(cfg.get("image_processor_type") or cfg.get("feature_extractor_type") or "")
    square = kind.startswith("ViT")  # legacy int ``size``: a square for ViT processors, a shorter side otherwise
    size = _hw(cfg["size"], square) if cfg.get("do_resize", True) and "size" in cfg else None
    crop = cfg.get("crop_size") if cfg.get("do_center_crop", False) else None
    crop = _hw(crop, True) if crop is not None else None
    norm = cfg.get("do_normalize", True)
    return replace(default, size=size, crop=crop, mean=tuple(cfg.get("image_mean", default.mean)) if norm else None,
                   std=tuple(cfg.get("image_std", default.std)) if norm else None, antialias=True, crop_round=False,
                   interpolation=_RESAMPLE.get(cfg.get("resample"), default.interpolation))  # fmt: skip


def check_weights_dir(weights_dir: str | Path | None, metric: str, *, tokenizer: bool = False) -> Path:
    """The directory as a Path; FileNotFoundError naming it and the expected files when something is missing."""
    expected = f"config.json and one of {', '.join(WEIGHT_FILES)}"
    expected += f", plus a tokenizer ({' or '.join(TOKENIZER_FILES)})" if tokenizer else ""
    if weights_dir is None:
        raise FileNotFoundError(f"metric {metric!r} needs weights_dir=<local directory with {expected}>")
    path = Path(weights_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"metric {metric!r}: weights directory {str(path)!r} does not exist or is not a directory "
                                f"(expected a local transformers checkpoint: {expected})")
    has_tok = (path / "tokenizer.json").is_file() or all((path / f).is_file() for f in ("vocab.json", "merges.txt"))
    if not (path / "config.json").is_file() or not any((path / f).is_file() for f in WEIGHT_FILES) or (
            tokenizer and not has_tok):
        present = sorted(p.name for p in path.iterdir())
        raise FileNotFoundError(f"metric {metric!r}: weights directory {str(path)!r} is incomplete: expected "
                                f"{expected}; found {present}")
    return path


def load_model(weights_dir: Path, dtype: str = "float32", device: str = "cpu") -> torch.nn.Module:
    """``AutoModel`` from a checked local directory, in eval mode (no hub access, no remote code)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(weights_dir), local_files_only=True, trust_remote_code=False)
    extra = {"add_pooling_layer": False} if config.model_type == "vit" else {}  # DINO v1: the CLS token is the feature
    model = AutoModel.from_pretrained(str(weights_dir), config=config, local_files_only=True, trust_remote_code=False,
                                      dtype=getattr(torch, dtype), **extra)  # fmt: skip
    return model.to(device).eval()


class ImageEncoder:
    """Per-frame features of one video: ``encode([T, C, H, W]) -> [T, D]`` float32 (not normalised)."""

    def __init__(self, model: torch.nn.Module, preprocess: Preprocess, batch_size: int = 32, device: str = "cpu"):
        self.model, self.preprocess, self.batch_size, self.device = model, preprocess, int(batch_size), device
        self.dtype = next(model.parameters()).dtype

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        model = self.model
        if hasattr(model, "get_image_features"):
            out = model.get_image_features(pixel_values=pixels)
            return out if torch.is_tensor(out) else out.pooler_output  # transformers >= 5: output object
        cfg_size = getattr(model.config, "image_size", None)
        kwargs = {"interpolate_pos_encoding": True} if (cfg_size is not None and model.config.model_type == "vit"
                                                         and tuple(pixels.shape[-2:]) != (cfg_size, cfg_size)) else {}
        return model(pixel_values=pixels, **kwargs).last_hidden_state[:, 0]

    @torch.inference_mode()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        frames = as_video(video)
        feats = [self._forward(self.preprocess(chunk).to(self.device, self.dtype)).float().cpu()
                 for chunk in frames.split(self.batch_size)]  # fmt: skip
        return torch.cat(feats)


def consistency_from_features(features: torch.Tensor) -> float:
    """VBench consistency of per-frame features ``[T, D]`` (see the module docstring); float64 internally."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"consistency needs features [T, D] with T >= 2, got shape {tuple(features.shape)}")
    f = F.normalize(features.double(), dim=-1)
    prev = (f[1:] * f[:-1]).sum(-1).clamp_min(0.0)
    first = (f[1:] * f[:1]).sum(-1).clamp_min(0.0)
    return float(((prev + first) / 2).mean())


class FeatureConsistency:
    """A built consistency metric: ``metric(frames [T, C, H, W] or [B, T, C, H, W]) -> float or float64 [B]``."""

    def __init__(self, encoder: ImageEncoder):
        self.encoder = encoder
        self._batched: Callable = per_video(self.score)

    def score(self, video: torch.Tensor) -> float:
        return consistency_from_features(self.encoder.encode(video))

    def __call__(self, frames: torch.Tensor):
        return self._batched(frames)


def _build(metric: str, default: Preprocess, weights_dir, preprocess, batch_size, device, dtype):
    path = check_weights_dir(weights_dir, metric)
    encoder = ImageEncoder(load_model(path, dtype, device), load_preprocess(path, default, preprocess),
                           batch_size, device)  # fmt: skip
    return FeatureConsistency(encoder)


def subject_consistency(weights_dir: str | Path | None = None, *, preprocess: str = "auto", batch_size: int = 32,
                        device: str = "cpu", dtype: str = "float32") -> FeatureConsistency:  # fmt: skip
    """Factory: VBench subject consistency on a local DINO (``ViTModel`` / ``Dinov2Model``) checkpoint."""
    return _build("subject_consistency", DINO_VBENCH, weights_dir, preprocess, batch_size, device, dtype)


def background_consistency(weights_dir: str | Path | None = None, *, preprocess: str = "auto",
                           batch_size: int = 32, device: str = "cpu", dtype: str = "float32") -> FeatureConsistency:
    """Factory: VBench background consistency on a local CLIP (``CLIPModel``) checkpoint."""
    return _build("background_consistency", CLIP_VBENCH, weights_dir, preprocess, batch_size, device, dtype)
