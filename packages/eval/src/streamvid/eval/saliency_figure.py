"""Side-by-side picture of a video, its per-axis reward saliency and the oracle's reading.

    python -m streamvid.eval.saliency_figure --out docs/img/saliency.png \
        [--reward shapes_analytic] [--index 3] [--split val] [--corruption blur] [--frames 6]

Renders a shapes-world video (optionally corrupted), scores it with a differentiable reward, computes
`streamvid.core.rewards.saliency` (|d axis / d pixel|) for every axis, and draws one row per axis under the
frames, with the reward's and the oracle's per-axis scores in the titles. For people to look at, and for docs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from streamvid.core.cli.errors import run_cli  # noqa: E402
from streamvid.core.config import ConfigError  # noqa: E402
from streamvid.core.rewards import build_reward, saliency  # noqa: E402
from streamvid.core.world import (  # noqa: E402
    CORRUPTION_AXES,
    ShapesDataset,
    WorldConfig,
    oracle,  # noqa: E402
    render_corrupted,
)

PROG = "saliency-figure"


def saliency_figure(video: torch.Tensor, prompt: str, reward, frames: int = 6, title: str = ""):
    """Figure with the video `[T, 3, H, W]` in the first row and one saliency row per reward axis."""
    out = reward(video[None], [prompt])
    maps = saliency(reward, video[None], [prompt])
    reading = oracle.score(video, prompt)
    t_idx = torch.linspace(0, video.shape[0] - 1, min(frames, video.shape[0])).round().long().tolist()
    rows = 1 + len(maps)
    fig, axes = plt.subplots(rows, len(t_idx), figsize=(1.6 * len(t_idx), 1.7 * rows), squeeze=False)
    for j, t in enumerate(t_idx):
        axes[0, j].imshow(video[t].permute(1, 2, 0).clamp(0, 1).numpy())
        axes[0, j].set_title(f"t={t}", fontsize=8)
        for i, (axis, sal) in enumerate(maps.items(), start=1):
            m = sal[0]
            axes[i, j].imshow(m[t].numpy(), cmap="magma", vmin=0, vmax=float(m.max()) + 1e-12)
            if j == 0:
                axes[i, j].set_ylabel(f"{axis}\nR={out.axes[axis][0]:.2f} O={reading[axis]:.2f}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}\n\"{prompt}\"  (R: reward axis, O: oracle)", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="PNG path")
    parser.add_argument("--reward", default="shapes_analytic", help="a differentiable registered reward")
    parser.add_argument("--split", default="val", choices=("train", "val", "heldout"))
    parser.add_argument("--index", type=int, default=0, help="dataset item")
    parser.add_argument("--corruption", default=None, help=f"one of {sorted(CORRUPTION_AXES)}")
    parser.add_argument("--frames", type=int, default=6, help="frames shown")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.corruption is not None and args.corruption not in CORRUPTION_AXES:
            raise ConfigError(f"--corruption {args.corruption!r}: choose one of {sorted(CORRUPTION_AXES)}")
        cfg = WorldConfig()
        data = ShapesDataset(cfg, split=args.split, size=args.index + 1)
        item = data[args.index]
        video = item["video"]
        if args.corruption is not None:
            video = render_corrupted(data.attributes(args.index), args.corruption, cfg, seed=args.index)
        reward = build_reward(args.reward)
        if not reward.differentiable:
            raise ConfigError(f"--reward {args.reward} is not differentiable; saliency needs gradients")
        title = f"{args.split}[{args.index}]" + (f", corruption: {args.corruption}" if args.corruption else "")
        fig = saliency_figure(video, item["prompt"], reward, args.frames, title)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        print(f"wrote {out}", file=sys.stderr)
        return 0

    return run_cli(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
