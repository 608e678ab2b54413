"""3-D rotary position embedding with arbitrary temporal positions (read-time RoPE).

diffusers' `WanRotaryPosEmbed` holds a 1024-row table and always starts at frame 0. A streaming model needs
each frame at its own temporal position (an offset for the current chunk; any position for cached keys, which
are stored un-roped), and must not be capped by the table length. The temporal part is therefore computed on
the fly from the positions with diffusers' own `get_1d_rotary_pos_embed` (same float64 maths, so positions
< 1024 give bit-identical values to the table); the height and width parts come from the module's buffers.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

ROPE_THETA = 10000.0  # WanRotaryPosEmbed's default; the module does not store it.


def rotary_tables(
    rope: WanRotaryPosEmbed, frame_positions: torch.Tensor, height_patches: int, width_patches: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for tokens laid out frame-major (frame, row, column).

    Args:
        rope: the model's `WanRotaryPosEmbed` (supplies the split sizes and the h/w tables).
        frame_positions: `[F]` integer temporal position of each latent frame (any value >= 0).
        height_patches, width_patches: tokens per frame along H and W.
    Returns:
        `(cos, sin)`, each `[1, F*h*w, 1, head_dim]` float32, the layout `WanAttnProcessor` uses.
    """
    device = rope.freqs_cos.device
    positions = frame_positions.to(device=device, dtype=torch.float64)
    t_cos, t_sin = get_1d_rotary_pos_embed(
        rope.t_dim, positions, ROPE_THETA, use_real=True, repeat_interleave_real=True, freqs_dtype=torch.float64
    )
    split = [rope.t_dim, rope.h_dim, rope.w_dim]
    _, h_cos, w_cos = rope.freqs_cos.split(split, dim=1)
    _, h_sin, w_sin = rope.freqs_sin.split(split, dim=1)
    if height_patches > h_cos.shape[0] or width_patches > w_cos.shape[0]:
        raise ValueError(
            f"frame of {height_patches}x{width_patches} patches exceeds the RoPE table ({h_cos.shape[0]} rows)"
        )
    n_frames = positions.shape[0]
    shape = (n_frames, height_patches, width_patches, -1)

    def grid(t: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        t = t.view(n_frames, 1, 1, -1).expand(shape)
        h = h[:height_patches].view(1, height_patches, 1, -1).expand(shape)
        w = w[:width_patches].view(1, 1, width_patches, -1).expand(shape)
        return torch.cat([t, h, w], dim=-1).reshape(1, n_frames * height_patches * width_patches, 1, -1)

    return grid(t_cos, h_cos, w_cos), grid(t_sin, h_sin, w_sin)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of `x` `[B, L, heads, head_dim]` (Wan's convention).

    Same arithmetic as diffusers' `WanAttnProcessor`, so full-sequence outputs match the stock model.
    """
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos = cos[..., 0::2]
    sin = sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)
