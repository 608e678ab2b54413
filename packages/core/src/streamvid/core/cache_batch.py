"""`CacheBatch`: forked KV caches read as one batch, so every candidate of a chunk runs in one forward.

Beam search (methods.md B.2-B.4) expands each surviving beam into children that all denoise the same chunk.
Each beam keeps its committed history once (batch 1, shared copy-on-write by `KVCache.fork`); a `CacheBatch`
stacks one fork per beam, each serving a block of ``rows`` consecutive batch rows (that beam's children):

    batch rows   [ beam 0: c0 c1 | beam 1: c0 c1 | ... ]         B = sum(rows)
    history      each beam's committed history, stored once (the members share the beams' storage)
    current      each fork stores its own rows of the chunk's K/V

It is an `AttentionCache` (`query_positions`, `key_positions`, `write`, `history`), so the candidates' forward
is one batched call. One RoPE table serves the batch, so the members must hold their history at the same key
positions (same sink and window frames): a search groups beams by `KVCache.key_positions()` and runs one batch
per group. A batch is never committed: the survivors are committed one by one on forks of their own beam.

What is copied, when. Held between forwards (`memory_bytes`): each beam's history once, plus every row's
chunk K/V. Per forward and layer (transient, freed before the next layer): each member gathers its readable
history slots (`KVCache.history`, one row); with one member that single row goes to the model, which ropes it
once and attends through an expanded view; with several members (`history_read_bytes`) the rows are
concatenated into `[B, F_hist*T, ...]`, i.e. the history is materialised once per candidate row (B times) and
roped B times. In both cases the model's concatenation of history and the live chunk K/V builds the
`[B, F_k*T, ...]` attention keys and values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from streamvid.core.kv_cache import KVCache

__all__ = ["CacheBatch"]


class CacheBatch:
    """Several open, forked `KVCache`s seen as one cache of batch ``sum(rows)`` (see the module docstring)."""

    def __init__(self, caches: Sequence[KVCache], rows: Sequence[int]):
        """
        Args:
            caches: one fork per beam, each with the same chunk open (`KVCache.append` on the beam, then `fork`).
            rows: the batch rows each cache serves, in order (>= 1 each).
        Raises:
            ValueError: lengths differ, a row count < 1, a cache not open on the same chunk, or key positions
                that differ between members (they could not share one RoPE table).
        """
        if not caches or len(caches) != len(rows):
            raise ValueError(f"CacheBatch: {len(caches)} caches for {len(rows)} row counts")
        if min(rows) < 1:
            raise ValueError(f"CacheBatch: every cache serves >= 1 rows, got {list(rows)}")
        first = caches[0]
        if not all(c.is_open for c in caches) or any(c.open_span != first.open_span for c in caches):
            raise ValueError("CacheBatch: every cache must have the same chunk open (append on the beam, then fork)")
        positions = first.key_positions()
        for i, c in enumerate(caches[1:], start=1):
            if not torch.equal(c.key_positions(), positions):
                raise ValueError(f"CacheBatch: cache {i} holds history at other key positions than cache 0 "
                                 "(batch only beams with the same sink and window frames)")
        self.caches, self.rows = list(caches), [int(r) for r in rows]
        self.num_layers = first.num_layers

    @property
    def batch_size(self) -> int:
        return sum(self.rows)

    @property
    def tokens_per_frame(self) -> int | None:
        return self.caches[0].tokens_per_frame

    def query_positions(self) -> torch.Tensor:
        """`[n]` RoPE positions of the open chunk (the same for every member)."""
        return self.caches[0].query_positions()

    def key_positions(self) -> torch.Tensor:
        """`[F_k]` RoPE positions of history then the chunk (the same for every member, checked at construction)."""
        return self.caches[0].key_positions()

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Split the chunk's K/V `[B, n*T, heads, head_dim]` by rows and store each block in its member."""
        if keys.shape[0] != self.batch_size:
            raise ValueError(f"CacheBatch.write: batch {keys.shape[0]}, the caches serve {self.batch_size} rows")
        for cache, k, v in zip(self.caches, keys.split(self.rows), values.split(self.rows), strict=True):
            cache.write(layer, k, v)

    def history(self, layer: int, broadcast: bool = True) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`[B, F_hist*T, heads, head_dim]` each member's history, repeated for its rows, stacked in row order
        (a new tensor: the history is copied once per row, see the module docstring).

        ``broadcast=False`` with a single member: its one history row `[1, ...]`, shared by the whole batch."""
        if len(self.caches) == 1:
            return self.caches[0].history(layer, broadcast)
        parts = [cache.history(layer) for cache in self.caches]
        if parts[0] is None:
            return None
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def commit(self) -> None:
        raise RuntimeError("CacheBatch.commit: a candidate batch is never committed; fork the survivor's beam "
                           "and commit its x0 there")

    def history_read_bytes(self) -> int:
        """Bytes of the history K and V that `history(layer, broadcast=False)` materialises for one layer of one
        forward (transient): one row with a single member, B rows with several (0 before any write)."""
        first = self.caches[0]
        if first.tokens_per_frame is None or not first.num_history_frames:
            return 0
        frames = len(self.key_positions()) - len(self.query_positions())
        storage = next(iter(first.tensors()))
        rows = 1 if len(self.caches) == 1 else self.batch_size
        per_row = frames * first.tokens_per_frame * first.num_heads * first.head_dim * storage.element_size()
        return 2 * rows * per_row

    def memory_bytes(self) -> int:
        """Bytes held by the members' chunk buffers and (shared, counted once) histories."""
        seen, total = set(), 0
        for cache in self.caches:
            for t in cache.tensors():
                if t.data_ptr() not in seen:
                    seen.add(t.data_ptr())
                    total += t.nbytes
        return total
