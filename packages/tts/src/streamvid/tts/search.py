"""Chunk-level search over a streaming student: Stream-T1 (methods.md B.2-B.6) and its baselines, on the chunk
loop's public steps (`StreamSession.open_chunk / fork / initial_noise / denoise / renoise / commit`).

One search = a beam of `Beam`s. For every chunk, each beam opens the chunk once (any eviction happens there,
routed by the beam's own memory flags), forks one child per candidate seed (the cache is shared copy-on-write),
denoises it from its propagated noise (B.3), and the pool of children is scored: the short-term reward of the new
chunk, the long-term reward of the last ``window`` chunks, fused with alpha = min(s / (F - 3), alpha_max) (B.5).
The global ``top_k`` survive and commit; their memory flags (B.6) route the chunks that later leave the window
(``ema`` -> EMA sink, ``append`` -> append sink while it has room, else drop). At the end the video reward picks
one beam. Everything is counted in a `BudgetLedger`.

Baselines are the same machinery with other settings, so they spend through the same ledger and rewards:
plain sampling is ``top_k = 1, children = 1``; chunk-greedy (Video-T1-like) is ``top_k = 1`` with N children,
no noise propagation and no memory routing; best-of-N (`best_of_n`) streams N whole videos and lets the video
reward pick.

The candidates of a chunk run as one batch (``batched``, default): the beams that hold their history at the
same key positions form one `CandidateBatch` (each beam's history stored once, read by all its children), so a
chunk costs ``steps`` batched forwards per group instead of ``steps`` per candidate. ``batched = False`` runs
one forked session per candidate instead; both give the same candidates (each draws from its own seed), up to
the float re-association of batched kernels.

A multi-segment video (``prompt_switches``, a list of `PromptSwitch`) switches every beam's prompt at the given
chunks; the rewards score each chunk against its own segment's prompt.

Wiring: each beam's eviction router (its memory flags, B.6) is given to its session through the sampler's
``router`` argument (`StreamSession.fork(router=...)`) and holds only the beam's flag and route tables; the
NFE ledger reads the forwards each session reports (`StreamSession.nfe`), so no model hook is needed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from streamvid.core.codecs.base import VideoCodec
from streamvid.core.config import ConfigError, check_choice
from streamvid.core.kv_cache import EvictedChunk, EvictionPolicy
from streamvid.core.rewards.base import RewardModel
from streamvid.core.sampler import (
    CandidateBatch,
    GaussianNoise,
    NoiseSource,
    PromptSwitch,
    StreamingSampler,
    StreamSession,
)
from streamvid.tts.ledger import BudgetLedger
from streamvid.tts.stream_t1_rules import (
    child_seed,
    fuse_scores,
    fusion_alpha,
    memory_flags,
    memory_route,
    propagate_noise,
)

__all__ = [
    "Beam",
    "PromptSwitch",
    "SearchConfig",
    "SearchError",
    "SearchResult",
    "SearchStep",
    "TreeNode",
    "best_of_n",
    "chunk_search",
    "greedy_config",
    "plain_config",
    "plan_for_budget",
    "search_steps",
]


class SearchError(RuntimeError):
    """Every candidate of a chunk failed to score; ``partial`` holds the beams produced so far."""

    def __init__(self, message: str, partial: list[Beam]):
        super().__init__(message)
        self.partial = partial


@dataclass
class SearchConfig:
    """Stream-T1's hyperparameters (B.7, shipped values) and the switches of its ablations and baselines."""

    children: int = 2
    """``beam_size``: children per surviving beam."""
    top_k: int = 2
    """Beams kept after each chunk."""
    chunk0_candidates: int | None = None
    """Candidates of chunk 0 (null: children x top_k = 4)."""
    window: int = 10
    """W: chunks in the long-term window (the new one included)."""
    tau_short: float = 0.0
    tau_long: float = 0.2
    rho: float = -0.1
    """``noise_fusion_sigma``: z = rho z_parent + sqrt(1 - rho^2) eps."""
    noise_mode: str = "linear"
    """linear | slerp."""
    alpha_max: float = 0.4
    normalise_scores: bool = True
    """z-score short and long scores within the pool before fusion (the reference fuses raw scales)."""
    noise_propagation: bool = True
    long_term: bool = True
    """Use the long-term window score (off: short-term only, alpha = 1)."""
    memory_sinking: bool = True
    """Route evicted chunks by their flags (off: the cache layout's own policy)."""
    reference_compat: bool = False
    """Reproduce the released code's quirks (child 0 reuses its parent's seed, all-history short average)."""
    batched: bool = True
    """Denoise the candidates of a chunk as one batch per group of beams with the same cache layout
    (`CandidateBatch`); false: one forked session after another (same results up to float re-association)."""
    seed: int = 42

    def __post_init__(self) -> None:
        if min(self.children, self.top_k, self.window) < 1:
            raise ConfigError(f"search: children, top_k and window must be >= 1, got {self.children}, "
                              f"{self.top_k}, {self.window}")
        if self.chunk0_candidates is not None and self.chunk0_candidates < 1:
            raise ConfigError("search.chunk0_candidates must be >= 1 (or null)")
        if not -1.0 <= self.rho <= 1.0 or not 0.0 <= self.alpha_max <= 1.0:
            raise ConfigError(f"search: need rho in [-1, 1] and alpha_max in [0, 1], got {self.rho}, {self.alpha_max}")
        check_choice("search.noise_mode", self.noise_mode, ("linear", "slerp"))

    @property
    def first_candidates(self) -> int:
        return self.chunk0_candidates or self.children * self.top_k


@dataclass
class Beam:
    """One surviving branch: its session (cache), its chunks and its score history."""

    session: StreamSession
    latents: list[torch.Tensor] = field(default_factory=list)  # per chunk [1, n, C, h, w]
    seed: int = 0
    last_noise: torch.Tensor | None = None  # initial noise of its last chunk (the parent noise of B.3)
    short: list[float] = field(default_factory=list)
    long: list[float] = field(default_factory=list)
    fused: list[float] = field(default_factory=list)
    flags: dict[int, dict[str, bool]] = field(default_factory=dict)  # start frame -> flags (B.6)
    routes: dict[int, str] = field(default_factory=dict)  # evicted start frame -> route taken
    final: float | None = None

    def video_latents(self) -> torch.Tensor:
        return torch.cat(self.latents, dim=1)


@dataclass
class TreeNode:
    """One candidate of one chunk in the search tree. The scores are None when the pool was not scored (nothing
    to choose and no memory routing); ``ok`` is False when its reward failed (it was dropped)."""

    candidate: int  # index in the chunk's pool
    parent: int  # index of its beam among the beams entering the chunk
    seed: int
    short: float | None = None
    long: float | None = None
    fused: float | None = None
    ok: bool | None = None
    kept: bool = False

    def to_dict(self) -> dict:
        """The JSON form (``<stem>.tree.json``): the fields that are set."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class SearchResult:
    best: Beam
    beams: list[Beam]
    ledger: BudgetLedger
    tree: list[list[TreeNode]]
    """Per chunk, every candidate."""

    def tree_dicts(self) -> list[list[dict]]:
        return [[node.to_dict() for node in level] for level in self.tree]


@dataclass(frozen=True, eq=False)
class _Router:
    """The eviction router of one beam: its stored flags decide each evicted chunk's route (B.6; no flags:
    drop), recorded in ``routes``. It holds the beam's flag and route tables, not the beam (no reference cycle)."""

    flags: dict[int, dict[str, bool]]
    routes: dict[int, str]
    max_sink: int
    chunk: int

    def __call__(self, evicted: EvictedChunk) -> EvictionPolicy:
        route = memory_route(self.flags.get(evicted.start_frame), evicted.sink_frames, self.max_sink, self.chunk)
        self.routes[evicted.start_frame] = route.value
        return route


@dataclass
class _Candidate:
    """One child of a chunk: its beam, seed, initial noise z, final x0 ``[1, n, C, h, w]`` and its noise stream
    (a survivor's commit continues it on a fork of its beam)."""

    beam: int
    seed: int
    z: torch.Tensor
    x0: torch.Tensor
    noise: NoiseSource


@dataclass
class _PoolScores:
    """The scores of one chunk's pool (B.5), each ``[N]`` float64; ``fused`` is -inf where ``ok`` is False."""

    short: torch.Tensor
    long: torch.Tensor
    fused: torch.Tensor
    ok: torch.Tensor


def _propagate(beams: list[Beam], rows: list[int], eps: torch.Tensor, cfg: SearchConfig) -> torch.Tensor:
    """B.3 row by row: z_r = propagate(parent noise of row r's beam, eps_r); eps ``[B, n, C, h, w]``."""
    out = []
    for r, b in enumerate(rows):
        parent = beams[b].last_noise if cfg.noise_propagation else None
        out.append(propagate_noise(parent, eps[r:r + 1], cfg.rho, cfg.noise_mode))
    return torch.cat(out)


def _run_steps(steps: StreamSession | CandidateBatch, rows: list[int], beams: list[Beam], cfg: SearchConfig,
               ledger: BudgetLedger) -> tuple[torch.Tensor, torch.Tensor]:
    """Propagated initial noise z and the few-step denoising of the open chunk from it, ``[B, n, C, h, w]``
    each; the forwards the session reports count as ``denoise`` NFE."""
    with ledger.timed("denoise"):
        z = _propagate(beams, rows, steps.initial_noise(), cfg)
        x0 = steps.denoise_from(z)
    ledger.forward("denoise", steps.nfe["denoise"])
    return z, x0


def _denoise_sequential(beams: list[Beam], seeds: list[list[int]], cfg: SearchConfig,
                        ledger: BudgetLedger) -> list[_Candidate]:
    """Each candidate on its own fork of its beam (the chunk is open on every beam), one after another."""
    out = []
    for b, beam in enumerate(beams):
        for seed in seeds[b]:
            child = beam.session.fork(seed=seed)
            z, x0 = _run_steps(child, [b], beams, cfg, ledger)
            out.append(_Candidate(b, seed, z, x0, child.noise))
    return out


def _denoise_batched(beams: list[Beam], seeds: list[list[int]], cfg: SearchConfig,
                     ledger: BudgetLedger) -> list[_Candidate]:
    """All candidates of beams that share a cache layout (key positions) as one `CandidateBatch`."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for b, beam in enumerate(beams):
        groups.setdefault(tuple(beam.session.cache.key_positions().tolist()), []).append(b)
    out: dict[int, list[_Candidate]] = {}
    for members in groups.values():
        batch = CandidateBatch([beams[b].session for b in members], [seeds[b] for b in members])
        rows = [b for b in members for _ in seeds[b]]
        z, x0 = _run_steps(batch, rows, beams, cfg, ledger)
        flat = [(b, seed) for b in members for seed in seeds[b]]
        for r, (b, seed) in enumerate(flat):
            out.setdefault(b, []).append(_Candidate(b, seed, z[r:r + 1], x0[r:r + 1], batch.row_noise(r)))
    return [c for b in range(len(beams)) for c in out[b]]  # beam order, as the sequential path


def _segments(prompt: str, text: torch.Tensor, switches: Sequence[PromptSwitch], chunks: int) -> list[PromptSwitch]:
    """The prompt segments in chunk order: chunk 0's prompt, then the switches (checked, each with its text)."""
    for s in switches:
        problem = s.problem(chunks)
        if problem is None and s.text is None:
            problem = "no text states (encode the prompt first)"
        if problem is not None:
            raise ValueError(f"prompt switch at chunk {s.chunk}: {problem}")
    return [PromptSwitch(0, prompt, text), *sorted(switches, key=lambda s: s.chunk)]


def _switch_prompt(beams: list[Beam], sampler: StreamingSampler, text: torch.Tensor, ledger: BudgetLedger) -> None:
    """Every beam streams the new prompt from here (one shared `TextContext`, so beams still batch together);
    the history re-encode (LongLive's KV re-cache, when configured) counts as ``recache`` forwards, as the
    sessions report them."""
    ctx = sampler.model.encode_text(text, grad=False)
    before = sum(beam.session.nfe["recache"] for beam in beams)
    with ledger.timed("recache"):
        for beam in beams:
            beam.session.switch_prompt(ctx)
    calls = sum(beam.session.nfe["recache"] for beam in beams) - before
    if calls:
        ledger.forward("recache", calls)


def _score(reward: RewardModel, pixels: torch.Tensor, prompts: list[str], ledger: BudgetLedger,
           name: str) -> torch.Tensor:
    """``reward.score`` of ``pixels [N, T, 3, H, W]``; NaN where the reward fails (the candidate is dropped)."""
    with ledger.timed("reward"), torch.no_grad():
        try:
            out = reward(pixels, prompts).score.detach().double().cpu()
        except Exception as err:  # noqa: BLE001 - a failing reward drops the candidates (counted by the caller)
            warnings.warn(f"reward '{name}' failed on {pixels.shape[0]} candidate(s), dropping them: "
                          f"{type(err).__name__}: {err}", stacklevel=2)
            out = torch.full((pixels.shape[0],), math.nan, dtype=torch.float64)
    ledger.reward(name, pixels.shape[0])
    return out


def _decode(codec: VideoCodec, latents: torch.Tensor, ledger: BudgetLedger) -> torch.Tensor:
    with ledger.timed("decode"), torch.no_grad():
        pixels = codec.decode(latents).clamp(0, 1)
    ledger.decode(latents.shape[0])
    return pixels


def _score_pool(candidates: list[_Candidate], beams: list[Beam], prompt: str, segment_start: int, alpha: float,
                short_reward: RewardModel, reward: RewardModel, codec: VideoCodec, cfg: SearchConfig,
                ledger: BudgetLedger) -> _PoolScores:
    """B.5: the short-term score of each new chunk, the long-term score of the last ``window`` chunks of its
    segment (the new one included), fused with ``alpha``."""
    prompts = [prompt] * len(candidates)
    chunk_lat = torch.cat([c.x0 for c in candidates])  # [N, n, C, h, w]
    short = _score(short_reward, _decode(codec, chunk_lat, ledger), prompts, ledger, "short")
    if cfg.long_term:
        windows = []
        for c in candidates:
            in_segment = beams[c.beam].latents[segment_start:]
            history = in_segment[-(cfg.window - 1):] if cfg.window > 1 else []
            windows.append(torch.cat([*history, c.x0], dim=1))
        frames = min(w.shape[1] for w in windows)
        long_lat = torch.cat([w[:, -frames:] for w in windows])
        long = _score(reward, _decode(codec, long_lat, ledger), prompts, ledger, "long")
    else:
        long, alpha = torch.zeros_like(short), 1.0
    ok = torch.isfinite(short) & torch.isfinite(long)
    fused = torch.full_like(short, -math.inf)
    if bool(ok.any()):
        fused[ok] = fuse_scores(short[ok], long[ok], alpha, cfg.normalise_scores)
    return _PoolScores(short, long, fused, ok)


def chunk_search(*args, on_chunk: Callable[[int], None] | None = None, **kwargs) -> SearchResult:
    """Stream-T1 search for one prompt (see the module docstring): `search_steps` run to the end.

    Takes `search_steps`'s arguments, and ``on_chunk``: called with the chunk index after each chunk (a progress
    bar). Returns the `SearchResult`.
    """
    steps = search_steps(*args, **kwargs)
    while True:
        try:
            step = next(steps)
        except StopIteration as done:
            return done.value
        if on_chunk is not None:
            on_chunk(step.chunk)


@dataclass
class SearchStep:
    """What one chunk of a search did, yielded by `search_steps` after the chunk's survivors committed."""

    chunk: int
    prompt: str
    """The prompt this chunk was generated and scored under."""
    level: list[TreeNode]
    """Every candidate of the chunk (the search tree's level ``chunk``)."""
    beams: list[Beam]
    """The surviving beams, best fused score first (``beams[0].latents[-1]``: the best candidate's chunk
    ``[1, n, C, h, w]``)."""
    ledger: BudgetLedger


@torch.no_grad()
def search_steps(
    sampler: StreamingSampler,
    text: torch.Tensor,
    prompt: str,
    latent_shape: tuple[int, int, int],
    num_frames: int,
    reward: RewardModel,
    codec: VideoCodec,
    cfg: SearchConfig | None = None,
    *,
    short_reward: RewardModel | None = None,
    final_reward: RewardModel | None = None,
    ledger: BudgetLedger | None = None,
    prompt_switches: Sequence[PromptSwitch] = (),
) -> Generator[SearchStep, None, SearchResult]:
    """Stream-T1 search chunk by chunk: yields a `SearchStep` after each chunk, returns the `SearchResult`.

    ``prompt_switches`` is read again before each chunk, so a caller that drives the iterator (a live view) may
    append a switch for a chunk that has not started yet.

    Args:
        sampler: the student's few-step sampler (its cache layout sets window, sink and max sink).
        text: text-encoder states ``[1, L, D]``; prompt: the prompt string (for the rewards).
        latent_shape: ``(C, h, w)``; num_frames: latent frames (a multiple of the chunk size).
        reward: the long-term reward; ``short_reward`` (default: the same) scores the new chunk,
            ``final_reward`` (default: the same) picks among the final beams.
        codec: latents -> pixels in [0, 1] (`decode`).
        cfg: the search settings (default: Stream-T1's shipped values).
        ledger: the budget ledger to spend through (default: a new one).
        prompt_switches: the prompts streamed from their chunks on, each with its text-encoder states
            ``[1, L, D]`` (a multi-segment video). Every beam switches (re-encoding its history when the sampler
            is configured to); rewards score each chunk against its segment's prompt, the long-term window and
            the drop test of B.6 stay inside the current segment, and the final pick averages the video reward
            over the segments, each against its own prompt.
    Returns:
        `SearchResult` with the chosen beam, all final beams, the ledger and the search tree.
    Raises:
        SearchError: every candidate of a chunk failed to score (``partial``: the beams so far).
    """
    # 1. Check the inputs; defaults
    cfg = cfg or SearchConfig()
    chunk = sampler.chunk_frames
    if num_frames % chunk:
        raise ValueError(f"num_frames={num_frames} is not a multiple of the chunk size {chunk}")
    num_chunks = num_frames // chunk
    short_reward, final_reward = short_reward or reward, final_reward or reward
    ledger = ledger or BudgetLedger()
    _segments(prompt, text, prompt_switches, num_chunks)  # check the switches given up front
    first = prompt
    max_sink = sampler.layout.sink_capacity

    # 2. The root beam: one stream of the first prompt
    root = sampler.session(sampler.model.encode_text(text, grad=False), latent_shape, 1, GaussianNoise(cfg.seed))
    beams: list[Beam] = [Beam(root, seed=cfg.seed)]
    tree: list[list[TreeNode]] = []
    segment_start = 0  # first chunk of the current prompt's segment (the long-term window stays inside it)

    for k in range(num_chunks):
        start = k * chunk
        # 3. A new segment: every beam switches prompt (and re-encodes its history when configured)
        switch = next((s for s in _segments(first, text, prompt_switches, num_chunks)[1:] if s.chunk == k), None)
        if switch is not None:
            prompt, segment_start = switch.prompt, k
            _switch_prompt(beams, sampler, switch.text, ledger)

        # 4. Open the chunk on every beam (an eviction, routed by the beam's flags, happens once per beam)
        for beam in beams:
            beam.session.open_chunk()

        # 5. Denoise every candidate from its propagated noise (B.2, B.3), batched or one by one
        n_children = cfg.first_candidates if k == 0 else cfg.children
        seeds = [[child_seed(cfg.seed, k, b, i, beam.seed, cfg.reference_compat) for i in range(n_children)]
                 for b, beam in enumerate(beams)]
        denoise = _denoise_batched if cfg.batched else _denoise_sequential
        candidates = denoise(beams, seeds, cfg, ledger)

        # 6. A pool with nothing to choose and no memory routing is not scored: every candidate commits
        if len(candidates) <= cfg.top_k and not cfg.memory_sinking:
            tree.append([TreeNode(i, c.beam, c.seed, kept=True) for i, c in enumerate(candidates)])
            beams = [_commit(beams[c.beam], c, ledger) for c in candidates]
            yield SearchStep(k, prompt, tree[-1], beams, ledger)
            continue

        # 7. Score the pool: short-term, long-term, fused (B.5)
        alpha = fusion_alpha(start, num_frames, chunk, cfg.alpha_max)
        pool = _score_pool(candidates, beams, prompt, segment_start, alpha, short_reward, reward, codec, cfg, ledger)
        if not bool(pool.ok.any()):
            raise SearchError(f"chunk {k}: every candidate's reward failed (non-finite or raised); "
                              f"kept the {start} latent frames produced so far", beams)
        keep = torch.argsort(pool.fused, descending=True)[: min(cfg.top_k, int(pool.ok.sum()))].tolist()
        tree.append([TreeNode(i, c.beam, c.seed, float(pool.short[i]), float(pool.long[i]), float(pool.fused[i]),
                              bool(pool.ok[i]), i in keep) for i, c in enumerate(candidates)])
        dropped = int((~pool.ok).sum())
        if dropped:
            ledger.reward("dropped_candidates", dropped)

        # 8. The top-k commit, best first, with their memory flags (B.6) routing the chunks that later leave
        beams = [_survive(beams[candidates[i].beam], candidates[i], pool, i, start, segment_start, k, max_sink,
                          chunk, cfg, ledger) for i in keep]
        yield SearchStep(k, prompt, tree[-1], beams, ledger)

    # 9. The final pick by the video reward (nothing to pick from one beam)
    if len(beams) == 1:
        return SearchResult(beams[0], beams, ledger, tree)
    segments = _segments(first, text, prompt_switches, num_chunks)
    return SearchResult(_pick(beams, segments, chunk, final_reward, codec, ledger), beams, ledger, tree)


def _survive(parent: Beam, c: _Candidate, pool: _PoolScores, i: int, start: int, segment_start: int, k: int,
             max_sink: int, chunk: int, cfg: SearchConfig, ledger: BudgetLedger) -> Beam:
    """Candidate ``i`` survives: its memory flags (B.6), its router, its commit, its score history."""
    short, long = float(pool.short[i]), float(pool.long[i])
    # a new segment starts its long-term history afresh (the drop test compares within one prompt)
    prev_long = parent.long[-1] if parent.long and k > segment_start else None
    flags = {**parent.flags, start: memory_flags(short, parent.short[segment_start:], prev_long, long,
                                                 cfg.tau_short, cfg.tau_long, cfg.window, cfg.reference_compat)}
    beam = _commit(parent, c, ledger, flags, max_sink if cfg.memory_sinking else None, chunk)
    beam.short, beam.long, beam.fused = [*parent.short, short], [*parent.long, long], [*parent.fused, float(pool.fused[i])]
    return beam


def _pick(beams: list[Beam], segments: list[PromptSwitch], chunk: int, reward: RewardModel, codec: VideoCodec,
          ledger: BudgetLedger) -> Beam:
    """The final pick: the video reward of each beam (the mean over prompt segments, each scored against its
    own prompt), stored in ``Beam.final``; the best finite one wins."""
    total = torch.zeros(len(beams), dtype=torch.float64)
    for i, segment in enumerate(segments):
        end = segments[i + 1].chunk * chunk if i + 1 < len(segments) else None
        videos = torch.cat([beam.video_latents()[:, segment.chunk * chunk: end] for beam in beams])
        total += _score(reward, _decode(codec, videos, ledger), [segment.prompt] * len(beams), ledger, "final")
    for beam, score in zip(beams, (total / len(segments)).tolist(), strict=True):
        beam.final = score
    return max(beams, key=lambda bm: bm.final if math.isfinite(bm.final) else -math.inf)


def _commit(parent: Beam, c: _Candidate, ledger: BudgetLedger, flags: dict[int, dict[str, bool]] | None = None,
            max_sink: int | None = None, chunk: int = 0) -> Beam:
    """The commit pass of a surviving candidate on a fork of its beam that continues the candidate's noise
    stream; the new beam inherits the parent's scores, flags (or ``flags``) and routes. With ``max_sink`` the
    fork's evictions are routed by the new beam's flags (`_Router`); else by the parent's router."""
    flags = dict(parent.flags) if flags is None else flags
    routes = dict(parent.routes)
    router = _Router(flags, routes, max_sink, chunk) if max_sink is not None else None
    with ledger.timed("commit"):
        session = parent.session.fork(noise=c.noise, router=router)
        session.commit(c.x0, initial_noise=c.z)
    ledger.forward("commit", session.nfe["commit"])
    return Beam(session, [*parent.latents, c.x0], c.seed, c.z, list(parent.short), list(parent.long),
                list(parent.fused), flags, routes)


def plain_config(seed: int = 42) -> SearchConfig:
    """Plain sampling through the search machinery: one candidate per chunk, no routing."""
    return SearchConfig(children=1, top_k=1, chunk0_candidates=1, noise_propagation=False, memory_sinking=False,
                        long_term=False, seed=seed)


def greedy_config(n: int, seed: int = 42) -> SearchConfig:
    """Chunk-greedy search (Video-T1-like): n children of one beam per chunk, best kept; no propagation / memory."""
    return SearchConfig(children=n, top_k=1, chunk0_candidates=n, noise_propagation=False, memory_sinking=False,
                        seed=seed)


@torch.no_grad()
def best_of_n(sampler: StreamingSampler, text: torch.Tensor, prompt: str, latent_shape: tuple[int, int, int],
              num_frames: int, reward: RewardModel, codec: VideoCodec, n: int, seed: int = 42, *,
              ledger: BudgetLedger | None = None, on_chunk: Callable[[int], None] | None = None,
              prompt_switches: Sequence[PromptSwitch] = ()) -> SearchResult:
    """N whole videos streamed independently (seeds seed + 1000 i), the video reward picks one (per segment
    against its own prompt, averaged, as `chunk_search`'s final pick)."""
    ledger = ledger or BudgetLedger()
    beams = []
    for i in range(n):
        result = chunk_search(sampler, text, prompt, latent_shape, num_frames, reward, codec,
                              plain_config(seed + 1000 * i), ledger=ledger, on_chunk=on_chunk,
                              prompt_switches=prompt_switches)
        beams.append(result.best)
    segments = _segments(prompt, text, prompt_switches, num_frames // sampler.chunk_frames)
    return SearchResult(_pick(beams, segments, sampler.chunk_frames, reward, codec, ledger), beams, ledger, [])


def plan_for_budget(strategy: str, multiple: float, base: SearchConfig | None = None) -> tuple[SearchConfig, int]:
    """The settings that spend about ``multiple`` x the NFE of plain sampling: (search config, n).

    ``best_of_n`` / ``greedy``: n = floor(multiple) videos / children per chunk. ``stream_t1``: top_k = 2 beams
    (1 below 2x) and floor(multiple / top_k) children each, chunk 0 with children x top_k candidates; other
    settings from ``base``. ``plain`` needs a multiple >= 1. Raises `ConfigError` below one plain sample.
    """
    if multiple < 1:
        raise ConfigError(f"budget {multiple}x is smaller than one plain sample (1x)")
    base = base or SearchConfig()
    n = int(math.floor(multiple))
    if strategy == "plain":
        return plain_config(base.seed), 1
    if strategy in ("best_of_n", "greedy"):
        return greedy_config(n, base.seed), n
    if strategy != "stream_t1":
        raise ConfigError(f"unknown strategy {strategy!r}")
    top_k = 2 if multiple >= 2 else 1
    children = max(1, int(math.floor(multiple / top_k)))
    return replace(base, top_k=top_k, children=children, chunk0_candidates=children * top_k), n
