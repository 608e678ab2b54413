"""The search tree as a tree: one column per chunk, every candidate at its fused score, an edge from each candidate
to its parent beam in the previous chunk, pruned candidates hollow, survivors filled, the chosen video's path
drawn thick, and under each chunk the memory route it took when it left the window (B.6).

How the tree is read from a `SearchResult` (`search.chunk_search`): the beams entering chunk k are the survivors
of chunk k-1 in the order they were kept (best fused score first), and ``TreeNode.parent`` indexes that list.
The final beams (``SearchResult.beams``) are the survivors of the last chunk in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from streamvid.core.sampler import PromptSwitch
from streamvid.tts.search import SearchResult, TreeNode

__all__ = ["chosen_path", "survivor_order", "tree_figure"]

ROUTE_COLOURS = {"append": "tab:green", "ema": "tab:orange", "drop": "tab:red"}


def survivor_order(level: Sequence[TreeNode]) -> list[int]:
    """Pool indices of a chunk's survivors in the order they were kept (fused score, best first): entry p is the
    beam that ``TreeNode.parent == p`` points to in the next chunk."""
    return [n.candidate for n in sorted((n for n in level if n.kept), key=lambda n: -_y(n))]


def chosen_path(result: SearchResult) -> list[int]:
    """Pool index, per chunk, of the candidates the chosen video is made of (traced back from the final pick)."""
    tree = result.tree
    if not tree:
        return []
    beam = next(i for i, b in enumerate(result.beams) if b is result.best)
    path = []
    for k in range(len(tree) - 1, -1, -1):
        node = tree[k][survivor_order(tree[k])[beam]]
        path.append(node.candidate)
        beam = node.parent
    return path[::-1]


def _y(node: TreeNode) -> float:
    y = node.fused
    return y if y is not None and math.isfinite(y) else 0.0


def tree_figure(result: SearchResult, chunk_frames: int, switches: Sequence[PromptSwitch] = (), title: str = ""):
    """A matplotlib `Figure` of ``result``'s tree (see the module docstring), drawn with the current backend (a
    notebook shows it; `streamvid-infer-t1` selects Agg and saves it)."""
    import matplotlib.pyplot as plt

    tree, routes = result.tree, result.best.routes
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 * len(tree)), 3.6))
    path = chosen_path(result)
    previous: list[TreeNode] = []
    for k, level in enumerate(tree):
        for node in level:
            y = _y(node)
            if previous:
                parent = previous[node.parent]
                on_path = path[k] == node.candidate and path[k - 1] == parent.candidate
                ax.plot([k - 1, k], [_y(parent), y], color="black" if on_path else "0.75",
                        lw=2.2 if on_path else 0.8, zorder=1)
            ax.scatter(k, y, s=55, zorder=2, edgecolors="tab:blue", linewidths=1.2,
                       facecolors="tab:blue" if node.kept else "white")
        previous = [level[i] for i in survivor_order(level)]
    low = min((_y(n) for level in tree for n in level), default=0.0)
    high = max((_y(n) for level in tree for n in level), default=1.0)
    pad = 0.15 * (high - low or 1.0)
    ax.set_ylim(low - 2.2 * pad, high + pad)
    for start, route in sorted(routes.items()):
        k = start // chunk_frames
        ax.annotate(f"{route}", (k, low - 1.6 * pad), ha="center", fontsize=7, color=ROUTE_COLOURS.get(route, "0.3"))
    for k in sorted(s.chunk for s in switches):
        ax.axvline(k - 0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate("prompt switch", (k - 0.45, high + 0.6 * pad), fontsize=7, color="grey")
    ax.scatter([], [], s=40, facecolors="tab:blue", edgecolors="tab:blue", label="kept (survivor)")
    ax.scatter([], [], s=40, facecolors="white", edgecolors="tab:blue", label="pruned")
    ax.plot([], [], color="black", lw=2.2, label="chosen video")
    ax.legend(fontsize=7, loc="upper left", frameon=False, ncol=3)
    ax.set_xticks(range(len(tree)))
    ax.set_xlabel("chunk (below: memory route of the chosen beam's chunk when it left the window)", fontsize=8)
    ax.set_ylabel("fused score")
    ax.set_title(title or "search tree: edges from parent beam to candidate", fontsize=9)
    fig.tight_layout()
    return fig
