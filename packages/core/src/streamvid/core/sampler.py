"""`StreamingSampler`: the chunk loop of a few-step causal video generator, in public steps.

For each chunk of `chunk_frames` latent frames (methods.md A.2.1 / B.4, Self-Forcing inference) a
`StreamSession` runs

1. `open_chunk()`: the KV cache opens the chunk's slot (`KVCache.append`; eviction happens here, once);
2. `initial_noise()`: the chunk's starting noise from the `NoiseSource` (Stream-T1 plugs noise propagation in);
3. for each listed timestep t_j, `denoise(x, j)`: predict the flow through the cache and return
   x0 = x_t - sigma_j * v; unless it is the last step, `renoise(x0, j)`: x = (1 - sigma_{j+1}) x0 + sigma_{j+1} eps
   with fresh noise;
4. `commit(x0)`: the **commit pass**, the model on x0 at t = `context_noise` (0: clean) rewrites the chunk's
   K/V and the cache commits it to history; the chunk goes to the callbacks.

`next_chunk()` is exactly that composition. Training and search call the steps themselves:

* the Self-Forcing rollout (A.2.1) runs steps 0..j-1 without gradient, the exit step `denoise(x, j, grad=True)`
  with gradient (through the current chunk only: history K/V are stored detached), then `commit`;
* beam search (B.2-B.4) opens the chunk on a beam (any eviction happens once), `fork()`s one session per
  candidate (the cache is shared copy-on-write; each fork owns its RNG, noise and clean buffers, so K candidates
  cost `history + K * chunk`), denoises each, and commits only the survivors; dropped forks free their memory.
  Or it denoises all candidates of several beams as one `CandidateBatch` (`candidate_batch`: one fork per beam
  read by all its rows; it has only the steps a batch may take) and commits each survivor on a fork of its
  beam (`CandidateBatch.survivor`).

Every session counts its model forwards per batch row by kind (`nfe`: ``denoise``, ``commit``, ``recache``),
so a search's budget ledger reads them instead of hooking the model. The eviction router is the sampler's
(`StreamingSampler(router=...)`), or a session's own (`session(router=...)`, `fork(router=...)`).

The model only ever sees `(x_t, t, text, cache)`. There is no length limit when the cache has a window, and
the prompt can change between chunks (`StreamSession.switch_prompt`; `PromptSwitch` is the one shape of a
scheduled switch), optionally re-encoding the retained history under the new prompt (LongLive's KV re-cache).

Latents are frame-major `[B, F, C, h, w]` at this interface (the model's diffusers layout is `[B, C, F, h, w]`).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from streamvid.core.cache_batch import CacheBatch
from streamvid.core.causal_wan import CausalWanModel, TextContext
from streamvid.core.kv_cache import AttentionCache, CacheLayout, EvictionRouter, KVCache
from streamvid.core.sampler_config import SamplerConfig, SamplerSettings
from streamvid.core.schedule import FewStepSchedule, add_noise, flow_to_x0

__all__ = [
    "CandidateBatch",
    "Chunk",
    "ChunkCallback",
    "ChunkInfo",
    "GaussianNoise",
    "NoiseSource",
    "PromptSwitch",
    "SamplerSettings",
    "StackedNoise",
    "StreamSession",
    "StreamingSampler",
    "candidate_batch",
]


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

    def fork(self) -> GaussianNoise:
        """An independent source that continues this one's stream: a new generator in the same state."""
        generator = torch.Generator()
        generator.set_state(self.generator.get_state())
        return GaussianNoise(generator=generator)


class StackedNoise:
    """A batch's noise: row r of every draw comes from ``sources[r]`` (drawn as its own ``[1, ...]`` tensor), so
    each row sees exactly the draws an independent batch-1 session with that source would see."""

    def __init__(self, sources: Sequence[NoiseSource]):
        self.sources = list(sources)

    def __call__(self, chunk, step, shape, dtype, device) -> torch.Tensor:
        if shape[0] != len(self.sources):
            raise ValueError(f"StackedNoise: a draw of batch {shape[0]} from {len(self.sources)} sources")
        return torch.cat([source(chunk, step, (1, *shape[1:]), dtype, device) for source in self.sources])


@dataclass
class Chunk:
    """One generated chunk: its latents `[B, n, C, h, w]` and where they belong.

    `latents` is the x0 handed to `commit`: it carries gradient when it came from a `denoise(..., grad=True)`
    step (the rollout's exit step), never otherwise.
    """

    info: ChunkInfo
    latents: torch.Tensor
    initial_noise: torch.Tensor  # [B, n, C, h, w], the draw that started the chunk


ChunkCallback = Callable[[Chunk], None]


@dataclass(frozen=True)
class PromptSwitch:
    """From chunk ``chunk`` on, the stream follows ``prompt`` (a multi-segment video).

    The one shape of a scheduled prompt switch, for the sampler (`StreamingSampler.stream`), the generator and
    the search. ``text`` is the prompt's encoding (text-encoder states `[B, L, D]` or a `TextContext`) where the
    consumer has no text encoder of its own (the sampler, the search); None where it encodes ``prompt`` itself
    (the generator). A CLI or YAML mapping ``{chunk: prompt}`` converts with `from_mapping`.
    """

    chunk: int
    prompt: str
    text: TextContext | torch.Tensor | None = None

    @staticmethod
    def from_mapping(switches: dict[int, str] | None) -> list[PromptSwitch]:
        """``{chunk: prompt}`` (the CLI / YAML form) as switches in chunk order."""
        return [PromptSwitch(int(k), p) for k, p in sorted((switches or {}).items())]

    def problem(self, num_chunks: int) -> str | None:
        """Why this switch does not fit a stream of ``num_chunks`` chunks, or None (callers name the switch)."""
        if not 0 < self.chunk < num_chunks:
            return f"a switch must name a chunk in 1..{num_chunks - 1}"
        if not self.prompt.strip():
            return "empty prompt"
        return None


class StreamingSampler:
    """Generates latent video chunk by chunk with a KV-cached causal Wan model."""

    def __init__(
        self,
        model: CausalWanModel,
        schedule: FewStepSchedule,
        layout: CacheLayout,
        settings: SamplerSettings | None = None,
        router: EvictionRouter | None = None,
    ):
        self.model, self.schedule, self.layout, self.router = model, schedule, layout, router
        self.settings = SamplerSettings() if settings is None else settings

    @classmethod
    def from_config(
        cls, model: CausalWanModel, cfg: SamplerConfig, router: EvictionRouter | None = None
    ) -> StreamingSampler:
        """The sampler a `SamplerConfig` describes: its warped schedule, its cache layout, and itself as settings."""
        return cls(model, cfg.schedule(), cfg.cache, cfg, router)

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
        router: EvictionRouter | None = None,
    ) -> StreamSession:
        """Start a stream. `text` is a `TextContext` or text-encoder states `[B, L, D]`; `latent_shape` is (C, h, w).

        Text states are encoded under torch's current grad mode (`CausalWanModel.encode_text`): start a training
        rollout's session with gradients enabled to train the text projections through its exit steps.
        ``router`` routes this stream's evictions (default: the sampler's ``router``).
        """
        return StreamSession(self, text, latent_shape, batch_size, noise or GaussianNoise(), callbacks or [],
                             router if router is not None else self.router)

    def stream(
        self,
        text: TextContext | torch.Tensor,
        latent_shape: tuple[int, int, int],
        num_frames: int | None = None,
        batch_size: int = 1,
        noise: NoiseSource | None = None,
        callbacks: list[ChunkCallback] | None = None,
        prompt_switches: Sequence[PromptSwitch] = (),
    ) -> Iterator[Chunk]:
        """Yield chunks as they are produced; endless when `num_frames` is None.

        `prompt_switches`: the prompts used from their chunks on (each with its ``text``).
        """
        if num_frames is not None and num_frames % self.chunk_frames:
            raise ValueError(f"num_frames={num_frames} is not a multiple of chunk_frames={self.chunk_frames}")
        session = self.session(text, latent_shape, batch_size, noise, callbacks)
        switches = {s.chunk: s for s in prompt_switches}
        if any(s.text is None for s in prompt_switches):
            raise ValueError("StreamingSampler.stream: every prompt switch needs its text (encode the prompt first)")
        index = 0
        while num_frames is None or index * self.chunk_frames < num_frames:
            if index in switches:
                session.switch_prompt(switches[index].text)
            yield session.next_chunk()
            index += 1

    @torch.no_grad()
    def generate(self, text, latent_shape, num_frames: int, **kwargs) -> torch.Tensor:
        """All chunks concatenated: `[B, num_frames, C, h, w]`."""
        return torch.cat([c.latents for c in self.stream(text, latent_shape, num_frames, **kwargs)], dim=1)


class _ChunkSteps:
    """The denoising steps of one open chunk, shared by a `StreamSession` and a `CandidateBatch`.

    Needs ``sampler``, ``text`` (a `TextContext`), ``latent_shape``, ``batch_size``, ``noise``, ``cache`` (an
    `AttentionCache`), ``nfe`` (a `Counter`) and the open chunk's ``_open`` / ``_initial``.
    """

    sampler: StreamingSampler
    text: TextContext
    latent_shape: tuple[int, int, int]
    batch_size: int
    noise: NoiseSource
    cache: AttentionCache
    nfe: Counter[str]
    """Model forwards run by this object, per batch row, by kind (``denoise`` / ``commit`` / ``recache``)."""
    _open: ChunkInfo | None
    _initial: torch.Tensor | None

    # ------------------------------------------------------------------ queries
    @property
    def num_steps(self) -> int:
        """Denoising steps per chunk (the length of the few-step schedule)."""
        return len(self.sampler.schedule)

    @property
    def open_info(self) -> ChunkInfo | None:
        """The open chunk (between `open_chunk` and `commit` / `discard`), else None."""
        return self._open

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """`(B, n, C, h, w)` of one chunk's latents."""
        return (self.batch_size, self.sampler.chunk_frames, *self.latent_shape)

    # ------------------------------------------------------------------ the denoising steps of the open chunk
    def initial_noise(self) -> torch.Tensor:
        """Draw the open chunk's starting noise `[B, n, C, h, w]` from this session's `NoiseSource` (step -1).

        The draw is recorded as the chunk's `initial_noise` (pass `commit(..., initial_noise=z)` when the chunk
        starts from another tensor, such as Stream-T1's propagated noise z = rho * z_parent + sqrt(1 - rho^2) eps).
        """
        self._initial = self._draw("initial_noise", -1)
        return self._initial

    def denoise(self, x_t: torch.Tensor, step: int, *, grad: bool = False) -> torch.Tensor:
        """One denoising step of the open chunk: x0 = x_t - sigma_j * v(x_t, t_j) (flow matching, v = eps - x0).

        Args:
            x_t: `[B, n, C, h, w]` latents at the schedule's timestep t_j.
            step: j, an index into the few-step schedule (0 = pure noise).
            grad: record the autograd graph of this forward (the rollout's exit step), even under
                `torch.no_grad()`; by default the step builds no graph, whatever the ambient mode. Gradient
                reaches the model's parameters through the current chunk only: the cached history K/V are
                detached, so earlier chunks contribute constants (methods.md A.2.1).
        Returns:
            `[B, n, C, h, w]` x0 prediction. The pass also (over)writes the chunk's K/V in the cache.
        """
        self._require_open("denoise")
        t = self._timestep(step)
        with torch.set_grad_enabled(grad):
            return flow_to_x0(x_t, self._forward(x_t, t, "denoise"), self.sampler.schedule.sigma(t))

    def renoise(self, x0: torch.Tensor, step: int) -> torch.Tensor:
        """Re-noise step j's x0 to the next listed timestep: x = (1 - sigma_{j+1}) x0 + sigma_{j+1} eps.

        eps is this session's `NoiseSource` draw `step` for the open chunk; `step` must not be the last one.
        """
        self._require_open("renoise")
        if not 0 <= step < self.num_steps - 1:
            raise ValueError(f"{type(self).__name__}.renoise: step {step} has no next timestep "
                             f"({self.num_steps} steps)")
        sigma_next = self.sampler.schedule.sigma(self._timestep(step + 1))
        return add_noise(x0, self._draw("renoise", step), sigma_next)

    @torch.no_grad()
    def denoise_from(self, z: torch.Tensor) -> torch.Tensor:
        """Every listed step of the open chunk from its initial noise z `[B, n, C, h, w]` (denoise, renoise, ...,
        denoise), without gradient; returns the final x0. `num_steps` forwards."""
        x = x0 = z
        for j in range(self.num_steps):
            x0 = self.denoise(x, j)
            if j + 1 < self.num_steps:
                x = self.renoise(x0, j)
        return x0

    # ------------------------------------------------------------------ internals
    def _forward(self, x: torch.Tensor, t: float, kind: str) -> torch.Tensor:
        """Flow prediction for frame-major `x` `[B, n, C, h, w]` at one timestep, through the cache; counted in
        ``nfe[kind]`` (one per batch row)."""
        model = self.sampler.model
        timestep = torch.full((x.shape[0], x.shape[1]), float(t), device=x.device)
        flow = model(x.transpose(1, 2), timestep, text_context=self.text, kv_cache=self.cache).sample
        self.nfe[kind] += x.shape[0]
        return flow.transpose(1, 2)

    def _timestep(self, step: int) -> float:
        if not 0 <= step < self.num_steps:
            raise ValueError(f"step {step} is outside the schedule's {self.num_steps} steps")
        return self.sampler.schedule.timesteps[step].item()

    def _require_open(self, op: str) -> ChunkInfo:
        if self._open is None:
            raise RuntimeError(f"{type(self).__name__}.{op}: no open chunk (call open_chunk() first)")
        return self._open

    def _draw(self, op: str, step: int) -> torch.Tensor:
        """The noise source's draw `step` for the open chunk, `[B, n, C, h, w]` in the model's dtype and device."""
        info = self._require_open(op)
        param = next(self.sampler.model.parameters())
        return self.noise(info, step, self.chunk_shape, param.dtype, param.device)


@dataclass(eq=False)
class StreamSession(_ChunkSteps):
    """The state of one stream: its cache, prompt, noise source, the open chunk, and the clean latents still in
    the cache (needed to re-encode history on a prompt switch).

    Steps of one chunk (see the module docstring): `open_chunk` -> `initial_noise` -> (`denoise` -> `renoise`)*
    -> `denoise` -> `commit` (or `discard`). All latents are frame-major `[B, n, C, h, w]`, n = `chunk_frames`.
    """

    sampler: StreamingSampler
    text: TextContext | torch.Tensor
    latent_shape: tuple[int, int, int]
    batch_size: int
    noise: NoiseSource
    callbacks: list[ChunkCallback]
    router: EvictionRouter | None = None
    """Routes the evictions of this stream's cache (None: the cache layout's policy)."""
    cache: KVCache = field(init=False)
    chunk_index: int = field(init=False, default=0)
    nfe: Counter[str] = field(init=False, default_factory=Counter)
    _clean: dict[int, torch.Tensor] = field(init=False, default_factory=dict)  # frame -> [B, C, h, w]
    _open: ChunkInfo | None = field(init=False, default=None)  # the chunk between open_chunk and commit
    _initial: torch.Tensor | None = field(init=False, default=None)  # the open chunk's initial noise

    def __post_init__(self) -> None:
        self.cache = KVCache.for_model(self.sampler.model, self.sampler.layout, self.router)
        self.text = self._as_context(self.text)

    def _as_context(self, text: TextContext | torch.Tensor) -> TextContext:
        ctx = text if isinstance(text, TextContext) else self.sampler.model.encode_text(text)
        if ctx.batch_size not in (1, self.batch_size):
            raise ValueError(f"prompt batch {ctx.batch_size} does not match batch_size {self.batch_size}")
        return ctx

    @property
    def next_start_frame(self) -> int:
        return self.chunk_index * self.sampler.chunk_frames

    # ------------------------------------------------------------------ open and close a chunk
    def open_chunk(self) -> ChunkInfo:
        """Open the next chunk: the cache appends its slot (evicting from the window first if needed).

        In beam search, open the chunk on the beam and then `fork()` the candidates, so the eviction (and an EMA
        merge's history copy) happens once per beam, not once per candidate.
        """
        if self._open is not None:
            raise RuntimeError(f"StreamSession.open_chunk: chunk {self._open.index} is still open (commit it first)")
        info = ChunkInfo(self.chunk_index, self.next_start_frame, self.sampler.chunk_frames)
        self.cache.append(info.start_frame, info.num_frames)
        self._open, self._initial = info, None
        return info

    @torch.no_grad()
    def commit(self, x0: torch.Tensor, initial_noise: torch.Tensor | None = None) -> Chunk:
        """Close the open chunk: the commit pass, the cache's commit, the callbacks.

        The commit pass runs the model on x0 at t = `context_noise` (re-noised first when > 0) without gradient,
        so the chunk's K/V enter history as constants (Self-Forcing's clean re-encode, A.2.1 step 3).

        Args:
            x0: `[B, n, C, h, w]` the chunk's final x0 (may carry gradient; it is returned as `Chunk.latents`).
            initial_noise: the chunk's starting noise to record; default: the `initial_noise()` draw.
        Returns:
            the `Chunk`, also handed to every callback.
        """
        info = self._require_open("commit")
        initial = self._initial if initial_noise is None else initial_noise
        if initial is None:
            raise RuntimeError("StreamSession.commit: no initial noise drawn or given for this chunk")
        s = self.sampler
        ctx_t = s.settings.context_noise
        x_ctx = x0
        if ctx_t > 0:
            x_ctx = add_noise(x0, self._draw("commit", len(s.schedule)), s.schedule.sigma(ctx_t))
        self._forward(x_ctx, ctx_t, "commit")
        self.cache.commit()
        clean = x0.detach()
        for i in range(info.num_frames):
            self._clean[info.start_frame + i] = clean[:, i]
        kept = set(self.cache.sink_frame_indices) | set(self.cache.window_frame_indices)
        self._clean = {f: v for f, v in self._clean.items() if f in kept}
        chunk = Chunk(info, x0, initial)
        self.chunk_index += 1
        self._open, self._initial = None, None
        for callback in self.callbacks:
            callback(chunk)
        return chunk

    def discard(self) -> None:
        """Close the open chunk without committing it (a rejected candidate). An eviction done by `open_chunk`
        is not undone."""
        self._require_open("discard")
        self.cache.discard()
        self._open, self._initial = None, None

    @torch.no_grad()
    def next_chunk(self) -> Chunk:
        """Denoise, commit and return the next chunk: the composition of the steps, without gradient."""
        self.open_chunk()
        return self.commit(self.denoise_from(self.initial_noise()))

    # ------------------------------------------------------------------ fork and prompt switch
    def fork(
        self, seed: int | None = None, noise: NoiseSource | None = None, router: EvictionRouter | None = None
    ) -> StreamSession:
        """A session that continues this stream from its current state, independently.

        The KV cache is forked copy-on-write (`KVCache.fork`: history shared read-only, copied only when the fork
        commits or EMA-merges); the fork has its own noise source, open-chunk state and clean-latent buffer (a
        new dict referencing the same, never-mutated, clean tensors), its own callback list and its own `nfe`
        count (from 0). K forks of a session with an open chunk therefore cost `history + K * chunk`. Dropping a
        fork frees its chunk buffers and releases its share of the history.

        Args:
            seed: the fork draws from `GaussianNoise(seed)` (Stream-T1: one seed per candidate).
            noise: or this noise source. With neither, the parent's source is forked (`noise.fork()`), so the
                fork's draws continue exactly where the parent's would.
            router: routes the fork's evictions from now on (default: the parent's router).
        """
        if seed is not None and noise is not None:
            raise ValueError("StreamSession.fork: give seed or noise, not both")
        if noise is None:
            if seed is not None:
                noise = GaussianNoise(seed)
            elif callable(getattr(self.noise, "fork", None)):
                noise = self.noise.fork()
            else:
                raise TypeError(
                    f"StreamSession.fork: the noise source {type(self.noise).__name__} has no fork(); "
                    "give the fork a seed or its own noise source"
                )
        child = copy.copy(self)
        child.cache = self.cache.fork()
        if router is not None:
            child.router = child.cache.router = router
        child.noise = noise
        child.callbacks = list(self.callbacks)
        child.nfe = Counter()
        child._clean = dict(self._clean)
        return child

    def switch_prompt(self, text: TextContext | torch.Tensor) -> None:
        """Use a new prompt from the next chunk on; re-encode the cached history under it if configured.

        Text states are encoded under the current grad mode (as at session start); the re-encode of history
        runs without gradient, one ``recache`` forward per re-encoded chunk group (`nfe`).
        """
        if self._open is not None:
            raise RuntimeError("StreamSession.switch_prompt: commit or discard the open chunk first")
        self.text = self._as_context(text)
        if not self.sampler.settings.recache_on_switch or self.cache.num_history_frames == 0:
            return
        ctx_t = self.sampler.settings.context_noise

        def encode(frames: list[int]) -> None:
            x = torch.stack([self._clean[f] for f in frames], dim=1)
            self._forward(x, ctx_t, "recache")

        with torch.no_grad():
            self.cache.recache(encode)


class CandidateBatch(_ChunkSteps):
    """Every candidate of the open chunk of several beams as one batch, for batched denoising forwards.

    Block p of the batch rows is ``parents[p]``'s candidates; row r of that block draws from
    ``GaussianNoise(seeds[p][r])``, so its draws equal those of ``parents[p].fork(seed=seeds[p][r])`` and its
    outputs equal that fork's (up to the float re-association of batched kernels). The cache is a `CacheBatch`
    of one fork per parent: each parent's history is stored once and read by all its rows (its module docstring
    says what a forward copies).

    A batch has only the steps of the open chunk: ``initial_noise`` / ``denoise`` / ``renoise`` /
    ``denoise_from`` (latents ``[B, n, C, h, w]``, B = total seeds). It cannot commit, fork or switch prompt: a
    survivor (row r) commits on ``parents[p].fork(noise=batch.row_noise(r))``, which continues that row's
    noise stream (the commit pass draws from it when ``context_noise > 0``).
    """

    def __init__(self, parents: Sequence[StreamSession], seeds: Sequence[Sequence[int]]):
        """
        Args:
            parents: batch-1 sessions with the same chunk open (``open_chunk`` on each beam first, so any
                eviction happens once per beam), sharing one prompt (the same `TextContext`) and the same key
                positions.
            seeds: per parent, its candidates' seeds (>= 1 each).
        Raises:
            ValueError: no parents, a parent with batch > 1, a closed chunk, different prompts or key positions.
        """
        if not parents or len(parents) != len(seeds):
            raise ValueError(f"candidate_batch: {len(parents)} parents for {len(seeds)} seed lists")
        first = parents[0]
        for i, parent in enumerate(parents):
            if parent.batch_size != 1:
                raise ValueError(f"candidate_batch: parent {i} has batch {parent.batch_size} "
                                 "(candidates fork batch-1 beams)")
            if parent.open_info is None or parent.open_info != first.open_info:
                raise ValueError(f"candidate_batch: parent {i} does not have the same chunk open as parent 0")
            if parent.text is not first.text:
                raise ValueError(f"candidate_batch: parent {i} streams another prompt than parent 0")
        self.sampler, self.text, self.latent_shape = first.sampler, first.text, first.latent_shape
        self.cache = CacheBatch([parent.cache.fork() for parent in parents], [len(s) for s in seeds])
        self.batch_size = self.cache.batch_size
        self.noise = StackedNoise([GaussianNoise(seed) for block in seeds for seed in block])
        self.nfe = Counter()
        self._open, self._initial = first.open_info, None

    def row_noise(self, row: int) -> NoiseSource:
        """Row ``row``'s noise stream, in its current state (a survivor's commit fork continues it)."""
        return self.noise.sources[row]


def candidate_batch(parents: Sequence[StreamSession], seeds: Sequence[Sequence[int]]) -> CandidateBatch:
    """The `CandidateBatch` of ``parents``' candidates, ``seeds[p]`` for parent p (see `CandidateBatch`)."""
    return CandidateBatch(parents, seeds)
