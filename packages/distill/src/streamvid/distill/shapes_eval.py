"""Does a shapes-world teacher or student follow its prompt? Oracle-read samples on val and held-out prompts.

    .venv/bin/python -m streamvid.distill.shapes_eval --teacher assets/shapes/teacher --out outputs/shapes_eval/teacher
    .venv/bin/python -m streamvid.distill.shapes_eval --student assets/shapes/student --out outputs/shapes_eval/student

Prompts: the first ``--prompts`` (64) items of the ``val`` and ``heldout`` splits (held-out colour-shape pairs),
as in the learnability probe of docs/shapes_world.md. How each model samples:

* teacher (bidirectional, `ConvFlowNet` or Wan): `euler_solve`, ``--teacher-steps`` Euler steps on a grid with
  shift 3 and guidance g = 1 (standard CFG scale 2) against the null prompt "" (the teacher's protocol);
* student (`CausalWanModel`): the streaming chunk loop (`StreamingSampler` with the few-step sampler config,
  KV cache, commit pass), i.e. exactly how it generates in `streamvid-generate`.

Each video is read by the oracle (`world.score_details`): colour / shape / direction accuracy (chance 14 % /
33 % / 25 %), the mean text / motion / visual scores. ``seam_ratio`` is the mean absolute frame-to-frame change
across chunk boundaries divided by the mean change inside chunks (1 = no seam; the bar is <= 1.5). Writes
``metrics.json`` and ``samples_<split>.png`` (8 videos per split, one per row, frames left to right, with the
prompt and the oracle's reading on the left) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from streamvid.core.codecs import PixelCodec
from streamvid.core.euler import euler_solve
from streamvid.core.score_model import ScoreModel
from streamvid.core.text.bag_of_words import BagOfWordsTextEncoder
from streamvid.core.world import WorldConfig, sample_attributes, score_details, vocabulary

__all__ = ["evaluate_videos", "main", "sample_student", "sample_teacher", "seam_ratio"]

SPLITS = ("val", "heldout")


def sample_teacher(model, prompts: list[str], text_dim: int, seed: int, steps: int = 20, guidance: float = 1.0,
                   batch: int = 32, progress: Callable[[int], object] | None = None) -> torch.Tensor:
    """Videos ``[N, T, 3, H, W]`` in [0, 1] from a bidirectional flow model (Euler, shift 3, guidance g of
    c + g (c - u); 1: standard CFG scale 2). ``progress`` is called with the number of videos of each batch done."""
    world, codec = WorldConfig(), PixelCodec(2)
    text = BagOfWordsTextEncoder(vocabulary(), text_dim)
    shape = (codec.latent_channels, world.num_frames, world.height // 2, world.width // 2)
    score, out = ScoreModel(model), []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i : i + batch]
        noise = torch.randn(len(chunk), *shape, generator=torch.Generator().manual_seed(seed + i))
        x0 = euler_solve(score, noise, text(chunk), text([""] * len(chunk)), guidance, steps, 3.0).x0
        out.append(codec.decode(x0.permute(0, 2, 1, 3, 4)).clamp(0, 1))
        if progress is not None:
            progress(len(chunk))
    return torch.cat(out)


@torch.no_grad()
def sample_student(model, sampler_cfg, prompts: list[str], seed: int, batch: int = 32,
                   progress: Callable[[int], object] | None = None) -> torch.Tensor:
    """Videos ``[N, T, 3, H, W]`` in [0, 1] streamed chunk by chunk through the KV cache (few-step sampler).
    ``progress`` is called with the number of videos of each batch done."""
    from streamvid.core.sampler import GaussianNoise, StreamingSampler

    world, codec = WorldConfig(), PixelCodec(2)
    text = BagOfWordsTextEncoder(vocabulary(), model.config.text_dim)
    sampler = StreamingSampler.from_config(model, sampler_cfg)
    latent_shape = (codec.latent_channels, world.height // 2, world.width // 2)
    out = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i : i + batch]
        ctx = model.encode_text(text(chunk), grad=False)
        latents = sampler.generate(ctx, latent_shape, world.num_frames, batch_size=len(chunk),
                                   noise=GaussianNoise(seed + i))
        out.append(codec.decode(latents).clamp(0, 1))
        if progress is not None:
            progress(len(chunk))
    return torch.cat(out)


def seam_ratio(videos: torch.Tensor, chunk_frames: int) -> float:
    """Mean |frame t+1 - frame t| across chunk boundaries over the mean inside chunks (``videos [N, T, ...]``)."""
    change = (videos[:, 1:] - videos[:, :-1]).abs().flatten(2).mean(-1)  # [N, T - 1]
    boundary = torch.zeros(change.shape[1], dtype=torch.bool)
    boundary[chunk_frames - 1 :: chunk_frames] = True
    return float(change[:, boundary].mean() / change[:, ~boundary].mean().clamp_min(1e-8))


def evaluate_videos(videos: torch.Tensor, prompts: list[str]) -> tuple[dict, list]:
    """Oracle accuracies and mean axes of ``videos [N, T, 3, H, W]`` -> (metrics, per-video readings)."""
    rows = [score_details(v, p) for v, p in zip(videos, prompts)]

    def mean(xs) -> float:
        return round(sum(xs) / len(xs), 4)

    metrics = {f"{k}_accuracy": mean([r.parts.get(k, 0.0) for r in rows]) for k in ("colour", "shape", "direction")}
    metrics |= {f"mean_{k}": mean([getattr(r, k) for r in rows]) for k in ("text", "motion", "visual")}
    metrics["no_object"] = sum(not r.parts for r in rows)
    return metrics, rows


LABEL_WIDTH = 330
"""Pixels of the label column left of the sample grids and weight maps."""
LINE_HEIGHT = 13
"""Pixels per text line of PIL's default font in those labels."""


def wrap_label(draw: ImageDraw.ImageDraw, text: str, width: int) -> list[str]:
    """``text`` broken at spaces into lines of at most ``width`` pixels (a word longer than that is broken
    inside); the lines joined by spaces give ``text`` back, so nothing is cut off."""
    lines: list[str] = []
    for word in text.split(" "):
        line = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(line) <= width:
            lines[-1] = line
            continue
        while draw.textlength(word) > width and len(word) > 1:  # a long word: as many characters as fit
            cut = max(1, max(k for k in range(1, len(word) + 1) if draw.textlength(word[:k]) <= width or k == 1))
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines


def write_grid(videos: torch.Tensor, prompts: list[str], rows: list, path: Path, scale: int = 3) -> None:
    """PNG: one video per row (frames left to right), the whole prompt (wrapped) and the oracle's reading on the
    left; a row is as tall as its label needs."""
    n, t, _, h, w = videos.shape
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = []
    for prompt, row in zip(prompts, rows):
        r = row.reading
        read = f"read: {r.colour} {r.shape} {r.segment_directions(1)[0]}" if row.parts else "read: no object"
        labels.append((wrap_label(probe, prompt, LABEL_WIDTH - 8), read))
    row_h = max(h * scale, max((len(lines) + 1) * LINE_HEIGHT + 16 for lines, _ in labels))
    canvas = Image.new("RGB", (LABEL_WIDTH + t * w * scale, n * row_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (video, (lines, read)) in enumerate(zip(videos, labels)):
        frames = video.permute(2, 0, 3, 1).reshape(h, t * w, 3)  # [T, 3, H, W] -> [H, T * W, 3]
        img = Image.fromarray((frames * 255).round().byte().numpy()).resize((t * w * scale, h * scale), 0)
        canvas.paste(img, (LABEL_WIDTH, i * row_h))
        for k, line in enumerate(lines):
            draw.text((4, i * row_h + 8 + k * LINE_HEIGHT), line, fill=(0, 0, 0))
        draw.text((4, i * row_h + 8 + len(lines) * LINE_HEIGHT + 3), read, fill=(90, 90, 90))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(colors=64).save(path, optimize=True)  # a few colours: small enough for docs/


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--teacher", help="teacher directory (ConvFlowNet or Wan, diffusers format)")
    which.add_argument("--student", help="student directory (CausalWanModel, diffusers format)")
    ap.add_argument("--sampler", default="configs/sampler/self_forcing.yaml", help="student sampler config")
    ap.add_argument("--prompts", type=int, default=64, help="prompts per split (val, heldout)")
    ap.add_argument("--teacher-steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32,
                    help="videos sampled together (the progress bar moves per batch; the noise of a video depends on it)")
    ap.add_argument("--out", required=True, help="folder for metrics.json and the sample grids")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from streamvid.core.config import ConfigError, load_config
    from streamvid.core.sampler_config import SamplerConfig
    from streamvid.distill.networks import load_model_dir

    try:
        model = load_model_dir(args.teacher or args.student, "--teacher" if args.teacher else "--student").eval()
        sampler_cfg = load_config(args.sampler, schema=SamplerConfig) if args.student else None
    except (ConfigError, OSError, ValueError) as err:
        print(f"shapes_eval: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    world, out, report = WorldConfig(), Path(args.out), {"model": args.teacher or args.student}
    start = time.time()
    for split in SPLITS:
        prompts = [sample_attributes(world, split, i)[1] for i in range(args.prompts)]
        with tqdm(total=len(prompts), desc=f"{split} videos", unit="video", file=sys.stderr) as bar:
            if args.teacher:
                videos = sample_teacher(model, prompts, model.config.text_dim, args.seed, args.teacher_steps,
                                        batch=args.batch, progress=bar.update)
            else:
                videos = sample_student(model, sampler_cfg, prompts, args.seed, batch=args.batch, progress=bar.update)
        metrics, rows = evaluate_videos(videos, prompts)
        if args.student:
            metrics["seam_ratio"] = round(seam_ratio(videos, sampler_cfg.cache.chunk_frames), 4)
        report[split] = metrics
        write_grid(videos[:8], prompts[:8], rows[:8], out / f"samples_{split}.png")
        print(split, metrics, flush=True)
    report["seconds"] = round(time.time() - start, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
