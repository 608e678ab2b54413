"""`streamvid-generate`: stream one video from a prompt and write it (mp4 or gif).

    streamvid-generate --config configs/generate/tiny.yaml --prompt "a red circle moving left" \
        --out outputs/generate/red.mp4 [--frames 12] [--seed 0] [--set sampler.cache.window_frames=6]

Builds the model, codec and text encoder from the config (a randomly initialised model when the config has
no checkpoint), streams the video chunk by chunk with a progress bar, writes it atomically, and writes the
resolved config next to it (`<out stem>.config.yaml`). Bad input exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from streamvid.core.cli.errors import run_cli
from streamvid.core.config import ConfigError, load_config, save_resolved_config
from streamvid.core.generator import GeneratorConfig, build_generator, prompt_vocabulary
from streamvid.core.video_io import write_video

PROG = "streamvid-generate"


@dataclass
class GenerateConfig:
    """`streamvid-generate`'s config: a generator plus what to render."""

    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    num_frames: int = 12
    """Latent frames to generate (= video frames with the pixel codec); a multiple of the chunk size."""
    fps: int = 8
    """Frame rate of the written video."""
    seed: int = 0
    """Seed of every noise draw (0 is a seed like any other)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML file (schema: GenerateConfig)")
    parser.add_argument("--prompt", required=True, help="text prompt")
    parser.add_argument("--out", required=True, help="output video path (.mp4 or .gif)")
    parser.add_argument("--frames", type=int, default=None, help="latent frames (multiple of the chunk size)")
    parser.add_argument("--seed", type=int, default=None, help="noise seed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (e.g. sampler.cache.window_frames=6)")
    return parser.parse_args(argv)


def generate(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    if not config_path.is_file():
        raise FileNotFoundError(f"config file not found: {config_path}")
    cfg = load_config(config_path, args.overrides, schema=GenerateConfig)
    if args.frames is not None:
        cfg = replace(cfg, num_frames=args.frames)
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    chunk = cfg.generator.sampler.cache.chunk_frames
    if cfg.num_frames <= 0 or cfg.num_frames % chunk:
        raise ConfigError(f"--frames {cfg.num_frames} must be a positive multiple of the chunk size {chunk}")
    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise ConfigError(f"--out {out}: the extension must be .mp4 or .gif")

    generator = build_generator(cfg.generator, vocabulary=prompt_vocabulary([args.prompt]))
    frames = []
    num_chunks = cfg.num_frames // chunk
    for pixels in tqdm(generator.stream_video([args.prompt], cfg.num_frames, cfg.seed), total=num_chunks,
                       desc="chunks", unit="chunk", file=sys.stderr):
        frames.append(pixels[0].cpu())
    video = torch.cat(frames, dim=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(out, video, fps=cfg.fps)
    resolved = save_resolved_config(cfg, out.parent)
    resolved.rename(out.with_name(f"{out.stem}.config.yaml"))
    print(f"wrote {out} ({video.shape[0]} frames, {video.shape[-1]}x{video.shape[-2]} px)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, lambda: generate(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
