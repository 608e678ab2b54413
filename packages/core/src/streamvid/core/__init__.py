"""streamvid.core: the causal Wan backbone, KV cache, streaming sampler, codecs, text encoders, rewards, config.

The public names below are imported on first use (`streamvid.core.lazy`), so ``import streamvid.core.config``
does not pull in diffusers. Start with the pipeline::

    from streamvid.core import StreamVidPipeline

    pipe = StreamVidPipeline.from_pretrained("assets/shapes/stream_r1_student")
    video = pipe("a red circle moving left", num_frames=12, seed=0).frames[0]  # [T, H, W, 3] in [0, 1]
"""

from streamvid.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "StreamVidPipeline": "streamvid.core.pipeline",
    "StreamVidPipelineOutput": "streamvid.core.pipeline",
    "VideoSearch": "streamvid.core.pipeline",
    "build_generator": "streamvid.core.generator",
    "GeneratorConfig": "streamvid.core.generator_config",
    "CodecConfig": "streamvid.core.generator_config",
    "TextEncoderConfig": "streamvid.core.generator_config",
    "WanModelConfig": "streamvid.core.model_config",
    "SamplerConfig": "streamvid.core.sampler_config",
    "CacheLayout": "streamvid.core.kv_cache",
    "KVCache": "streamvid.core.kv_cache",
    "CausalWanModel": "streamvid.core.causal_wan",
    "StreamingSampler": "streamvid.core.sampler",
    "StreamSession": "streamvid.core.sampler",
    "PromptSwitch": "streamvid.core.sampler",
    "GaussianNoise": "streamvid.core.sampler",
    "load_config": "streamvid.core.config",
    "ConfigError": "streamvid.core.config",
    "build_reward": "streamvid.core.rewards",
    "read_video": "streamvid.core.video_io",
    "write_video": "streamvid.core.video_io",
})
