"""`SearchStrategy`: a test-time search as the object a `StreamVidPipeline` runs (``pipe(prompt, search=...)``).

It holds the reward(s) and the strategy's settings and dispatches to the one implementation of each strategy
(`search.chunk_search` with Stream-T1's, chunk-greedy's or plain sampling's settings, or `search.best_of_n`)::

    from streamvid.core import StreamVidPipeline
    from streamvid.core.rewards import build_reward
    from streamvid.tts import SearchStrategy

    pipe = StreamVidPipeline.from_pretrained("assets/shapes/stream_r1_student")
    out = pipe("a red circle moving left, then up", num_frames=12,
               search=SearchStrategy(build_reward("shapes_learned")))
    out.frames  # the chosen video; out.search: the `SearchResult` (tree, scores, ledger)

`streamvid-infer-t1` builds its search the same way. The pipeline lives in `streamvid.core`, which never imports
this package: the strategy is handed to it (docs/architecture.md, the dependency direction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from streamvid.core.config import ConfigError, check_choice
from streamvid.core.rewards.base import RewardModel
from streamvid.core.sampler import PromptSwitch
from streamvid.tts.search import (
    SearchConfig,
    SearchResult,
    best_of_n,
    chunk_search,
    greedy_config,
    plain_config,
)

if TYPE_CHECKING:
    from streamvid.core.pipeline import StreamVidPipeline

__all__ = ["STRATEGIES", "SearchStrategy"]

STRATEGIES = ("stream_t1", "greedy", "best_of_n", "plain")


@dataclass
class SearchStrategy:
    """One test-time search of a pipeline's student (a `streamvid.core.pipeline.VideoSearch`).

    Args:
        reward: the search reward: long-term window score and final pick (and the short-term score unless
            ``short_reward`` is given).
        strategy: ``stream_t1`` (``config``), ``greedy`` (``n`` children per chunk), ``best_of_n`` (``n``
            whole videos) or ``plain`` (one sample through the search machinery).
        config: Stream-T1's settings (methods.md B.7); its ``seed`` seeds every strategy.
        n: children per chunk (greedy) or videos (best_of_n).
        short_reward: the short-term (new chunk) reward; None: ``reward``.
        on_chunk: called with the chunk index after each chunk (a progress bar; best-of-N calls it
            ``n`` times per chunk index).
    """

    reward: RewardModel
    strategy: str = "stream_t1"
    config: SearchConfig = field(default_factory=SearchConfig)
    n: int = 4
    short_reward: RewardModel | None = None
    on_chunk: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        if self.n < 1:
            raise ConfigError(f"n must be >= 1, got {self.n}")

    def progress_total(self, num_chunks: int) -> int:
        """How many times ``on_chunk`` is called for a video of ``num_chunks`` chunks."""
        return num_chunks * (self.n if self.strategy == "best_of_n" else 1)

    def __call__(self, pipe: StreamVidPipeline, prompt: str, num_frames: int,
                 prompt_switches: Sequence[PromptSwitch] = ()) -> SearchResult:
        """Search ``num_frames`` latent frames of ``prompt`` (switching at ``prompt_switches``) with the pipeline's
        sampler and codec; the result's ``best`` is the chosen beam."""
        switches = [replace(s, text=pipe.text_states([s.prompt])) for s in prompt_switches]
        common = dict(sampler=pipe.sampler, text=pipe.text_states([prompt]), prompt=prompt,
                      latent_shape=pipe.latent_shape, num_frames=num_frames, reward=self.reward, codec=pipe.codec,
                      on_chunk=self.on_chunk, prompt_switches=switches)
        if self.strategy == "best_of_n":
            return best_of_n(n=self.n, seed=self.config.seed, **common)
        settings = {"stream_t1": self.config, "greedy": greedy_config(self.n, self.config.seed),
                    "plain": plain_config(self.config.seed)}[self.strategy]
        return chunk_search(cfg=settings, short_reward=self.short_reward, **common)
