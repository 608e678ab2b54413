"""streamvid.tts: Stream-T1 chunk-level test-time search and its baselines, run from a pipeline::

    from streamvid.core import StreamVidPipeline, build_reward
    from streamvid.tts import SearchStrategy

    pipe = StreamVidPipeline.from_pretrained("assets/shapes/stream_r1_student")
    out = pipe("a red circle moving left, then up", num_frames=12, search=SearchStrategy(build_reward("shapes_learned")))

Names are imported on first use (`streamvid.core.lazy`).
"""

from streamvid.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "SearchStrategy": "streamvid.tts.strategy",
    "STRATEGIES": "streamvid.tts.strategy",
    "SearchConfig": "streamvid.tts.search",
    "SearchResult": "streamvid.tts.search",
    "SearchError": "streamvid.tts.search",
    "chunk_search": "streamvid.tts.search",
    "best_of_n": "streamvid.tts.search",
    "plan_for_budget": "streamvid.tts.search",
    "BudgetLedger": "streamvid.tts.ledger",
})
