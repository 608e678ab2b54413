"""On CUDA: streaming equals block-causal, and bf16 streaming stays close to fp32 (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from streamvid.core.causal_wan import BlockCausal, CausalWanModel
from streamvid.core.generator import cast_keeping_fp32_modules
from streamvid.core.kv_cache import CacheLayout
from streamvid.core.sampler import GaussianNoise, StreamingSampler
from streamvid.core.schedule import FewStepSchedule

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _model(tiny_wan_kwargs):
    torch.manual_seed(0)
    return CausalWanModel(**tiny_wan_kwargs).eval().cuda()


def test_streaming_equals_block_causal_on_cuda(tiny_wan_kwargs):
    model = _model(tiny_wan_kwargs)
    x = torch.randn(2, 4, 8, 8, 8, device="cuda")
    text = torch.randn(2, 5, 16, device="cuda")
    t = torch.rand(2, 8, device="cuda") * 1000
    layout = CacheLayout(2, sink_frames=2, local_attn_frames=6)
    from streamvid.core.kv_cache import KVCache

    with torch.no_grad():
        ref = model(x, t, text, block_causal=BlockCausal(2, 2, 6)).sample
        cache, ctx, outs = KVCache.for_model(model, layout), model.encode_text(text), []
        for s in range(0, 8, 2):
            cache.append(s, 2)
            outs.append(model(x[:, :, s : s + 2], t[:, s : s + 2], text_context=ctx, kv_cache=cache).sample)
            cache.commit()
    assert (torch.cat(outs, 2) - ref).abs().max() <= 1e-4


def test_bf16_stream_close_to_fp32(tiny_wan_kwargs):
    model = _model(tiny_wan_kwargs)
    text = torch.randn(1, 5, 16, device="cuda")
    schedule, layout = FewStepSchedule.from_steps(), CacheLayout(2, sink_frames=2, local_attn_frames=6)
    with torch.no_grad():
        ref = StreamingSampler(model, schedule, layout).generate(text, (4, 8, 8), 8, noise=GaussianNoise(0))
        cast_keeping_fp32_modules(model, torch.bfloat16)
        out = StreamingSampler(model, schedule, layout).generate(text.bfloat16(), (4, 8, 8), 8, noise=GaussianNoise(0))
    assert (out.float() - ref).abs().mean() < 5e-2
