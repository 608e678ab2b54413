"""CausalWanModel: parity with stock diffusers, per-frame timesteps, block-causal vs streaming equivalence."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel

from streamvid.core.causal_wan import BlockCausal, CausalWanModel
from streamvid.core.kv_cache import CacheLayout, KVCache

B, C, H, W, L_TEXT = 2, 4, 8, 8, 5


def _inputs(frames: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, frames, H, W, generator=g)
    text = torch.randn(B, L_TEXT, 16, generator=g)
    return x, text


def test_same_parameters_as_stock(tiny_wan_kwargs, tiny_causal_wan):
    stock = WanTransformer3DModel(**tiny_wan_kwargs)
    assert list(stock.state_dict()) == list(tiny_causal_wan.state_dict())
    for name, p in stock.state_dict().items():
        assert p.shape == tiny_causal_wan.state_dict()[name].shape, name


def test_full_mode_matches_stock(tiny_wan_kwargs, tiny_causal_wan):
    stock = WanTransformer3DModel(**tiny_wan_kwargs).eval()
    stock.load_state_dict(tiny_causal_wan.state_dict())
    x, text = _inputs(frames=5)
    t = torch.tensor([999.0, 321.0])
    with torch.no_grad():
        ref = stock(x, t, text).sample
        out = tiny_causal_wan(x, t, text).sample
    assert out.shape == ref.shape == x.shape
    assert (out - ref).abs().max() <= 1e-5


def test_per_frame_timesteps_equal_per_token_expansion(tiny_wan_kwargs, tiny_causal_wan):
    """[B, F] timesteps give the same output as diffusers' per-token [B, F*T] path."""
    stock = WanTransformer3DModel(**tiny_wan_kwargs).eval()
    stock.load_state_dict(tiny_causal_wan.state_dict())
    frames = 4
    x, text = _inputs(frames)
    t = torch.tensor([[900.0, 700.0, 500.0, 100.0], [10.0, 20.0, 30.0, 40.0]])
    tokens_per_frame = (H // 2) * (W // 2)
    with torch.no_grad():
        ref = stock(x, t.repeat_interleave(tokens_per_frame, dim=1), text).sample
        out = tiny_causal_wan(x, t, text).sample
    assert (out - ref).abs().max() <= 1e-5


def test_round_trip_save_pretrained(tmp_path, tiny_causal_wan):
    tiny_causal_wan.save_pretrained(tmp_path)
    loaded = CausalWanModel.from_pretrained(tmp_path).eval()
    stock = WanTransformer3DModel.from_pretrained(tmp_path).eval()
    x, text = _inputs(frames=3)
    t = torch.tensor([500.0, 500.0])
    with torch.no_grad():
        a, b = loaded(x, t, text).sample, stock(x, t, text).sample
    assert (a - b).abs().max() <= 1e-5


def test_block_causal_mask_is_causal(tiny_causal_wan):
    """Changing a later chunk must not change the output of earlier chunks."""
    x, text = _inputs(frames=6)
    t = torch.full((B, 6), 600.0)
    mask = BlockCausal(chunk_frames=2)
    with torch.no_grad():
        a = tiny_causal_wan(x, t, text, block_causal=mask).sample
        x2 = x.clone()
        x2[:, :, 4:] += 1.0
        b = tiny_causal_wan(x2, t, text, block_causal=mask).sample
    assert (a[:, :, :4] - b[:, :, :4]).abs().max() <= 1e-6
    assert (a[:, :, 4:] - b[:, :, 4:]).abs().max() > 1e-3


def _stream(model, x, t, text, layout, router=None):
    """Run `x` chunk by chunk through a KVCache: one pass per chunk, then commit that pass' K/V."""
    cache = KVCache.for_model(model, layout, router)
    ctx = model.encode_text(text)
    n = layout.chunk_frames
    outs = []
    for start in range(0, x.shape[2], n):
        cache.append(start, n)
        outs.append(model(x[:, :, start : start + n], t[:, start : start + n], text_context=ctx, kv_cache=cache).sample)
        cache.commit()
    return torch.cat(outs, dim=2), cache


@pytest.mark.parametrize(
    "layout, mask",
    [
        (CacheLayout(chunk_frames=2), BlockCausal(2)),
        (CacheLayout(chunk_frames=2, local_attn_frames=4), BlockCausal(2, local_attn_frames=4)),
        (CacheLayout(chunk_frames=2, sink_frames=2, local_attn_frames=6), BlockCausal(2, 2, 6)),
    ],
)
def test_streaming_equals_block_causal(tiny_causal_wan, layout, mask):
    frames = 10
    x, text = _inputs(frames, seed=1)
    t = torch.rand(B, frames) * 1000
    with torch.no_grad():
        ref = tiny_causal_wan(x, t, text, block_causal=mask).sample
        out, _ = _stream(tiny_causal_wan, x, t, text, layout)
    assert (out - ref).abs().max() <= 1e-5


def test_streaming_needs_rope_offset(tiny_causal_wan, monkeypatch):
    """Without the temporal offset (every chunk at position 0) the streamed output departs from the reference."""
    frames = 6
    x, text = _inputs(frames, seed=2)
    t = torch.full((B, frames), 400.0)
    with torch.no_grad():
        ref = tiny_causal_wan(x, t, text, block_causal=BlockCausal(2)).sample
        monkeypatch.setattr(KVCache, "query_positions", lambda self: torch.arange(self._open[1]))
        monkeypatch.setattr(
            KVCache, "key_positions", lambda self: torch.arange(self._open[1]).repeat(1 + self.num_history_frames // 2)
        )
        out, _ = _stream(tiny_causal_wan, x, t, text, CacheLayout(chunk_frames=2))
    assert (out - ref).abs().max() > 1e-3


def test_gradient_reaches_current_chunk_only(tiny_causal_wan):
    x, text = _inputs(frames=4)
    t = torch.full((B, 4), 500.0)
    cache = KVCache.for_model(tiny_causal_wan, CacheLayout(chunk_frames=2))
    ctx = tiny_causal_wan.encode_text(text)
    with torch.no_grad():
        cache.append(0, 2)
        tiny_causal_wan(x[:, :, :2], t[:, :2], text_context=ctx, kv_cache=cache)
        cache.commit()
    chunk = x[:, :, 2:].clone().requires_grad_(True)
    cache.append(2, 2)
    out = tiny_causal_wan(chunk, t[:, 2:], text_context=ctx, kv_cache=cache).sample
    out.square().mean().backward()
    assert chunk.grad is not None and chunk.grad.abs().sum() > 0
    params = [p for p in tiny_causal_wan.parameters() if p.grad is not None]
    assert params, "parameters receive gradient through the exit-step forward"


# ---------------------------------------------------------------- optional small-model inputs


def _with_options(tiny_wan_kwargs, frames: int = 12) -> CausalWanModel:
    """A model with text_adaln and learned_positions, their zero-initialised weights moved off zero."""
    torch.manual_seed(0)
    model = CausalWanModel(**tiny_wan_kwargs, text_adaln=True, learned_positions=(frames, H // 2, W // 2)).eval()
    with torch.no_grad():
        for p in (model.text_adaln_proj.weight, model.pos_frame, model.pos_height, model.pos_width):
            p.normal_(0, 0.5)
    return model


def test_options_start_as_the_plain_model(tiny_wan_kwargs, tiny_causal_wan):
    """Zero-initialised, the extra inputs change nothing: same outputs as the stock-shaped model."""
    torch.manual_seed(0)
    model = CausalWanModel(**tiny_wan_kwargs, text_adaln=True, learned_positions=(6, H // 2, W // 2)).eval()
    missing = model.load_state_dict(tiny_causal_wan.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["pos_frame", "pos_height", "pos_width", "text_adaln_proj.bias", "text_adaln_proj.weight"]
    x, text = _inputs(6)
    t = torch.rand(B, 6) * 1000
    with torch.no_grad():
        assert torch.equal(model(x, t, text).sample, tiny_causal_wan(x, t, text).sample)


def test_options_reach_the_output_and_stream_like_block_causal(tiny_wan_kwargs):
    model = _with_options(tiny_wan_kwargs)
    frames = 12
    x, text = _inputs(frames, seed=2)
    t = torch.rand(B, frames) * 1000
    with torch.no_grad():
        mask = BlockCausal(2, local_attn_frames=6)
        ref = model(x, t, text, block_causal=mask).sample
        out, _ = _stream(model, x, t, text, CacheLayout(chunk_frames=2, local_attn_frames=6))
        model.text_adaln_proj.weight.zero_()
        without_film = model(x, t, text, block_causal=mask).sample
    assert (out - ref).abs().max() <= 1e-5  # learned frame positions follow the cache's positions
    assert (without_film - ref).abs().max() > 1e-3  # the prompt modulates the blocks


def test_learned_frame_positions_saturate_past_the_table(tiny_wan_kwargs):
    model = _with_options(tiny_wan_kwargs, frames=4)
    table = model._learned_positions(torch.arange(6), 1, 1)
    assert torch.equal(table[4], table[3]) and torch.equal(table[5], table[3])
    with pytest.raises(ValueError, match="cover 4x4 tokens"):
        model._learned_positions(torch.arange(2), 5, 4)


def test_gradient_checkpointing_streams_with_the_same_gradient(tiny_wan_kwargs):
    """A checkpointed block re-runs in backward after the stream moved on (chunk committed, next chunk opened,
    a chunk evicted): the gradient equals the one without checkpointing (paper rows train with it, A.8)."""
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = CausalWanModel(**tiny_wan_kwargs).train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        x, text = _inputs(frames=8, seed=5)
        t = torch.full((B, 8), 500.0)
        cache = KVCache.for_model(model, CacheLayout(chunk_frames=2, sink_frames=2, local_attn_frames=6))
        ctx = model.encode_text(text)
        with torch.no_grad():
            for start in (0, 2):
                cache.append(start, 2)
                model(x[:, :, start : start + 2], t[:, start : start + 2], text_context=ctx, kv_cache=cache)
                cache.commit()
        cache.append(4, 2)  # history: frames 0-3
        out = model(x[:, :, 4:6], t[:, 4:6], text_context=ctx, kv_cache=cache).sample
        cache.commit()
        with torch.no_grad():
            cache.append(6, 2)  # the stream moves on before the backward: frames 2-3 leave, history 0, 1, 4, 5
            model(x[:, :, 6:8], t[:, 6:8], text_context=ctx, kv_cache=cache)
        out.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-5)
