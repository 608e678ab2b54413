"""Self-attention KV cache for chunk-by-chunk (streaming) generation.

The cache holds, for every transformer layer, un-roped keys and values of

* a **sink**: the first `sink_frames` frames of the video, pinned (LongLive / Reward Forcing), plus chunks
  appended to it later by the `append_sink` policy (Stream-T1), up to `max_sink_frames`;
* a **rolling window** of the most recent committed frames;
* the **current chunk**, in its own buffer, rewritten by every denoising pass of that chunk.

RoPE is applied when keys are read (`key_positions`), so a frame can sit at its original position
(`rope_positions="absolute"`) or at a position relative to the cache (`"relative"`: sink at 0.., window right
after it), and the video length is never capped by a position table.

State machine (one chunk at a time)::

    idle --append(start, n)--> open --write(layer, k, v)*--> open --commit()--> idle
                                     (history(layer) reads the past)
           (evicts first when the          (first pass fills the      (current chunk -> history)
            window would overflow)          slot; later passes
                                            overwrite it)
    idle --recache(encode)--> idle   (prompt switch: history re-encoded in chronological order)

Window arithmetic is the reference's (Self-Forcing / LongLive / Reward Forcing `local_attn_size`, `sink_size`):
`local_attn_frames` counts every attended frame, the sink and the current chunk included, so the rolling part
is `local_attn_frames - sink_frames` frames (Reward Forcing 9 = 3 sink + 6 recent; LongLive 12 = 3 + 9).

Invariants (asserted in tests): at most `rolling - chunk` history frames outside the sink once a chunk is
open, so the attended span is at most `local_attn_frames` frames (plus any sink grown by `append_sink`); `write` only in `open`; `commit` only after every layer was
written; a `fork()` shares history storage read-only and copies it only when it (or the parent) mutates it, so K
candidates of one chunk cost `history + K * chunk`, not `K * history`.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

import torch

from streamvid.core.config import ConfigError, check_choice


class EvictionPolicy(str, Enum):
    """What happens to a chunk that leaves the rolling window."""

    DROP = "drop"  # forget it
    EMA_SINK = "ema_sink"  # sink <- alpha * sink + (1 - alpha) * evicted   (Reward Forcing, EMA-sink)
    APPEND_SINK = "append_sink"  # keep it as extra sink at its original position (Stream-T1 memory sinking)


@dataclass(frozen=True)
class EvictedChunk:
    """The chunk leaving the window, handed to the eviction router."""

    start_frame: int
    num_frames: int
    sink_frames: int = 0
    """Frames in the cache's sink when the chunk leaves (before it is routed), so a router needs no cache."""


EvictionRouter = Callable[[EvictedChunk], EvictionPolicy]


def _local_attn_from_window(value: int | None, current) -> tuple[str, int | None]:
    """Migration of the old `window_frames: w` (recent frames attended *besides* the sink) to
    `local_attn_frames: sink_frames + w`, with the `sink_frames` composed so far (same layer included)."""
    return "local_attn_frames", None if value is None else int(current["sink_frames"]) + int(value)


@dataclass(frozen=True)
class CacheLayout:
    """Geometry and policies of a `KVCache`, in latent frames.

    This one dataclass is both the runtime layout and the config schema of the `cache:` section of
    `configs/sampler/*.yaml` (`SamplerConfig.cache`), so every field is declared once, here.
    """

    chunk_frames: int = 3
    """Latent frames generated per chunk (Self-Forcing chunk-wise: 3)."""
    sink_frames: int = 0
    """Leading frames pinned as attention sink (0 = no sink; LongLive / Reward Forcing: 3)."""
    local_attn_frames: int | None = None
    """Frames attended in total, **the sink and the current chunk included** (the reference's
    `local_attn_size`); null = all history (Self-Forcing's global attention; an unbounded stream needs a
    window). The rolling part is `local_attn_frames - sink_frames`: Reward Forcing / Stream-R1 9 = 3 sink +
    6 recent, LongLive and Stream-T1 12 = 3 + 9 (a sink grown by `append_sink` adds to it, methods.md B.6).
    Replaces `window_frames` (recent frames besides the sink), which old configs still load as
    `local_attn_frames = sink_frames + window_frames` (`_legacy_keys`)."""
    max_sink_frames: int | None = None
    """Cap on the sink when `append_sink` grows it (Stream-T1: 15); null = `sink_frames`."""
    eviction: str = EvictionPolicy.DROP.value
    """Policy for chunks leaving the window when no router is given: drop | ema_sink | append_sink."""
    ema_alpha: float = 0.999
    """Sink weight of the EMA merge, sink <- a*sink + (1-a)*evicted (0.999 in Reward Forcing and Stream-T1)."""
    ema_target: str = "newest"
    """Sink chunk the EMA merge updates: newest (Stream-T1) | oldest (Reward Forcing)."""
    rope_positions: str = "absolute"
    """absolute (each frame at its index) | relative (re-based on the cache: sink at 0.., window right after;
    no drift of relative distances over unbounded streams)."""

    _legacy_keys = {"window_frames": _local_attn_from_window}
    """Renamed keys read by `config.load_config` (not a field): old name -> (value, node) -> (new name, value)."""

    def __post_init__(self) -> None:
        # An `EvictionPolicy` member is accepted and stored as its plain value, so that the layout writes back
        # to YAML as `drop` / `ema_sink` / `append_sink`.
        if isinstance(self.eviction, EvictionPolicy):
            object.__setattr__(self, "eviction", self.eviction.value)
        check_choice("eviction", self.eviction, [p.value for p in EvictionPolicy])
        check_choice("ema_target", self.ema_target, ("newest", "oldest"))
        check_choice("rope_positions", self.rope_positions, ("absolute", "relative"))
        if self.chunk_frames < 1:
            raise ConfigError(f"'chunk_frames' must be >= 1, got {self.chunk_frames}")
        if self.sink_frames < 0:
            raise ConfigError(f"'sink_frames' must be >= 0, got {self.sink_frames}")
        if self.local_attn_frames is not None and self.local_attn_frames < self.sink_frames + self.chunk_frames:
            raise ConfigError(
                f"'local_attn_frames' ({self.local_attn_frames}) must be >= sink_frames + chunk_frames "
                f"({self.sink_frames} + {self.chunk_frames}): it counts the sink and the current chunk"
            )
        if self.max_sink_frames is not None and self.max_sink_frames < self.sink_frames:
            raise ConfigError(f"'max_sink_frames' ({self.max_sink_frames}) < sink_frames ({self.sink_frames})")

    @property
    def policy(self) -> EvictionPolicy:
        """`eviction` as an `EvictionPolicy`."""
        return EvictionPolicy(self.eviction)

    @property
    def sink_capacity(self) -> int:
        return self.sink_frames if self.max_sink_frames is None else self.max_sink_frames

    @property
    def rolling_frames(self) -> int | None:
        """Recent frames attended besides the sink, current chunk included: `local_attn_frames - sink_frames`
        (the reference's rolling window); None = unbounded."""
        if self.local_attn_frames is None:
            return None
        return self.local_attn_frames - self.sink_frames

    @property
    def history_capacity(self) -> int | None:
        """Frame slots of committed history; None = unbounded.

        A committed chunk stays in the window until the next `append` decides its fate (the router may
        want to keep it), so the rolling part needs `rolling_frames` slots, not `rolling_frames - chunk`.
        """
        if self.rolling_frames is None:
            return None
        return self.sink_capacity + self.rolling_frames


@runtime_checkable
class AttentionCache(Protocol):
    """What `CausalWanModel.forward` reads and writes in streaming mode, one open chunk at a time.

    Implemented by `KVCache` (one stream) and `CacheBatch` (forked caches of several beams read as one batch);
    both are checked by one contract test (tests/unit/test_attention_cache.py).
    """

    def query_positions(self) -> torch.Tensor:
        """`[n]` RoPE positions of the open chunk's frames."""
        ...

    def key_positions(self) -> torch.Tensor:
        """`[F_k]` RoPE positions of the readable history, then of the open chunk."""
        ...

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store the open chunk's un-roped K/V of one layer, `[B, n*T, heads, head_dim]`."""
        ...

    def history(self, layer: int, broadcast: bool = True) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Un-roped history K/V of one layer, `[B or 1, F_hist*T, heads, head_dim]`, in `key_positions()`
        order (one row, shared by the batch, only with ``broadcast=False``); None without readable history."""
        ...


class _Storage:
    """History tensors `[layers, B, slots * tokens_per_frame, heads, head_dim]`, shared copy-on-write."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.keys, self.values = keys, values
        self.owners: weakref.WeakSet[KVCache] = weakref.WeakSet()


class KVCache:
    """Per-layer self-attention keys/values of a stream (see the module docstring for the state machine)."""

    def __init__(
        self,
        layout: CacheLayout,
        num_layers: int,
        num_heads: int,
        head_dim: int,
        router: EvictionRouter | None = None,
    ):
        self.layout, self.num_layers, self.num_heads, self.head_dim = layout, num_layers, num_heads, head_dim
        self.router = router
        self.tokens_per_frame: int | None = None
        self._storage: _Storage | None = None
        self._slot_frame: list[int | None] = []  # absolute frame index held by each history slot
        self._sink: list[int] = []  # history slots of the sink, in sink order
        self._window: list[int] = []  # history slots of the rolling window, oldest first
        self._current: tuple[torch.Tensor, torch.Tensor] | None = None  # [layers, B, chunk_tokens, H, D]
        self._open: tuple[int, int] | None = None  # (start_frame, num_frames) of the open chunk
        self._written: set[int] = set()
        self._rewrite_slots: list[int] | None = None  # target slots while recaching one group
        self._visible: set[int] | None = None  # slots readable while recaching (None = all)
        self.evictions: list[tuple[EvictedChunk, EvictionPolicy]] = []

    @classmethod
    def for_model(cls, model: torch.nn.Module, layout: CacheLayout, router: EvictionRouter | None = None) -> KVCache:
        """Size the cache from a Wan transformer's config (layers, heads, head dim)."""
        cfg = model.config
        return cls(layout, cfg.num_layers, cfg.num_attention_heads, cfg.attention_head_dim, router)

    # ------------------------------------------------------------------ queries
    @property
    def is_open(self) -> bool:
        return self._open is not None

    @property
    def open_span(self) -> tuple[int, int] | None:
        """`(start_frame, num_frames)` of the open chunk, else None."""
        return self._open

    @property
    def sink_frame_indices(self) -> list[int]:
        return [self._slot_frame[s] for s in self._sink]

    @property
    def window_frame_indices(self) -> list[int]:
        return [self._slot_frame[s] for s in self._window]

    @property
    def num_history_frames(self) -> int:
        return len(self._sink) + len(self._window)

    def _readable_slots(self) -> list[int]:
        slots = self._sink + self._window
        return slots if self._visible is None else [s for s in slots if s in self._visible]

    def _relative_position(self) -> dict[int, int]:
        return {slot: i for i, slot in enumerate(self._sink + self._window)}

    def key_positions(self) -> torch.Tensor:
        """`[F_k]` RoPE positions of the frames `read()` returns: readable history, then the current chunk."""
        slots = self._readable_slots()
        if self.layout.rope_positions == "absolute":
            hist = [self._slot_frame[s] for s in slots]
        else:
            rel = self._relative_position()
            hist = [rel[s] for s in slots]
        return torch.tensor(hist + self.query_positions().tolist(), dtype=torch.long)

    def query_positions(self) -> torch.Tensor:
        """`[n]` RoPE positions of the open chunk's frames."""
        if self._open is None:
            raise RuntimeError("KVCache: no open chunk (call append() first)")
        start, n = self._open
        if self._rewrite_slots is not None:
            if self.layout.rope_positions == "absolute":
                return torch.tensor([self._slot_frame[s] for s in self._rewrite_slots], dtype=torch.long)
            rel = self._relative_position()
            return torch.tensor([rel[s] for s in self._rewrite_slots], dtype=torch.long)
        if self.layout.rope_positions == "absolute":
            return torch.arange(start, start + n)
        first = self.num_history_frames
        return torch.arange(first, first + n)

    def memory_bytes(self) -> int:
        """Bytes of tensors this cache holds (shared history counted in full)."""
        total = 0
        if self._storage is not None:
            total += self._storage.keys.nbytes + self._storage.values.nbytes
        if self._current is not None:
            total += self._current[0].nbytes + self._current[1].nbytes
        return total

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor held, for memory accounting across forks (dedupe by `data_ptr`)."""
        out = []
        if self._storage is not None:
            out += [self._storage.keys, self._storage.values]
        if self._current is not None:
            out += list(self._current)
        return out

    # ------------------------------------------------------------------ state machine
    def append(self, start_frame: int, num_frames: int) -> None:
        """Open a new chunk at `start_frame` (absolute latent frame index); evicts first if needed."""
        if self._open is not None:
            raise RuntimeError(f"KVCache.append: chunk at frame {self._open[0]} is still open (commit it first)")
        if num_frames > self.layout.chunk_frames and self.layout.local_attn_frames is not None:
            raise ValueError(f"chunk of {num_frames} frames exceeds layout.chunk_frames={self.layout.chunk_frames}")
        self._evict_until_fits(num_frames)
        self._open = (start_frame, num_frames)
        self._written = set()

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store the open chunk's un-roped K/V of one layer, `[B, n*tokens_per_frame, heads, head_dim]`.

        The first pass of a chunk fills its slot; later passes (denoising steps, the commit pass) overwrite it.
        """
        if self._open is None:
            raise RuntimeError("KVCache.write: no open chunk (call append() first)")
        n_frames = self._open[1]
        if keys.shape[1] % n_frames:
            raise ValueError(f"KVCache.write: {keys.shape[1]} tokens is not a multiple of {n_frames} frames")
        tpf = keys.shape[1] // n_frames
        if self.tokens_per_frame is None:
            self.tokens_per_frame = tpf
        elif tpf != self.tokens_per_frame:
            raise ValueError(f"KVCache.write: {tpf} tokens per frame, cache holds {self.tokens_per_frame}")
        shape = (self.num_layers, *keys.shape)
        if self._current is None or self._current[0].shape != shape or self._current[0].dtype != keys.dtype:
            self._current = (keys.new_empty(shape), values.new_empty(shape))
        self._current[0][layer].copy_(keys.detach())
        self._current[1][layer].copy_(values.detach())
        self._written.add(layer)

    def history(self, layer: int, broadcast: bool = True) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Un-roped history K/V of one layer, `[B, F_hist*T, heads, head_dim]`, in `key_positions()` order.

        The open chunk's own K/V follow it in `key_positions()`; the model appends its live (grad-carrying)
        copy. None when there is no readable history. With ``broadcast=False`` a history shared by a batch of
        candidates comes back with its single row (`[1, ...]`, for the caller to rope once and expand).
        """
        if self._open is None or layer not in self._written:
            raise RuntimeError(f"KVCache.history: layer {layer} of the open chunk was not written")
        slots = self._readable_slots()
        if not slots:
            return None
        batch = self._current[0].shape[1]
        idx = self._token_index(slots, self._storage.keys.device)
        hist_k = self._storage.keys[layer].index_select(1, idx)
        hist_v = self._storage.values[layer].index_select(1, idx)
        if broadcast and hist_k.shape[0] != batch:  # candidates batched over one shared (batch-1) history
            hist_k = hist_k.expand(batch, *hist_k.shape[1:])
            hist_v = hist_v.expand(batch, *hist_v.shape[1:])
        return hist_k, hist_v

    def commit(self) -> None:
        """Move the open chunk (after its clean pass) into history: sink first, then the window."""
        self._require_complete("commit")
        start, n = self._open
        if self._rewrite_slots is not None:  # recache: write back into the group's own slots
            self._copy_current_into(self._rewrite_slots)
            self._visible.update(self._rewrite_slots)
            self._open, self._rewrite_slots = None, None
            return
        slots = self._allocate(n)
        self._copy_current_into(slots)
        for i, slot in enumerate(slots):
            self._slot_frame[slot] = start + i
            if len(self._sink) < self.layout.sink_frames:
                self._sink.append(slot)
            else:
                self._window.append(slot)
        self._open = None

    def discard(self) -> None:
        """Close the open chunk without committing it (a rejected search candidate)."""
        self._open, self._rewrite_slots = None, None

    def recache(self, encode: Callable[[list[int]], None]) -> None:
        """Re-encode the retained history (prompt switch), chunk group by chunk group, oldest first.

        `encode(frame_indices)` must run the model in streaming mode on the clean latents of those frames
        (t = `context_noise`) with the new prompt; it writes through this cache. Each group attends to the
        groups re-encoded before it, as in the original generation. Slots, roles and positions are unchanged.
        """
        if self._open is not None:
            raise RuntimeError("KVCache.recache: commit or discard the open chunk first")
        self._make_private()
        groups: list[list[int]] = []
        for slot in self._sink + self._window:  # split into runs of consecutive frames, at most a chunk long
            frame = self._slot_frame[slot]
            last = groups[-1][-1] if groups else None
            if last is not None and self._slot_frame[last] == frame - 1 and len(groups[-1]) < self.layout.chunk_frames:
                groups[-1].append(slot)
            else:
                groups.append([slot])
        self._visible = set()
        try:
            for group in groups:
                frames = [self._slot_frame[s] for s in group]
                self._open, self._rewrite_slots, self._written = (frames[0], len(group)), group, set()
                encode(frames)
                self.commit()
        finally:
            self._open, self._rewrite_slots, self._visible = None, None, None

    def fork(self) -> KVCache:
        """A child sharing committed history read-only (copy-on-write) with its own current-chunk slot.

        Search pattern: open the chunk on the parent (`append`, which does any eviction once), then fork one
        child per candidate; each child writes its own chunk K/V and reads the shared history. A child copies
        the history only when it commits (or EMA-merges), i.e. once per surviving beam.
        """
        child = copy.copy(self)
        child._slot_frame, child._sink, child._window = list(self._slot_frame), list(self._sink), list(self._window)
        child._current, child._written = None, set()
        child._open = self._open
        child.evictions = list(self.evictions)
        if self._storage is not None:
            self._storage.owners.add(self)
            self._storage.owners.add(child)
        return child

    # ------------------------------------------------------------------ internals
    def _require_complete(self, op: str) -> None:
        if self._open is None:
            raise RuntimeError(f"KVCache.{op}: no open chunk")
        missing = set(range(self.num_layers)) - self._written
        if missing:
            raise RuntimeError(f"KVCache.{op}: layers {sorted(missing)[:5]} of the open chunk were never written")

    def _token_index(self, slots: list[int], device: torch.device) -> torch.Tensor:
        tpf = self.tokens_per_frame
        base = torch.tensor(slots, dtype=torch.long, device=device).unsqueeze(1) * tpf
        return (base + torch.arange(tpf, device=device)).flatten()

    def _make_private(self) -> None:
        """Copy-on-write: clone shared history before this cache mutates it."""
        st = self._storage
        if st is None:
            return
        others = [o for o in st.owners if o is not self]
        if others:
            st.owners.discard(self)
            self._storage = _Storage(st.keys.clone(), st.values.clone())

    def _ensure_storage(self, slots_needed: int) -> None:
        cur_k, cur_v = self._current
        tpf = self.tokens_per_frame
        if self._storage is None:
            cap = self.layout.history_capacity or slots_needed
            shape = (self.num_layers, cur_k.shape[1], cap * tpf, *cur_k.shape[3:])
            self._storage = _Storage(cur_k.new_zeros(shape), cur_v.new_zeros(shape))
            self._slot_frame = [None] * cap
            return
        cap = len(self._slot_frame)
        if slots_needed > cap:  # unbounded history grows by doubling
            new_cap = max(slots_needed, 2 * cap)
            pad = (new_cap - cap) * tpf
            st = self._storage
            pad_k = st.keys.new_zeros((*st.keys.shape[:2], pad, *st.keys.shape[3:]))
            pad_v = st.values.new_zeros((*st.values.shape[:2], pad, *st.values.shape[3:]))
            self._storage = _Storage(torch.cat([st.keys, pad_k], 2), torch.cat([st.values, pad_v], 2))
            self._slot_frame += [None] * (new_cap - cap)

    def _allocate(self, n: int) -> list[int]:
        self._make_private()
        used = self.num_history_frames
        self._ensure_storage(used + n)
        free = [i for i, f in enumerate(self._slot_frame) if f is None]
        if len(free) < n:
            raise RuntimeError(f"KVCache: {n} slots needed, {len(free)} free (window accounting bug)")
        return free[:n]

    def _copy_current_into(self, slots: list[int]) -> None:
        if self._current[0].shape[1] != self._storage.keys.shape[1]:
            raise RuntimeError(
                f"KVCache.commit: current chunk has batch {self._current[0].shape[1]}, history has "
                f"{self._storage.keys.shape[1]}; commit one candidate per cache"
            )
        idx = self._token_index(slots, self._current[0].device)
        self._storage.keys.index_copy_(2, idx, self._current[0])
        self._storage.values.index_copy_(2, idx, self._current[1])

    def _evict_until_fits(self, incoming: int) -> None:
        window = self.layout.rolling_frames
        if window is None:
            return
        while self._window and len(self._window) + incoming > window:
            n = min(self.layout.chunk_frames, len(self._window))
            self._evict(self._window[:n])

    def _evict(self, slots: list[int]) -> None:
        """Remove the oldest window chunk, routed to drop / ema_sink / append_sink.

        Only the EMA merge writes tensor data (and so copies shared history first); drop and append_sink
        just relabel slots, which are per-cache metadata.
        """
        chunk = EvictedChunk(self._slot_frame[slots[0]], len(slots), len(self._sink))
        policy = EvictionPolicy(self.router(chunk)) if self.router is not None else self.layout.policy
        if policy is EvictionPolicy.APPEND_SINK and len(self._sink) + len(slots) > self.layout.sink_capacity:
            policy = EvictionPolicy.EMA_SINK  # Stream-T1: a full sink falls back to the EMA merge
        if policy is EvictionPolicy.EMA_SINK and len(self._sink) < len(slots):
            policy = EvictionPolicy.DROP  # nothing (or too little) to merge into
        del self._window[: len(slots)]
        if policy is EvictionPolicy.APPEND_SINK:
            self._sink.extend(slots)
        else:
            if policy is EvictionPolicy.EMA_SINK:
                n = len(slots)
                targets = self._sink[-n:] if self.layout.ema_target == "newest" else self._sink[:n]
                self._make_private()
                self._ema_merge(targets, slots)
            for slot in slots:
                self._slot_frame[slot] = None
        self.evictions.append((chunk, policy))

    def _ema_merge(self, targets: list[int], sources: list[int]) -> None:
        """K_sink <- a*K_sink + (1-a)*K_evicted token by token, same for V (methods.md B.6, Reward Forcing)."""
        a = self.layout.ema_alpha
        dev = self._storage.keys.device
        t_idx, s_idx = self._token_index(targets, dev), self._token_index(sources, dev)
        for buf in (self._storage.keys, self._storage.values):
            merged = a * buf.index_select(2, t_idx) + (1 - a) * buf.index_select(2, s_idx)
            buf.index_copy_(2, t_idx, merged.to(buf.dtype))
