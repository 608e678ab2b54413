"""The README's opening picture: frame strips of the shipped Stream-R1 shapes student, sampled once and under
Stream-T1 search, each titled with the learned shapes reward's video score and the pixel oracle's reading.

    python -m streamvid.tts.readme_figure --out docs/img/first_look.png

Both rows come from one `StreamVidPipeline` (`pipe(prompt, seed=...)` and `pipe(prompt, search=SearchStrategy(...))`)
built from the `streamvid-infer-t1` config, so the picture shows what `make infer-t1` and `make generate` make.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

PROG = "python -m streamvid.tts.readme_figure"
CONFIG = "configs/infer/shapes_t1.yaml"
PROMPT = "a red circle moving left, then up"


def make_figure(prompt: str = PROMPT, seed: int = 0, config: str = CONFIG):
    """A two-row matplotlib `Figure`: the plain sample (``seed``) and the Stream-T1 choice, 12 frames each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from streamvid.core.config import load_config
    from streamvid.core.generator import build_generator
    from streamvid.core.rewards import build_reward
    from streamvid.core.world.oracle import score as oracle_score
    from streamvid.tts.cli import InferT1Config
    from streamvid.tts.strategy import SearchStrategy

    cfg = load_config(config, schema=InferT1Config)
    pipe = build_generator(cfg.generator)
    pipe.set_progress_bar_config(disable=True)
    reward = build_reward(cfg.reward.config())
    plain = pipe(prompt, cfg.num_frames, seed=seed, output_type="pt").frames
    searched = pipe(prompt, cfg.num_frames, search=SearchStrategy(reward, cfg.strategy, cfg.search, cfg.n),
                    output_type="pt")
    rows = [("shipped student, one sample", plain), ("the same student under Stream-T1 search", searched.frames)]
    frames = cfg.num_frames
    fig, axes = plt.subplots(2, frames, figsize=(0.62 * frames, 1.75))
    for r, (label, video) in enumerate(rows):
        with torch.no_grad():
            score = float(reward(video, [prompt]).score[0])
        oracle = oracle_score(video[0], prompt)
        for t in range(frames):
            ax = axes[r, t]
            ax.imshow(video[0, t].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_title(f"{label}: reward {score:.2f}, oracle text {oracle['text']:.2f} / motion "
                             f"{oracle['motion']:.2f}", fontsize=7, loc="left")
    fig.suptitle(f'"{prompt}" ({frames} frames, 32x32 px, left to right)', fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.8, bottom=0.02, wspace=0.06, hspace=0.45)
    return fig


def main(argv: list[str] | None = None) -> int:
    from streamvid.core.cli.errors import run_cli

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="PNG path (e.g. docs/img/first_look.png)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--seed", type=int, default=0, help="seed of the plain sample")
    args = parser.parse_args(argv)

    def run() -> int:
        import matplotlib.pyplot as plt

        from streamvid.core.atomic import atomic_write

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig = make_figure(args.prompt, args.seed)
        try:
            with atomic_write(out) as tmp:
                fig.savefig(tmp, dpi=110, format="png")
        finally:
            plt.close(fig)
        print(f"wrote {out}", file=sys.stderr)
        return 0

    return run_cli(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
