"""Schema for the Wan video backbone: the constructor arguments of `diffusers.WanTransformer3DModel`.

Defaults are Wan2.1-T2V-1.3B. Shipped sizes live in `configs/model/*.yaml` (fragments mounted under `model:`):
`wan2.1_t2v_1.3b.yaml` (real), `tiny.yaml` (tests, ~1.6 M parameters), `small.yaml` (benchmarks, ~20 M).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from streamvid.core.config import ConfigError, check_choice

__all__ = ["WanModelConfig"]


@dataclass
class WanModelConfig:
    """Sizes of a Wan transformer; field names and meanings equal `WanTransformer3DModel.__init__`'s."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    """Latent patch size (frames, height, width) of the patch-embedding Conv3d."""
    num_attention_heads: int = 12
    """Attention heads per layer; the hidden size is `num_attention_heads * attention_head_dim`."""
    attention_head_dim: int = 128
    """Channels per head; RoPE splits it into t/h/w parts (h = w = 2 * (head_dim // 6)), so it must be even."""
    in_channels: int = 16
    """Latent channels in (16 for the Wan2.1 VAE)."""
    out_channels: int = 16
    """Latent channels out (the predicted flow / velocity)."""
    text_dim: int = 4096
    """Width of the text-encoder embeddings (4096 for UMT5-XXL)."""
    freq_dim: int = 256
    """Width of the sinusoidal timestep embedding."""
    ffn_dim: int = 8960
    """Hidden width of each block's feed-forward network."""
    num_layers: int = 30
    """Number of transformer blocks."""
    cross_attn_norm: bool = True
    """LayerNorm before text cross-attention."""
    qk_norm: str | None = "rms_norm_across_heads"
    """Query/key normalisation; diffusers implements only "rms_norm_across_heads"."""
    eps: float = 1e-6
    """Epsilon of the normalisation layers."""
    image_dim: int | None = None
    """Width of CLIP image embeddings for image-to-video; None for text-to-video."""
    added_kv_proj_dim: int | None = None
    """Width of the extra image K/V projections for image-to-video; None for text-to-video."""
    rope_max_seq_len: int = 1024
    """Positions per axis in the precomputed RoPE tables."""
    pos_embed_seq_len: int | None = None
    """Learned image-token position embedding length (Wan FLF2V); None otherwise."""
    text_adaln: bool = False
    """`CausalWanModel` only: the mean prompt state also modulates every block's adaLN (off for real Wan)."""
    learned_positions: tuple[int, int, int] | None = None
    """`CausalWanModel` only: (frames, height, width) in tokens of learned absolute position tables (None: off)."""

    def __post_init__(self) -> None:
        if len(self.patch_size) != 3:
            raise ConfigError(f"'patch_size' must have 3 entries (t, h, w), got {list(self.patch_size)}")
        if self.attention_head_dim <= 0 or self.attention_head_dim % 2:
            raise ConfigError(
                f"'attention_head_dim' must be positive and even (RoPE), got {self.attention_head_dim}"
            )
        check_choice("qk_norm", self.qk_norm, ("rms_norm_across_heads", None))

    @property
    def dim(self) -> int:
        """Hidden size of the transformer (`num_attention_heads * attention_head_dim`)."""
        return self.num_attention_heads * self.attention_head_dim

    def to_diffusers_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `CausalWanModel(**kwargs)` (patch_size as a tuple). The `CausalWanModel`-only
        fields are included only when switched on, so a stock config also builds `WanTransformer3DModel`."""
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        kwargs["patch_size"] = tuple(self.patch_size)
        for name in CAUSAL_ONLY_FIELDS:
            if kwargs[name] == getattr(WanModelConfig, name):
                del kwargs[name]
        if self.learned_positions is not None:
            kwargs["learned_positions"] = tuple(self.learned_positions)
        return kwargs


CAUSAL_ONLY_FIELDS = ("text_adaln", "learned_positions")
"""`WanModelConfig` fields that `CausalWanModel` adds to the stock constructor."""
