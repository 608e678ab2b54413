"""The studio's generation adapter: one live stream, chunk by chunk, through the project's streaming API.

This module is the only place where the studio touches generation, so it can move to a pipeline's chunk iterator
without the server noticing. A plain stream runs the sampler's public steps (`StreamingSampler.session`,
`StreamSession.next_chunk`, `StreamSession.switch_prompt`: what `StreamingSampler.stream` composes, with the
prompt switch decided live) and decodes with the codec's streaming decoder, exactly as `StreamVidPipeline.stream_video`
does; a searched stream (Stream-T1 or chunk-greedy) runs Stream-T1's `search_steps` iterator, the loop of
`streamvid-infer-t1`. Both give the same frames as the command a session's resolved config names
(`LiveStream.resolved_config`), which the tests check.

Everything here runs in a worker thread (torch, blocking); `LiveStream` is driven by one thread only: the server
calls `switch_prompt` between two `next()` calls of the same thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import torch

from streamvid.core.cli.generate import GenerateConfig
from streamvid.core.generator import build_generator, prompt_vocabulary, random_parts
from streamvid.core.pipeline import StreamVidPipeline
from streamvid.core.rewards import build_reward
from streamvid.core.rewards.base import RewardModel
from streamvid.core.sampler import GaussianNoise, PromptSwitch
from streamvid.studio.config import STRATEGIES, StudioConfig
from streamvid.tts.cli import InferT1Config
from streamvid.tts.search import SearchConfig, SearchResult, greedy_config, plan_for_budget, search_steps


class StreamError(ValueError):
    """A request the stream cannot follow (the message is shown to the user as it is)."""


@dataclass(frozen=True)
class StreamRequest:
    """What a client asked for: checked by `Engine.check` before a stream starts."""

    prompt: str
    seed: int
    strategy: str
    frames: int
    budget: float | None = None
    """Stream-T1 / greedy only: multiples of plain sampling's NFE."""


@dataclass
class ChunkEvent:
    """One chunk as the page shows it.

    ``pixels``: ``[n, 3, H, W]`` float in [0, 1], the chunk of the stream (plain) or of the current best beam
    (search). ``tree``: the chunk's candidates (`TreeNode.to_dict`: candidate, parent, seed, short, long, fused,
    ok, kept), ``survivors``: each surviving beam's candidate index, best first, ``routes``: the best beam's memory
    routes (evicted start frame -> route); all None / empty for plain streams.
    """

    chunk: int
    first_frame: int
    prompt: str
    pixels: torch.Tensor
    seconds: float
    """Wall time of this chunk (generation, scoring and decode)."""
    nfe: int
    """Denoiser forwards of the stream so far (denoise, commit and re-cache passes, every candidate)."""
    tree: list[dict] | None = None
    survivors: list[int] = field(default_factory=list)
    routes: dict[int, str] = field(default_factory=dict)
    best: dict[str, float] | None = None
    """The best beam's short / long / fused score of this chunk (search)."""


class Engine:
    """The generator (and the search reward) built once from a `StudioConfig`, shared by every stream.

    The model is read only during inference (each stream owns its session and KV cache), so worker threads share it.
    """

    def __init__(self, cfg: StudioConfig):
        self.cfg = cfg
        torch.set_num_threads(cfg.threads)
        prompts = [cfg.prompt] if cfg.prompt else []
        with torch.random.fork_rng(devices=[]):  # seeded random parts, as `streamvid-generate` builds them
            torch.manual_seed(cfg.init_seed)
            self.generator: StreamVidPipeline = build_generator(cfg.generator, vocabulary=prompt_vocabulary(prompts))
        self._reward: RewardModel | None = None
        self._short_reward: RewardModel | None = None

    @property
    def chunk_frames(self) -> int:
        return self.generator.sampler.chunk_frames

    def rewards(self) -> tuple[RewardModel, RewardModel | None]:
        """The search reward and short-term reward, built on first use."""
        if self._reward is None:
            self.cfg.reward.check_paths("reward")
            self._reward = build_reward(self.cfg.reward.config())
            if self.cfg.short_reward is not None:
                self.cfg.short_reward.check_paths("short_reward")
                self._short_reward = build_reward(self.cfg.short_reward.config())
        return self._reward, self._short_reward

    def search_config(self, request: StreamRequest) -> SearchConfig:
        """The search settings of a searched request: the budget planned on the config's search section."""
        budget = request.budget if request.budget is not None else 1.0
        search, n = plan_for_budget(request.strategy, budget, self.cfg.search)
        return search if request.strategy == "stream_t1" else greedy_config(n, self.cfg.search.seed)

    def check(self, request: StreamRequest) -> None:
        """Raise `StreamError` naming the field when the request cannot be streamed."""
        limits = self.cfg.studio
        if request.strategy not in STRATEGIES:
            raise StreamError(f"strategy: unknown strategy {request.strategy!r}; one of {', '.join(STRATEGIES)}")
        check_prompt(request.prompt, limits.max_prompt_chars, "prompt")
        chunk = self.chunk_frames
        if request.frames % chunk or not 0 < request.frames <= limits.max_frames:
            raise StreamError(f"frames: {request.frames} must be a multiple of the chunk size {chunk} in "
                              f"{chunk}..{limits.max_frames}")
        if request.strategy == "plain":
            return
        if request.budget is None or not 1 <= request.budget <= limits.max_budget:
            raise StreamError(f"budget: {request.budget} is out of range; {request.strategy} takes a budget in "
                              f"1..{limits.max_budget:g} (multiples of plain sampling's NFE)")
        if self.cfg.generator.checkpoint is None:
            raise StreamError(f"strategy: {request.strategy} needs a trained student (generator.checkpoint is null "
                              "in the server's config)")

    def open(self, request: StreamRequest) -> LiveStream:
        self.check(request)
        return LiveStream(self, request)


def check_prompt(prompt: object, max_chars: int, where: str) -> str:
    """The prompt, or `StreamError` naming ``where`` when it is not text, blank or longer than ``max_chars``."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise StreamError(f"{where}: the prompt is empty; type what the video shows, e.g. \"a red circle moving left\"")
    if len(prompt) > max_chars:
        raise StreamError(f"{where}: the prompt has {len(prompt)} characters, more than the {max_chars} allowed")
    return prompt


class LiveStream:
    """One stream: iterate for `ChunkEvent`s; `switch_prompt` between chunks; `close` frees its cache at once."""

    def __init__(self, engine: Engine, request: StreamRequest):
        self.engine, self.request = engine, request
        self.num_chunks = request.frames // engine.chunk_frames
        self.switches: list[PromptSwitch] = []  # read by the sampler loop / the search before each chunk
        self.chunks_done = 0
        self.nfe = 0
        self.result: SearchResult | None = None
        self._frames: list[torch.Tensor] = []  # plain: the streamed pixels, [n, 3, H, W] each
        self._events: Iterator[ChunkEvent] | None = None
        self.closed = False

    # ------------------------------------------------------------------ driving
    def __iter__(self) -> Iterator[ChunkEvent]:
        if self._events is None:
            self._events = self._plain() if self.request.strategy == "plain" else self._search()
        return self._events

    def switch_prompt(self, prompt: str) -> int:
        """Stream ``prompt`` from the next chunk on; returns that chunk. `StreamError` when no chunk is left or the
        prompt is refused."""
        check_prompt(prompt, self.engine.cfg.studio.max_prompt_chars, "prompt")
        chunk = max(1, self.chunks_done)  # the server switches between chunks, after the first one
        if self.closed or chunk >= self.num_chunks:
            raise StreamError("prompt: the stream has ended; start a new one to use another prompt")
        gen = self.engine.generator
        if self.request.strategy == "plain":
            text = gen.encode_prompts([prompt])  # as StreamVidPipeline.stream_video encodes a switch
        else:
            text = gen.text_encoder.encode([prompt]).embeddings.to(gen.device)  # as streamvid-infer-t1 does
        # in place: the search holds this list and reads it before each chunk
        self.switches[:] = [s for s in self.switches if s.chunk != chunk] + [PromptSwitch(chunk, prompt, text)]
        return chunk

    def close(self) -> None:
        """Stop and drop the session (its KV cache) and the search's beams now."""
        self.closed = True
        if self._events is not None:
            self._events.close()
        self._events, self.result, self._frames = None, None, []

    # ------------------------------------------------------------------ the two ways of streaming
    @torch.no_grad()
    def _plain(self) -> Iterator[ChunkEvent]:
        gen, req = self.engine.generator, self.request
        session = gen.sampler.session(gen.encode_prompts([req.prompt]), gen.latent_shape, 1, GaussianNoise(req.seed))
        decoder = gen.codec.decode_stream()
        prompt = req.prompt
        for k in range(self.num_chunks):
            start = time.perf_counter()
            switch = next((s for s in self.switches if s.chunk == k), None)
            if switch is not None:
                prompt = switch.prompt
                session.switch_prompt(switch.text)
            chunk = session.next_chunk()
            pixels = decoder.push(chunk.latents.float()).clamp(0, 1)[0]
            self._frames.append(pixels)
            self.chunks_done, self.nfe = k + 1, sum(session.nfe.values())
            yield ChunkEvent(k, chunk.info.start_frame, prompt, pixels, time.perf_counter() - start, self.nfe)

    @torch.no_grad()
    def _search(self) -> Iterator[ChunkEvent]:
        gen, req = self.engine.generator, self.request
        reward, short_reward = self.engine.rewards()
        text = gen.text_encoder.encode([req.prompt]).embeddings.to(gen.device)
        steps = search_steps(gen.sampler, text, req.prompt, gen.latent_shape, req.frames, reward, gen.codec,
                             self.engine.search_config(req), short_reward=short_reward, prompt_switches=self.switches)
        start = time.perf_counter()
        while True:
            try:
                step = next(steps)
            except StopIteration as done:
                self.result = done.value
                return
            best = step.beams[0]
            pixels = gen.codec.decode(best.latents[-1].float()).clamp(0, 1)[0]
            self.chunks_done, self.nfe = step.chunk + 1, step.ledger.nfe
            # the beams are the kept candidates best fused score first (the order of the search's top-k)
            kept = [n.candidate for n in sorted((n for n in step.level if n.kept),
                                                key=lambda n: -n.fused if n.fused is not None else 0.0)]
            yield ChunkEvent(step.chunk, step.chunk * self.engine.chunk_frames, step.prompt, pixels,
                             time.perf_counter() - start, self.nfe, [n.to_dict() for n in step.level],
                             kept, dict(best.routes),
                             {"short": best.short[-1], "long": best.long[-1], "fused": best.fused[-1]}
                             if best.fused else None)
            start = time.perf_counter()

    # ------------------------------------------------------------------ what a session leaves
    @property
    def complete(self) -> bool:
        return self.chunks_done == self.num_chunks and (self.request.strategy == "plain" or self.result is not None)

    def video(self) -> torch.Tensor:
        """The session's video ``[F, 3, H, W]`` in [0, 1]: the streamed frames (plain, possibly stopped early) or
        the search's final pick decoded whole, as `streamvid-infer-t1` writes it."""
        if self.request.strategy == "plain":
            if not self._frames:
                raise StreamError("download: no frame was generated yet")
            return torch.cat(self._frames)
        if self.result is None:
            raise StreamError("download: a search stopped before its end has no final pick; let it finish")
        with torch.no_grad():
            return self.engine.generator.codec.decode(self.result.best.video_latents()).clamp(0, 1)[0].cpu()

    def resolved_config(self) -> tuple[str, GenerateConfig | InferT1Config]:
        """(command, config) that regenerates `video()`: ``streamvid-generate`` for a plain stream (its frames so
        far), ``streamvid-infer-t1`` for a finished search; the prompt switches made live are in it."""
        cfg, req = self.engine.cfg, self.request
        if "text encoder" in random_parts(cfg.generator):
            raise StreamError("download: the server's text encoder has random weights drawn for its own vocabulary, "
                              "so the commands would build another one; set generator.text_encoder.path")
        switches = {s.chunk: s.prompt for s in sorted(self.switches, key=lambda s: s.chunk)
                    if s.chunk < self.chunks_done}
        if req.strategy == "plain":
            common = {f.name: getattr(cfg, f.name) for f in fields(GenerateConfig)}
            return "streamvid-generate", GenerateConfig(**common | {
                "prompt": req.prompt, "seed": req.seed, "num_frames": self.chunks_done * self.engine.chunk_frames,
                "prompt_switches": switches})
        if self.result is None:
            raise StreamError("download: a search stopped before its end has no final pick; let it finish")
        common = {f.name: getattr(cfg, f.name) for f in fields(InferT1Config)}
        # streamvid-infer-t1 plans the budget on `search` as `Engine.search_config` does
        return "streamvid-infer-t1", InferT1Config(**common | {
            "prompt": req.prompt, "strategy": req.strategy, "budget": req.budget, "num_frames": req.frames,
            "prompt_switches": switches})
