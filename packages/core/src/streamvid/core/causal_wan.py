"""`CausalWanModel`: diffusers' Wan2.1 transformer, run bidirectionally, block-causally or streaming.

The class subclasses `diffusers.WanTransformer3DModel` and keeps its constructor and every parameter name, so
diffusers-format Wan2.1 weights load with `from_pretrained` and `save_pretrained` writes them back; the
bidirectional teacher and critic are the stock class. Only `forward` is replaced. It adds

* per-frame timesteps `[B, F]`: the adaLN modulation is computed once per frame and broadcast over that
  frame's tokens (not expanded to one timestep per token);
* three attention modes: full (bidirectional; equals the stock model), block-causal (training: a query in
  chunk c sees chunks <= c, optionally only a sink and a window), and streaming (reads and writes a
  `KVCache`; keys are cached un-roped and roped at read time at the positions the cache reports);
* cross-attention K/V for the prompt computed once (`encode_text`) and reused by every call;
* two optional inputs for small models trained from scratch, both off by default (a real Wan2.1 checkpoint
  has neither, loads unchanged and runs exactly as the stock model):
  - ``text_adaln``: the mean text-encoder state, through a zero-initialised linear layer, is added to every
    frame's time embedding, so the prompt also modulates every block's adaLN shift / scale / gate (FiLM, as
    the shapes-world conv teacher is conditioned), besides the stock additive cross-attention;
  - ``learned_positions = (frames, height, width)``: zero-initialised learned absolute position tables per
    axis (in tokens), added to the patch embeddings (Wan's RoPE is relative only). Frames past ``frames``
    (long streams) reuse the last frame's entry.

Attention goes through `diffusers.models.attention_dispatch.dispatch_attention_fn`, so the backend chosen
with `model.set_attention_backend(...)` (SDPA on CPU, flash / flex on GPU) applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.transformer_wan import (
    WanAttention,
    WanTransformer3DModel,
    WanTransformerBlock,
)

from streamvid.core.kv_cache import AttentionCache
from streamvid.core.rope import apply_rotary, rotary_tables


@dataclass(frozen=True)
class BlockCausal:
    """Block-causal attention over chunks of `chunk_frames` latent frames (the training path).

    A query frame in chunk c attends to key frames in chunks <= c; with `local_attn_frames` (the reference's
    `local_attn_size`, sink included) only to the sink (frames < `sink_frames`) and the last
    `local_attn_frames - sink_frames` frames up to the end of chunk c, which is exactly what a streaming
    `KVCache` with the same layout and the `drop` policy holds.
    """

    chunk_frames: int
    sink_frames: int = 0
    local_attn_frames: int | None = None

    @property
    def rolling_frames(self) -> int | None:
        """`local_attn_frames - sink_frames`: the recent frames attended besides the sink; None = all."""
        return None if self.local_attn_frames is None else self.local_attn_frames - self.sink_frames

    def frame_mask(self, num_frames: int, device: torch.device | None = None) -> torch.Tensor:
        """`[F, F]` bool, True where query frame i may attend to key frame j."""
        n = self.chunk_frames
        if num_frames % n:
            raise ValueError(f"{num_frames} frames is not a multiple of chunk_frames={n}")
        for name in ("sink_frames", "local_attn_frames"):
            value = getattr(self, name)
            if value is not None and value % n:
                raise ValueError(f"BlockCausal.{name}={value} must be a multiple of chunk_frames={n}")
        if self.rolling_frames is not None and self.rolling_frames < n:
            raise ValueError(f"BlockCausal.local_attn_frames={self.local_attn_frames} must be >= sink_frames + "
                             f"chunk_frames ({self.sink_frames} + {n})")
        frame = torch.arange(num_frames, device=device)
        chunk_end = (frame // n + 1) * n  # exclusive end of each query frame's chunk
        allowed = frame[None, :] < chunk_end[:, None]
        if self.rolling_frames is not None:
            in_window = frame[None, :] >= (chunk_end[:, None] - self.rolling_frames)
            allowed &= in_window | (frame[None, :] < self.sink_frames)
        return allowed

    def token_mask(self, num_frames: int, tokens_per_frame: int, device=None) -> torch.Tensor:
        """`[F*T, F*T]` bool mask for frame-major tokens."""
        m = self.frame_mask(num_frames, device)
        return m.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)


class _ReplayCache:
    """The streaming cache as a gradient-checkpointed block sees it.

    Under gradient checkpointing a block runs again in the backward pass, when the stream has already committed
    its chunk and moved on (the cache may have evicted or opened another chunk); LongLive defers its cache
    updates for the same reason (streaming-anchors.md, LongLive (5)). The first run writes through and keeps
    each layer's history read (`history` returns copies, so later cache changes do not reach them); the re-run
    writes nothing and reads the same history, so the recomputed block equals the original one.
    """

    def __init__(self, cache: AttentionCache) -> None:
        self.cache = cache
        self._written: set[int] = set()
        self._history: dict[tuple[int, bool], object] = {}

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        if layer not in self._written:  # a second write of a layer is the backward's recomputation
            self._written.add(layer)
            self.cache.write(layer, keys, values)

    def history(self, layer: int, broadcast: bool = True):
        key = (layer, broadcast)
        if key not in self._history:
            self._history[key] = self.cache.history(layer, broadcast=broadcast)
        return self._history[key]


@dataclass
class TextContext:
    """Cross-attention keys/values of one prompt batch, per layer: each `[B_text, L, heads, head_dim]`."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    adaln: torch.Tensor | None = None
    """`[B_text, D]`: the prompt's addition to the time embedding (models with `text_adaln`), else None."""

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]


def _heads(x: torch.Tensor, attn: WanAttention) -> torch.Tensor:
    return x.unflatten(2, (attn.heads, -1))


def _backend(attn: WanAttention):
    return getattr(attn.processor, "_attention_backend", None)


class CausalWanModel(WanTransformer3DModel):
    """Wan2.1 transformer with per-frame timesteps, block-causal masks and a streaming KV cache.

    Takes every `WanTransformer3DModel` argument, plus ``text_adaln`` and ``learned_positions`` (see the module
    docstring; both off by default and recorded in the diffusers config, so `save_pretrained` /
    `from_pretrained` round-trip them).
    """

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-06,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        text_adaln: bool = False,
        learned_positions: tuple[int, int, int] | None = None,
    ):
        super().__init__(
            patch_size, num_attention_heads, attention_head_dim, in_channels, out_channels, text_dim, freq_dim,
            ffn_dim, num_layers, cross_attn_norm, qk_norm, eps, image_dim, added_kv_proj_dim, rope_max_seq_len,
            pos_embed_seq_len,
        )  # fmt: skip
        dim = self.config.num_attention_heads * self.config.attention_head_dim
        if text_adaln:
            self.text_adaln_proj = torch.nn.Linear(self.config.text_dim, dim)
            torch.nn.init.zeros_(self.text_adaln_proj.weight)
            torch.nn.init.zeros_(self.text_adaln_proj.bias)
        if learned_positions is not None:
            if len(learned_positions) != 3 or min(learned_positions) < 1:
                raise ValueError(f"learned_positions must be 3 positive sizes (frames, h, w), got {learned_positions}")
            self.pos_frame, self.pos_height, self.pos_width = (
                torch.nn.Parameter(torch.zeros(n, dim)) for n in learned_positions
            )

    def encode_text(self, encoder_hidden_states: torch.Tensor, *, grad: bool | None = None) -> TextContext:
        """Project text-encoder states `[B, L, text_dim]` to per-layer cross-attention K/V, once per prompt.

        Args:
            encoder_hidden_states: `[B, L, text_dim]` text-encoder output.
            grad: None (default) follows torch's grad mode like any module call, so a training rollout that
                encodes its prompt with gradients enabled trains the text projections (`text_embedder`,
                `attn2.to_k / to_v / norm_k`) through every forward that uses the context; False never records
                a graph (a prompt encoded once for inference); True records it even under `torch.no_grad()`.
        Returns:
            `TextContext` with per-layer keys and values `[B, L, heads, head_dim]`.
        """
        if grad is None:
            return self._text_context(encoder_hidden_states)
        with torch.set_grad_enabled(grad):
            return self._text_context(encoder_hidden_states)

    def _text_context(self, encoder_hidden_states: torch.Tensor) -> TextContext:
        if self.config.image_dim is not None or self.config.added_kv_proj_dim is not None:
            raise ValueError(
                "CausalWanModel supports text-to-video Wan configs only; this one has image conditioning "
                f"(image_dim={self.config.image_dim}, added_kv_proj_dim={self.config.added_kv_proj_dim})"
            )
        text = self.condition_embedder.text_embedder(encoder_hidden_states)
        keys, values = [], []
        for block in self.blocks:
            attn = block.attn2
            if attn.fused_projections:
                k, v = attn.to_kv(text).chunk(2, dim=-1)
            else:
                k, v = attn.to_k(text), attn.to_v(text)
            keys.append(_heads(attn.norm_k(k), attn))
            values.append(_heads(v, attn))
        adaln = self.text_adaln_proj(encoder_hidden_states.mean(1)) if self.config.text_adaln else None
        return TextContext(keys, values, adaln)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_hidden_states_image: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict | None = None,
        *,
        text_context: TextContext | None = None,
        block_causal: BlockCausal | None = None,
        kv_cache: AttentionCache | None = None,
        frame_offset: int = 0,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Predict the flow `v = noise - x0` for a clip or a chunk.

        Args:
            hidden_states: `[B, C, F, H, W]` noisy latents (diffusers layout).
            timestep: `[B]` (one per sample) or `[B, F]` (one per latent frame), in [0, 1000].
            encoder_hidden_states: `[B, L, text_dim]` text-encoder states; or give `text_context`.
            text_context: cross-attention K/V from `encode_text` (reused across calls).
            block_causal: chunk mask for the full-sequence training path.
            kv_cache: streaming mode, an `AttentionCache` (`KVCache`, or a `CacheBatch` of candidates) with an
                open chunk of F frames (`KVCache.append`); this call writes the chunk's K/V (overwriting earlier
                passes) and attends to the history.
            frame_offset: temporal RoPE position of the first frame (full / block-causal modes).
        Returns:
            `[B, C_out, F, H, W]` flow prediction, as the stock model.
        """
        if encoder_hidden_states_image is not None:
            raise ValueError("CausalWanModel is text-to-video: encoder_hidden_states_image must be None")
        if kv_cache is not None and block_causal is not None:
            raise ValueError("give either kv_cache (streaming) or block_causal (full sequence), not both")
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        post_f, post_h, post_w = frames // p_t, height // p_h, width // p_w
        tokens_per_frame = post_h * post_w

        if text_context is None:
            if encoder_hidden_states is None:
                raise ValueError("give encoder_hidden_states or text_context")
            text_context = self._text_context(encoder_hidden_states)

        # Rotary tables: queries at their frame positions; keys at the cache's positions when streaming.
        if kv_cache is not None:
            q_pos = kv_cache.query_positions()
            if q_pos.numel() != post_f:
                raise ValueError(f"kv_cache has an open chunk of {q_pos.numel()} frames, input has {post_f}")
        else:
            q_pos = torch.arange(frame_offset, frame_offset + post_f)
        rope_q = rotary_tables(self.rope, q_pos, post_h, post_w)

        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()  # [B, F*T, D]
        if self.config.learned_positions is not None:
            x = x + self._learned_positions(q_pos, post_h, post_w).to(x.dtype)

        # Per-frame time embedding: [B, F, D] and modulation [B, F, 6, D].
        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(batch, post_f)
        if timestep.shape != (batch, post_f):
            raise ValueError(f"timestep must be [B] or [B, F]=[{batch}, {post_f}], got {list(timestep.shape)}")
        ce = self.condition_embedder
        t_freq = ce.timesteps_proj(timestep.flatten()).unflatten(0, (batch, post_f))
        t_dtype = next(iter(ce.time_embedder.parameters())).dtype
        if t_freq.dtype != t_dtype and t_dtype != torch.int8:
            t_freq = t_freq.to(t_dtype)
        temb = ce.time_embedder(t_freq).type_as(x)  # [B, F, D]
        if text_context.adaln is not None:  # text_adaln: the prompt modulates every block too
            temb = temb + text_context.adaln.to(temb.dtype)[:, None]
        modulation = ce.time_proj(ce.act_fn(temb)).unflatten(2, (6, -1))  # [B, F, 6, D]

        mask = None
        if block_causal is not None:
            mask = block_causal.token_mask(post_f, tokens_per_frame, x.device)
        rope_k = rope_q
        if kv_cache is not None:  # key positions are frame indices, known from the open chunk before any write
            rope_k = rotary_tables(self.rope, kv_cache.key_positions(), post_h, post_w)

        checkpointing = torch.is_grad_enabled() and self.gradient_checkpointing
        cache = _ReplayCache(kv_cache) if checkpointing and kv_cache is not None else kv_cache
        for layer, block in enumerate(self.blocks):
            args = (block, layer, x, text_context, modulation, rope_q, rope_k, mask, cache, post_f)
            if checkpointing:
                x = self._gradient_checkpointing_func(self._block_forward, *args)
            else:
                x = self._block_forward(*args)

        # Output head with per-frame shift/scale: [B, F, 1, D] each.
        shift, scale = (self.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
        x = x.unflatten(1, (post_f, tokens_per_frame))
        x = (self.norm_out(x.float()) * (1 + scale) + shift).type_as(x).flatten(1, 2)
        x = self.proj_out(x)
        x = x.reshape(batch, post_f, post_h, post_w, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        output = x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        return Transformer2DModelOutput(sample=output) if return_dict else (output,)

    def _learned_positions(self, frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """`[F * h * w, D]` sum of the frame / row / column tables (frames past the table reuse its last row)."""
        n_f, n_h, n_w = self.config.learned_positions
        if height > n_h or width > n_w:
            raise ValueError(f"learned_positions cover {n_h}x{n_w} tokens per frame, the input has {height}x{width}")
        f = self.pos_frame[frames.clamp(max=n_f - 1).to(self.pos_frame.device)]
        pos = f[:, None, None] + self.pos_height[:height, None] + self.pos_width[None, :width]
        return pos.flatten(0, 2)

    def _block_forward(
        self,
        block: WanTransformerBlock,
        layer: int,
        x: torch.Tensor,
        text: TextContext,
        modulation: torch.Tensor,
        rope_q: tuple[torch.Tensor, torch.Tensor],
        rope_k: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None,
        kv_cache: AttentionCache | None,
        frames: int,
    ) -> torch.Tensor:
        """`WanTransformerBlock.forward` with per-frame modulation; `x` is `[B, F*T, D]`."""
        mod = (block.scale_shift_table.unsqueeze(0) + modulation.float()).chunk(6, dim=2)  # each [B, F, 1, D]
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = mod

        def per_frame(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(1, (frames, -1))

        h = (block.norm1(per_frame(x).float()) * (1 + scale_msa) + shift_msa).type_as(x).flatten(1, 2)
        attn_out = self._self_attention(block.attn1, layer, h, rope_q, rope_k, mask, kv_cache)
        x = (per_frame(x).float() + per_frame(attn_out) * gate_msa).type_as(x).flatten(1, 2)

        h = block.norm2(x.float()).type_as(x)
        x = x + self._cross_attention(block.attn2, h, text.keys[layer], text.values[layer])

        h = (block.norm3(per_frame(x).float()) * (1 + c_scale) + c_shift).type_as(x)
        ff = block.ffn(h.flatten(1, 2))
        return (per_frame(x).float() + per_frame(ff).float() * c_gate).type_as(x).flatten(1, 2)

    def _self_attention(self, attn, layer, h, rope_q, rope_k, mask, kv_cache) -> torch.Tensor:
        if attn.fused_projections:
            q, k, v = attn.to_qkv(h).chunk(3, dim=-1)
        else:
            q, k, v = attn.to_q(h), attn.to_k(h), attn.to_v(h)
        q, k, v = _heads(attn.norm_q(q), attn), _heads(attn.norm_k(k), attn), _heads(v, attn)
        q = apply_rotary(q, *rope_q)
        if kv_cache is not None:
            kv_cache.write(layer, k, v)  # un-roped and detached: history never carries gradient
            past = kv_cache.history(layer, broadcast=False)  # one row when a candidate batch shares it
            if past is None:
                k = apply_rotary(k, *rope_k)
            else:  # rope history and chunk apart (RoPE is per token): a shared history is roped once
                n, cos, sin = past[0].shape[1], *rope_k
                hist_k = apply_rotary(past[0], cos[:, :n], sin[:, :n])
                hist_v = past[1]
                if hist_k.shape[0] != k.shape[0]:
                    hist_k = hist_k.expand(k.shape[0], *hist_k.shape[1:])
                    hist_v = hist_v.expand(k.shape[0], *hist_v.shape[1:])
                # the live k, v keep the gradient of the current chunk
                k = torch.cat([hist_k, apply_rotary(k, cos[:, n:], sin[:, n:])], dim=1)
                v = torch.cat([hist_v, v], dim=1)
        else:
            k = apply_rotary(k, *rope_k)
        out = dispatch_attention_fn(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False, backend=_backend(attn))
        out = out.flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))

    def _cross_attention(self, attn, h, k, v) -> torch.Tensor:
        q = _heads(attn.norm_q(attn.to_q(h)), attn)
        if k.shape[0] != q.shape[0]:
            if k.shape[0] != 1:
                raise ValueError(f"text batch {k.shape[0]} does not match video batch {q.shape[0]}")
            k, v = k.expand(q.shape[0], *k.shape[1:]), v.expand(q.shape[0], *v.shape[1:])
        out = dispatch_attention_fn(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, backend=_backend(attn))
        out = out.flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))
