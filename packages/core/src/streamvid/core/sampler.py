"""`StreamingSampler`: the chunk loop of a few-step causal video generator.

For each chunk of `chunk_frames` latent frames (methods.md A.2.1 / B.4, Self-Forcing inference):

1. draw the chunk's initial noise from the `NoiseSource` (Stream-T1 plugs noise propagation in here);
2. for each listed timestep t_j: predict the flow with the KV cache, x0 = x_t - sigma_j * v, and unless it is
   the last step re-noise x0 to t_{j+1} with fresh noise: x = (1 - sigma_{j+1}) x0 + sigma_{j+1} eps;
3. run the **commit pass**: the model on x0 at t = `context_noise` (0: clean) rewrites the chunk's K/V, and the
   cache commits it to history;
4. hand the chunk to the callbacks and yield it.

The model only ever sees `(x_t, t, text, cache)`. There is no length limit when the cache has a window, and
the prompt can change between chunks (`StreamSession.switch_prompt`), optionally re-encoding the retained
history under the new prompt (LongLive's KV re-cache).

Latents are frame-major `[B, F, C, h, w]` at this interface (the model's diffusers layout is `[B, C, F, h, w]`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch

from streamvid.core.causal_wan import CausalWanModel, TextContext
from streamvid.core.kv_cache import CacheLayout, EvictionRouter, KVCache
from streamvid.core.schedule import FewStepSchedule, add_noise, flow_to_x0


@dataclass(frozen=True)
class ChunkInfo:
    """Where a chunk sits in the stream."""

    index: int  # chunk number, 0-based
    start_frame: int  # first latent frame
    num_frames: int


class NoiseSource(Protocol):
    """Supplies every Gaussian draw of a chunk: its initial noise (step -1) and the re-noising noise."""

    def __call__(
        self, chunk: ChunkInfo, step: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor: ...


class GaussianNoise:
    """i.i.d. N(0, I) from one `torch.Generator`, drawn on the CPU so results do not depend on the device."""

    def __init__(self, seed: int | None = None, generator: torch.Generator | None = None):
        if generator is None:
            generator = torch.Generator()
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(seed)
        self.generator = generator

    def __call__(self, chunk, step, shape, dtype, device) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=torch.float32).to(device=device, dtype=dtype)


@dataclass
class Chunk:
    """One generated chunk: clean latents `[B, n, C, h, w]` and where they belong."""

    info: ChunkInfo
    latents: torch.Tensor
    initial_noise: torch.Tensor  # [B, n, C, h, w], the draw that started the chunk


ChunkCallback = Callable[[Chunk], None]


@dataclass(frozen=True)
class SamplerSettings:
    """How a chunk is denoised.

    Attributes:
        context_noise: timestep of the commit pass (0 = clean re-encode, Self-Forcing / LongLive default).
        recache_on_switch: re-encode the retained history under a new prompt when it changes (LongLive).
    """

    context_noise: float = 0.0
    recache_on_switch: bool = True


class StreamingSampler:
    """Generates latent video chunk by chunk with a KV-cached causal Wan model."""

    def __init__(
        self,
        model: CausalWanModel,
        schedule: FewStepSchedule,
        layout: CacheLayout,
        settings: SamplerSettings = SamplerSettings(),
        router: EvictionRouter | None = None,
    ):
        self.model, self.schedule, self.layout, self.settings, self.router = model, schedule, layout, settings, router

    @property
    def chunk_frames(self) -> int:
        return self.layout.chunk_frames

    def session(
        self,
        text: TextContext | torch.Tensor,
        latent_shape: tuple[int, int, int],
        batch_size: int = 1,
        noise: NoiseSource | None = None,
        callbacks: list[ChunkCallback] | None = None,
    ) -> StreamSession:
        """Start a stream. `text` is a `TextContext` or text-encoder states `[B, L, D]`; `latent_shape` is (C, h, w)."""
        return StreamSession(self, text, latent_shape, batch_size, noise or GaussianNoise(), callbacks or [])

    def stream(
        self,
        text: TextContext | torch.Tensor,
        latent_shape: tuple[int, int, int],
        num_frames: int | None = None,
        batch_size: int = 1,
        noise: NoiseSource | None = None,
        callbacks: list[ChunkCallback] | None = None,
        prompt_switches: Mapping[int, TextContext | torch.Tensor] | None = None,
    ) -> Iterator[Chunk]:
        """Yield chunks as they are produced; endless when `num_frames` is None.

        `prompt_switches` maps a chunk index to the prompt used from that chunk on.
        """
        if num_frames is not None and num_frames % self.chunk_frames:
            raise ValueError(f"num_frames={num_frames} is not a multiple of chunk_frames={self.chunk_frames}")
        session = self.session(text, latent_shape, batch_size, noise, callbacks)
        switches = dict(prompt_switches or {})
        index = 0
        while num_frames is None or index * self.chunk_frames < num_frames:
            if index in switches:
                session.switch_prompt(switches[index])
            yield session.next_chunk()
            index += 1

    @torch.no_grad()
    def generate(self, text, latent_shape, num_frames: int, **kwargs) -> torch.Tensor:
        """All chunks concatenated: `[B, num_frames, C, h, w]`."""
        return torch.cat([c.latents for c in self.stream(text, latent_shape, num_frames, **kwargs)], dim=1)


@dataclass
class StreamSession:
    """The state of one stream: its cache, prompt, noise source and the clean latents still in the cache."""

    sampler: StreamingSampler
    text: TextContext | torch.Tensor
    latent_shape: tuple[int, int, int]
    batch_size: int
    noise: NoiseSource
    callbacks: list[ChunkCallback]
    cache: KVCache = field(init=False)
    chunk_index: int = field(init=False, default=0)
    _clean: dict[int, torch.Tensor] = field(init=False, default_factory=dict)  # frame -> [B, C, h, w]

    def __post_init__(self) -> None:
        model = self.sampler.model
        self.cache = KVCache.for_model(model, self.sampler.layout, self.sampler.router)
        self.text = self._as_context(self.text)

    def _as_context(self, text: TextContext | torch.Tensor) -> TextContext:
        ctx = text if isinstance(text, TextContext) else self.sampler.model.encode_text(text)
        if ctx.batch_size not in (1, self.batch_size):
            raise ValueError(f"prompt batch {ctx.batch_size} does not match batch_size {self.batch_size}")
        return ctx

    @property
    def next_start_frame(self) -> int:
        return self.chunk_index * self.sampler.chunk_frames

    def _forward(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Flow prediction for frame-major `x` `[B, n, C, h, w]` at one timestep, through the cache."""
        model = self.sampler.model
        timestep = torch.full((x.shape[0], x.shape[1]), float(t), device=x.device)
        flow = model(x.transpose(1, 2), timestep, text_context=self.text, kv_cache=self.cache).sample
        return flow.transpose(1, 2)

    @torch.no_grad()
    def next_chunk(self) -> Chunk:
        """Denoise, commit and return the next chunk."""
        s = self.sampler
        model = s.model
        param = next(model.parameters())
        n = s.chunk_frames
        info = ChunkInfo(self.chunk_index, self.next_start_frame, n)
        shape = (self.batch_size, n, *self.latent_shape)
        x = self.noise(info, -1, shape, param.dtype, param.device)
        initial = x
        self.cache.append(info.start_frame, n)
        timesteps = s.schedule.timesteps.tolist()
        x0 = x
        for j, t in enumerate(timesteps):
            x0 = flow_to_x0(x, self._forward(x, t), s.schedule.sigma(t))
            if j + 1 < len(timesteps):
                sigma_next = s.schedule.sigma(timesteps[j + 1])
                x = add_noise(x0, self.noise(info, j, shape, param.dtype, param.device), sigma_next)
        self._commit(info, x0, shape, param)
        chunk = Chunk(info, x0, initial)
        self.chunk_index += 1
        for callback in self.callbacks:
            callback(chunk)
        return chunk

    def _commit(self, info: ChunkInfo, x0: torch.Tensor, shape, param) -> None:
        """Commit pass at t = context_noise, then keep the clean latents the cache may need for re-caching."""
        s = self.sampler
        ctx_t = s.settings.context_noise
        x_ctx = x0
        if ctx_t > 0:
            x_ctx = add_noise(x0, self.noise(info, len(s.schedule), shape, param.dtype, param.device), s.schedule.sigma(ctx_t))
        self._forward(x_ctx, ctx_t)
        self.cache.commit()
        for i in range(info.num_frames):
            self._clean[info.start_frame + i] = x0[:, i]
        kept = set(self.cache.sink_frame_indices) | set(self.cache.window_frame_indices)
        self._clean = {f: v for f, v in self._clean.items() if f in kept}

    @torch.no_grad()
    def switch_prompt(self, text: TextContext | torch.Tensor) -> None:
        """Use a new prompt from the next chunk on; re-encode the cached history under it if configured."""
        self.text = self._as_context(text)
        if not self.sampler.settings.recache_on_switch or self.cache.num_history_frames == 0:
            return
        ctx_t = self.sampler.settings.context_noise

        def encode(frames: list[int]) -> None:
            x = torch.stack([self._clean[f] for f in frames], dim=1)
            self._forward(x, ctx_t)

        self.cache.recache(encode)
