"""Shapes-world learnability probe: is motion learnable on a CPU at the world's defaults?

    .venv/bin/python bench/shapes_learnability.py --minutes 12 --out outputs/bench/shapes_learnability.json

Trains a small bidirectional text-to-video flow-matching model (`CausalWanModel` in full mode, i.e. the stock
diffusers Wan) on `WorldConfig()` videos for a bounded wall time, samples videos for val and held-out prompts
with an Euler ODE (optionally with classifier-free guidance), decodes them with `PixelCodec` and reads them
with the oracle: colour / shape / direction accuracy against chance, and the mean text / motion / visual scores.

Design (chosen for fast learning on 2 CPU cores; docs/shapes_world.md has the numbers):

* data: a pool of `--pool` train items drawn with the dataset's own sampler (`sample_attributes`) and rendered
  once; each draw is augmented by two exact symmetries of the world (horizontal flip swaps left/right, all
  shapes are mirror-symmetric; time reversal swaps the direction) and gets a fresh random phrasing;
* codec `PixelCodec(2)`: 12 x 16 x 16 latents per frame; model `configs/model/shapes_probe.yaml`;
* text: a fixed multi-hot bag of words over `world.vocabulary()` as one cross-attention token (the model's
  text MLP learns the embedding); the null prompt is the zero vector (prompt dropout `--p-uncond`);
* flow matching: x_t = (1 - s) x0 + s eps, target v = eps - x0, s ~ logit-normal, AdamW + warm-up, EMA.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from streamvid.core.causal_wan import CausalWanModel
from streamvid.core.codecs import PixelCodec
from streamvid.core.config import load_config
from streamvid.core.model_config import WanModelConfig
from streamvid.core.world import (
    PALETTE,
    SHAPES,
    PromptSpec,
    WorldConfig,
    generate_prompt,
    parse_prompt,
    render_batch,
    sample_attributes,
    score_details,
    vocabulary,
)

REPO = Path(__file__).resolve().parents[1]
FLIP = {"left": "right", "right": "left", "up": "up", "down": "down"}
REVERSE = {"left": "right", "right": "left", "up": "down", "down": "up"}


class BagOfWords:
    """Fixed text encoder: prompt -> one token ``[1, dim]``, the multi-hot vector of its vocabulary words."""

    def __init__(self, dim: int) -> None:
        self.index = {w: i for i, w in enumerate(vocabulary())}
        if len(self.index) > dim:
            raise ValueError(f"text_dim={dim} is smaller than the vocabulary ({len(self.index)} words)")
        self.dim = dim

    def __call__(self, prompts: list[str | None]) -> torch.Tensor:
        """``B`` prompts (None: the null prompt, all zeros) -> ``[B, 1, dim]``."""
        out = torch.zeros(len(prompts), 1, self.dim)
        for row, prompt in enumerate(prompts):
            for word in (prompt or "").lower().replace(",", " , ").split():
                if word in self.index:
                    out[row, 0, self.index[word]] = 1.0
        return out


def zero_init(model: CausalWanModel) -> None:
    """Zero the output head and every block's residual-branch output projection (as DiT's adaLN-Zero):
    each block starts as the identity and the first prediction is 0, which speeds up early training."""
    for block in model.blocks:
        for layer in (block.attn1.to_out[0], block.attn2.to_out[0], block.ffn.net[-1]):
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    torch.nn.init.zeros_(model.proj_out.weight)
    torch.nn.init.zeros_(model.proj_out.bias)


def make_pool(world: WorldConfig, size: int) -> tuple[torch.Tensor, list[PromptSpec]]:
    """``size`` train items: latents ``[N, C, T, h, w]`` and their prompt specs."""
    attrs = [sample_attributes(world, "train", i)[0] for i in range(size)]
    videos = torch.cat([render_batch(attrs[i : i + 256], world) for i in range(0, size, 256)])
    specs = [PromptSpec(a.colour, a.shape, a.directions) for a in attrs]
    return PixelCodec(2).encode(videos).permute(0, 2, 1, 3, 4).contiguous(), specs


def draw_batch(latents, specs, batch: int, rng: random.Random, codec: PixelCodec, p_uncond: float):
    """A batch of pool items with random flips / time reversals and phrasings; None marks the null prompt."""
    idx = [rng.randrange(len(specs)) for _ in range(batch)]
    videos = codec.decode(latents[idx].permute(0, 2, 1, 3, 4))  # [B, T, 3, H, W]
    prompts = []
    for row, i in enumerate(idx):
        dirs = specs[i].segments
        if rng.random() < 0.5:  # horizontal flip: every shape is mirror-symmetric
            videos[row] = videos[row].flip(-1)
            dirs = tuple(FLIP[d] for d in dirs)
        if rng.random() < 0.5:  # time reversal: start positions are uniform, so ends are too
            videos[row] = videos[row].flip(0)
            dirs = tuple(REVERSE[d] for d in reversed(dirs))
        spec = PromptSpec(specs[i].colour, specs[i].shape, dirs)
        prompts.append(None if rng.random() < p_uncond else generate_prompt(spec, rng.randrange(2**31)))
    return codec.encode(videos).permute(0, 2, 1, 3, 4), prompts


def sample_sigmas(n: int, shift: float) -> torch.Tensor:
    """Logit-normal noise levels, shifted by ``shift`` (``s -> shift s / (1 + (shift - 1) s)``)."""
    s = torch.sigmoid(torch.randn(n))
    return shift * s / (1 + (shift - 1) * s)


@torch.no_grad()
def generate(model, text, prompts, shape, steps: int, shift: float, cfg: float, seed: int) -> torch.Tensor:
    """Euler flow-matching ODE from noise (sigma 1 -> 0 on a shifted grid) -> latents ``[B, C, T, h, w]``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(prompts), *shape, generator=gen)
    s = torch.linspace(1.0, 0.0, steps + 1)
    sig = shift * s / (1 + (shift - 1) * s)
    cond, null = text(prompts), text([None] * len(prompts))
    for i in range(steps):
        t = torch.full((len(prompts),), float(sig[i]) * 1000)
        v = model(x, t, encoder_hidden_states=cond, return_dict=False)[0]
        if cfg != 1.0:
            v_null = model(x, t, encoder_hidden_states=null, return_dict=False)[0]
            v = v_null + cfg * (v - v_null)
        x = x + (sig[i + 1] - sig[i]) * v
    return x


def evaluate(model, text, codec, world: WorldConfig, split: str, n: int, args) -> dict:
    """Generate ``n`` videos for the first ``n`` prompts of ``split`` and read them with the oracle."""
    prompts = [sample_attributes(world, split, i)[1] for i in range(n)]
    shape = (codec.latent_channels, world.num_frames, world.height // 2, world.width // 2)
    rows = []
    for i in range(0, n, 32):
        lat = generate(model, text, prompts[i : i + 32], shape, args.steps, args.shift, args.cfg, args.seed + i)
        videos = codec.decode(lat.permute(0, 2, 1, 3, 4)).clamp(0, 1)
        rows += [score_details(v, p) for v, p in zip(videos, prompts[i : i + 32])]
        if i == 0 and args.png:  # first 8 videos, one per row, frames left to right
            grid = videos[:8].permute(0, 3, 1, 4, 2).flatten(2, 3).flatten(0, 1)
            path = Path(args.png.replace(".png", f"_{split}.png"))
            Image.fromarray((grid * 255).round().byte().numpy()).resize((grid.shape[1] * 3, grid.shape[0] * 3), 0).save(path)
    mean = lambda xs: round(sum(xs) / len(xs), 4)  # noqa: E731
    out = {f"{k}_accuracy": mean([r.parts.get(k, 0.0) for r in rows]) for k in ("colour", "shape", "direction")}
    out |= {f"mean_{k}": mean([getattr(r, k) for r in rows]) for k in ("text", "motion", "visual")}
    out["moving_fraction"] = mean([r.parts.get("moving", 0.0) for r in rows])
    out["no_object"] = sum(not r.parts for r in rows)
    out["examples"] = [
        {
            "prompt": p,
            "read": [r.reading.colour, r.reading.shape, r.reading.segment_directions(1)[0]],
            "speed_px_per_frame": round(r.reading.speed, 2),
            "path": [[round(float(c), 1) for c in r.reading.positions[t]] for t in (0, -1)],
        }
        for p, r in list(zip(prompts, rows))[:6]
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=12.0, help="training wall time")
    ap.add_argument("--out", default="outputs/bench/shapes_learnability.json")
    ap.add_argument("--model", default=str(REPO / "configs/model/shapes_probe.yaml"))
    ap.add_argument("--override", action="append", default=[], help="model config override, e.g. num_layers=3")
    ap.add_argument("--pool", type=int, default=2048, help="pre-rendered train items")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.995, help="EMA decay (0: no EMA)")
    ap.add_argument("--p-uncond", type=float, default=0.1, help="prompt dropout, for CFG")
    ap.add_argument("--train-shift", type=float, default=1.0, help="shift of the logit-normal noise levels")
    ap.add_argument("--steps", type=int, default=20, help="Euler steps")
    ap.add_argument("--shift", type=float, default=3.0, help="sampling grid shift")
    ap.add_argument("--cfg", type=float, default=2.0, help="guidance scale (1: off)")
    ap.add_argument("--eval", type=int, default=64, help="videos per split (val, heldout)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast")
    ap.add_argument("--png", default="", help="write the first 8 sampled videos per split to PNG_<split>.png")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    load_before = os.getloadavg()
    world, codec = WorldConfig(), PixelCodec(2)
    mcfg = load_config(args.model, args.override, schema=WanModelConfig)
    model = CausalWanModel(**mcfg.to_diffusers_kwargs())
    ema = copy.deepcopy(model).requires_grad_(False) if args.ema > 0 else model
    text = BagOfWords(mcfg.text_dim)
    zero_init(model)
    params = sum(p.numel() for p in model.parameters())

    t0 = time.time()
    latents, specs = make_pool(world, args.pool)
    prep_s = time.time() - t0
    print(f"model {params / 1e6:.2f} M params; pool of {args.pool} rendered in {prep_s:.0f} s", flush=True)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    losses, step, t0 = [], 0, time.time()
    while time.time() - t0 < args.minutes * 60:
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        x0, prompts = draw_batch(latents, specs, args.batch, rng, codec, args.p_uncond)
        sigma = sample_sigmas(args.batch, args.train_shift).view(-1, 1, 1, 1, 1)
        noise = torch.randn_like(x0)
        x_t = (1 - sigma) * x0 + sigma * noise
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            v = model(x_t, sigma.flatten() * 1000, encoder_hidden_states=text(prompts), return_dict=False)[0]
        loss = F.mse_loss(v.float(), noise - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if args.ema > 0:
            decay = min(args.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
        step += 1
        if step % 50 == 0:
            recent = sum(losses[-50:]) / 50
            print(f"step {step} loss {recent:.4f} ({time.time() - t0:.0f} s)", flush=True)
    train_s = time.time() - t0

    t0 = time.time()
    ema.eval()
    results = {split: evaluate(ema, text, codec, world, split, args.eval, args) for split in ("val", "heldout")}
    eval_s = time.time() - t0
    window = max(1, min(50, len(losses) // 10))
    curve = [
        {"step": i + window, "loss": round(sum(losses[i : i + window]) / window, 4)}
        for i in range(0, len(losses) - window + 1, max(window, len(losses) // 20))
    ]
    report = {
        "benchmark": "shapes_learnability",
        "command": "python bench/shapes_learnability.py " + " ".join(f"--{k}={v}" for k, v in vars(args).items()),
        "args": vars(args),
        "world": {k: str(v) if isinstance(v, tuple) else v for k, v in vars(world).items()},
        "model": {**mcfg.to_diffusers_kwargs(), "parameters": params, "text_encoder": "multi-hot bag of words"},
        "chance": {"colour": round(1 / len(PALETTE), 4), "shape": round(1 / len(SHAPES), 4), "direction": 0.25},
        "training": {
            "steps": step,
            "samples_seen": step * args.batch,
            "minutes": round(train_s / 60, 2),
            "loss_first_50": round(sum(losses[:50]) / max(1, len(losses[:50])), 4),
            "loss_last_50": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
            "loss_curve": curve,
        },
        "results": results,
        "wall_time_s": {"data": round(prep_s, 1), "train": round(train_s, 1), "eval": round(eval_s, 1)},
        "machine": {
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "processor": platform.processor() or platform.machine(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "torch": torch.__version__,
        },
    }
    assert all(parse_prompt(e["prompt"]) for r in results.values() for e in r["examples"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for split, r in results.items():
        print(split, {k: v for k, v in r.items() if k != "examples"})
    print(f"train {train_s / 60:.1f} min, {step} steps; wrote {out}")


if __name__ == "__main__":
    main()
