"""VBench aesthetic quality: a LAION aesthetic head on L2-normalised CLIP image embeddings.

VBench (``aesthetic_quality.py``): every frame goes through CLIP ViT-L/14 (``clip_transform(224)``), the image
embedding is L2-normalised and fed to the LAION linear predictor v1 (``sa_0_4_vit_l_14_linear``,
``nn.Linear(768, 1)``, predictions on a ~1..10 scale); the video score is ``mean_t pred_t / 10``. VBench does not
clamp, so neither do we by default (``clamp=True`` clips each frame score to [0, 1]).

The head is read from a safetensors file (no pickle): a linear head (``weight [1, D]``, ``bias [1]``) or a
chain of linear layers such as the LAION improved predictor v2 (``layers.0`` 768->1024, ``layers.2``,
``layers.4``, ``layers.6``, ``layers.7`` ->1; dropouts in between and no activations, hence
``activation="none"``). Layers are chained in natural order of their key prefixes. Convert a ``.pth`` with
``safetensors.torch.save_file(torch.load(pth), "aesthetic_head.safetensors")``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from streamvid.eval.metrics.consistency import (
    CLIP_VBENCH,
    ImageEncoder,
    check_weights_dir,
    load_model,
    load_preprocess,
)
from streamvid.eval.metrics.registry import per_video

HEAD_FILE = "aesthetic_head.safetensors"
_ACTIVATIONS = {"none": nn.Identity, "relu": nn.ReLU, "gelu": nn.GELU}


def _natural(key: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


class AestheticHead(nn.Module):
    """Linear layers chained with ``activation`` in between: embeddings ``[N, D]`` -> predictions ``[N]``."""

    def __init__(self, layers: list[nn.Linear], activation: str = "none"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if not layers or layers[-1].out_features != 1:
            raise ValueError("the aesthetic head must end in a layer with one output")
        for a, b in zip(layers[:-1], layers[1:]):
            if a.out_features != b.in_features:
                raise ValueError(f"aesthetic head layers do not chain: {a} -> {b}")
        self.layers = nn.ModuleList(layers)
        self.act = _ACTIVATIONS[activation]()
        self.activation = activation

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], activation: str = "none") -> AestheticHead:
        """Build from ``{prefix}weight [out, in]`` / ``{prefix}bias [out]`` pairs (bias optional)."""
        prefixes = sorted((k[: -len("weight")] for k, v in state.items() if k.endswith("weight") and v.ndim == 2),
                          key=_natural)  # fmt: skip
        used = {p + s for p in prefixes for s in ("weight", "bias")}
        if not prefixes or set(state) - used:
            raise ValueError(f"aesthetic head keys must be '<prefix>weight' (2-D) and '<prefix>bias'; got "
                             f"{sorted(state)}")
        layers = []
        for p in prefixes:
            w, b = state[p + "weight"], state.get(p + "bias")
            layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
            with torch.no_grad():
                layer.weight.copy_(w)
                if b is not None:
                    layer.bias.copy_(b.reshape(-1))
            layers.append(layer)
        return cls(layers, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 else self.act(x))
        return x.squeeze(-1)


def load_aesthetic_head(path: str | Path, activation: str = "none") -> AestheticHead:
    """An :class:`AestheticHead` from a safetensors file (FileNotFoundError naming it when absent)."""
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"aesthetic head {str(path)!r} not found (expected a safetensors file with "
                                f"'weight' [1, D] / 'bias' [1] or 'layers.<i>.weight' / 'layers.<i>.bias')")
    return AestheticHead.from_state_dict(load_file(str(path)), activation).float().eval()


class AestheticQuality:
    """A built metric: ``metric(frames [T, C, H, W] or [B, T, C, H, W]) -> float or float64 [B]``."""

    def __init__(self, encoder: ImageEncoder, head: AestheticHead, clamp: bool = False):
        self.encoder, self.head, self.clamp = encoder, head, clamp
        self._batched: Callable = per_video(self.score)

    @torch.inference_mode()
    def frame_scores(self, video: torch.Tensor) -> torch.Tensor:
        """Per-frame ``pred / 10`` ``[T]`` float32 (clipped to [0, 1] when ``clamp``)."""
        emb = self.encoder.encode(video)
        if emb.shape[-1] != self.head.in_features:
            raise ValueError(f"aesthetic head expects {self.head.in_features}-d embeddings, the CLIP model gives "
                             f"{emb.shape[-1]}-d")
        scores = self.head(torch.nn.functional.normalize(emb, dim=-1)) / 10.0
        return scores.clamp(0.0, 1.0) if self.clamp else scores

    def score(self, video: torch.Tensor) -> float:
        return float(self.frame_scores(video).double().mean())

    def __call__(self, frames: torch.Tensor):
        return self._batched(frames)


def aesthetic_quality(weights_dir: str | Path | None = None, *, head_file: str | Path = HEAD_FILE,
                      activation: str = "none", clamp: bool = False, preprocess: str = "auto", batch_size: int = 32,
                      device: str = "cpu", dtype: str = "float32") -> AestheticQuality:  # fmt: skip
    """Factory: CLIP checkpoint in ``weights_dir``; ``head_file`` is relative to it unless absolute."""
    path = check_weights_dir(weights_dir, "aesthetic_quality")
    head_path = Path(head_file).expanduser()
    head_path = head_path if head_path.is_absolute() else path / head_path
    if not head_path.is_file():
        raise FileNotFoundError(f"metric 'aesthetic_quality': aesthetic head {str(head_path)!r} not found in "
                                f"weights directory {str(path)!r} (expected {HEAD_FILE} or pass head_file=)")
    head = load_aesthetic_head(head_path, activation)  # tiny: stays on the CPU with the float32 embeddings
    encoder = ImageEncoder(load_model(path, dtype, device), load_preprocess(path, CLIP_VBENCH, preprocess),
                           batch_size, device)  # fmt: skip
    return AestheticQuality(encoder, head, clamp)
