"""`DMDSamples`: what the DMD / Stream-R1 stage writes beside training, as a Lightning `Callback`.

`DMDModule.training_step` returns the step's diagnostics (``per_sample``: prompts, rewards and weights of the last
generator micro-step; ``weight_map``: that micro-step's first rollout and its intra weight map, methods.md A.6);
this callback, after every optimiser step,

* appends ``per_sample`` to ``<sample_dir>/per_sample_rank<r>.jsonl`` (each rank its own file);
* at step 1 and every ``every`` steps, streams fixed-seed videos of the fixed sample prompts with the exported
  model (the EMA once it exists), reads them with the shapes world's pixel oracle and logs its means
  (``samples/oracle_*``), and on rank 0 writes the grid PNG and the last intra weight map
  (``samples_step<k>.png``, ``weights_step<k>.png``), also as TensorBoard images.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import torch

from streamvid.distill.trainer import tensorboard_writers

__all__ = ["DMDSamples", "write_weight_map"]

ORACLE_KEYS = ("colour_accuracy", "shape_accuracy", "direction_accuracy", "mean_text", "mean_motion", "mean_visual")


class DMDSamples(pl.Callback):
    """Per-sample JSONL, sample grids with their oracle reading, intra weight maps (see the module docstring).

    Args:
        sample_dir: where the files go (None: no files; the oracle means are still logged).
        prompts: the fixed sample prompts (empty: no sample videos).
        every: optimiser steps between sample videos.
        sampler: the student's `SamplerConfig`.
        seed: the sample videos' noise seed.
    """

    def __init__(self, sample_dir: str | Path | None, prompts: list[str], every: int, sampler, seed: int) -> None:
        self.sample_dir = Path(sample_dir) if sample_dir is not None else None
        self.prompts, self.every, self.sampler, self.seed = list(prompts), every, sampler, seed
        self.last_weights: dict | None = None  # the last weight map the module returned (for the next grid)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        outputs = outputs or {}
        step = trainer.global_step
        if outputs.get("weight_map") is not None:
            self.last_weights = outputs["weight_map"]
        if outputs.get("per_sample") and self.sample_dir is not None:
            self.sample_dir.mkdir(parents=True, exist_ok=True)
            with open(self.sample_dir / f"per_sample_rank{trainer.global_rank}.jsonl", "a") as f:
                f.write(json.dumps({"step": step, **outputs["per_sample"]}) + "\n")
        if self.prompts and (step == 1 or step % self.every == 0):
            self.write_samples(trainer, pl_module, step)

    @torch.no_grad()
    def write_samples(self, trainer, pl_module, step: int) -> dict[str, float]:
        """Fixed-seed videos from ``pl_module.exported_model()``, read by the pixel oracle; the grid PNG (and the
        last intra weight map) on rank 0 and the oracle's means in the logs. Runs on every rank (ZeRO-3 gathers
        parameters collectively)."""
        from streamvid.distill.shapes_eval import evaluate_videos, sample_student, write_grid

        model = pl_module.exported_model()
        was_training = model.training
        model.eval()
        videos = sample_student(model, self.sampler, self.prompts, seed=self.seed)
        model.train(was_training)
        metrics, rows = evaluate_videos(videos, self.prompts)
        logged = {f"samples/oracle_{k}": float(metrics[k]) for k in ORACLE_KEYS}
        if trainer.global_rank == 0:
            for logger in trainer.loggers:
                logger.log_metrics(logged, step=step)
        if trainer.global_rank == 0 and self.sample_dir is not None:
            images = {"samples": self.sample_dir / f"samples_step{step:06d}.png"}
            write_grid(videos, self.prompts, rows, images["samples"])
            if self.last_weights is not None:
                images["intra_weights"] = self.sample_dir / f"weights_step{step:06d}.png"
                write_weight_map(self.last_weights, images["intra_weights"], step=step)
            for tb in tensorboard_writers(trainer.loggers):
                for name, path in images.items():
                    tb.add_image(f"samples/{name}", _read_png(path), step, dataformats="HWC")
        return logged


def write_weight_map(last: dict, path: Path, scale: int = 4, step: int | None = None) -> None:
    """PNG: the frames of one rollout (top row) and its intra weight map W on the latent grid (bottom row, grey,
    max -> white), one latent frame under each pixel frame; a label column names the rows, the rollout's prompt
    (wrapped, whole), the step and W's range.

    ``last``: ``{"pixels": [1, T, 3, H, W], "weights": [1, T, h, w]}`` (a pixel codec: one latent frame per
    pixel frame), optionally ``"prompt"``."""
    from PIL import Image, ImageDraw

    from streamvid.distill.shapes_eval import LABEL_WIDTH, LINE_HEIGHT, wrap_label

    pixels, weights = last["pixels"][0], last["weights"][0]  # [T, 3, H, W], [T, h, w] (latent grid)
    t, _, h, w = pixels.shape
    low, high = float(weights.min()), float(weights.max())
    weights = torch.nn.functional.interpolate(weights[None], size=(h, w), mode="nearest")[0]
    frames = pixels.permute(2, 0, 3, 1).reshape(h, t * w, 3)
    heat = (weights / weights.max().clamp_min(1e-8)).permute(1, 0, 2).reshape(h, t * w, 1).expand(h, t * w, 3)
    img = torch.cat([frames, heat.to(frames.dtype)], dim=0).clamp(0, 1)
    image = Image.fromarray((img * 255).round().byte().numpy()).resize((t * w * scale, 2 * h * scale), 0)
    probe = ImageDraw.Draw(image)
    top = [f"rollout frames 0..{t - 1}" + (f", step {step}" if step is not None else "")]
    top += wrap_label(probe, f"prompt: {last['prompt']}", LABEL_WIDTH - 8) if last.get("prompt") else []
    bottom = ["intra weight map W (methods.md A.6)", "per latent frame; black 0, white max", f"W in [{low:.3g}, {high:.3g}]"]
    row_h = max(h * scale, (max(len(top), len(bottom)) + 1) * LINE_HEIGHT)
    canvas = Image.new("RGB", (LABEL_WIDTH + image.width, 2 * row_h), (255, 255, 255))
    canvas.paste(image.crop((0, 0, image.width, h * scale)), (LABEL_WIDTH, 0))
    canvas.paste(image.crop((0, h * scale, image.width, 2 * h * scale)), (LABEL_WIDTH, row_h))
    draw = ImageDraw.Draw(canvas)
    for y0, lines in ((0, top), (row_h, bottom)):
        for k, line in enumerate(lines):
            draw.text((4, y0 + 6 + k * LINE_HEIGHT), line, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)


def _read_png(path: Path):
    """``[H, W, 3]`` uint8 numpy array of a PNG (for TensorBoard images)."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))
