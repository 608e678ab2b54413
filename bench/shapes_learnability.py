"""Shapes-world learnability probe: is motion learnable on a CPU at the world's defaults?

    .venv/bin/python bench/shapes_learnability.py --out outputs/bench/shapes_learnability.json   # 15 min

Trains a small text-to-video flow-matching model on `WorldConfig()` videos for a bounded wall time, samples
videos for val and held-out prompts with an Euler ODE (with classifier-free guidance), decodes them with
`PixelCodec` and reads them with the oracle: colour / shape / direction accuracy against chance, the mean
text / motion / visual scores, and how much the flow loss rises when the prompt's colour or direction is
swapped (does the model use that word at all?).

Two models (docs/shapes_world.md has the numbers):

* ``--arch conv`` (default): `ConvFlowNet`, a 3-D conv U-Net with FiLM conditioning, 1.5 M parameters at
  width 48. It learns colour, shape and direction well above chance within 15 minutes on one core: the
  world's motion is learnable on a CPU.
* ``--arch wan``: `CausalWanModel` (the stock diffusers Wan in full mode; ``--causal`` for the block-causal
  mask, ``--p-chunk-noise`` for diffusion-forcing style per-chunk noise levels, ``--sampler chunked`` to
  denoise chunk by chunk on clean context) with `configs/model/shapes_probe.yaml`. At the same budget it
  learns colour only; this is the risk the teacher issue has to budget for.
  Diagnostics: ``--wan-abs-pos``, ``--wan-conv-stem``, ``--wan-text-adaln``, ``--text-tokens words``.

Design (chosen for fast learning on 2 CPU cores):

* data: a pool of `--pool` train items drawn with the dataset's own sampler (`sample_attributes`) and rendered
  once; each draw is augmented by two exact symmetries of the world (horizontal flip swaps left/right, all
  shapes are mirror-symmetric; time reversal swaps the direction) and gets a fresh random phrasing;
* codec `PixelCodec(2)`: 12 x 16 x 16 latents per frame;
* text: a fixed multi-hot bag of words over `world.vocabulary()` as one token (Wan: cross-attention; conv:
  FiLM); the null prompt is the zero vector (prompt dropout `--p-uncond`);
* flow matching: x_t = (1 - s) x0 + s eps, target v = eps - x0, s ~ logit-normal, AdamW + warm-up, EMA.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from streamvid.core.causal_wan import BlockCausal, CausalWanModel
from streamvid.core.codecs import PixelCodec
from streamvid.core.config import ConfigError, load_config
from streamvid.core.conv_flow import ConvFlowNet
from streamvid.core.euler import euler_solve
from streamvid.core.model_config import WanModelConfig
from streamvid.core.score_model import ScoreModel
from streamvid.core.text.bag_of_words import BagOfWordsTextEncoder
from streamvid.core.world import (
    PALETTE,
    SHAPES,
    PromptSpec,
    WorldConfig,
    render_batch,
    sample_attributes,
    score_details,
    vocabulary,
)
from streamvid.distill.flow_matching import (
    EMA,
    flow_distillation_loss,
    flow_matching_loss,
    frame_noise_levels,
)
from streamvid.distill.networks import zero_init_wan
from streamvid.distill.shapes_data import REVERSE, draw_batch, make_pool

REPO = Path(__file__).resolve().parents[1]


def add_absolute_positions(model: CausalWanModel, with_time: bool = False) -> None:
    """Diagnostic: a learned absolute spatial position embedding ``[1, D, 1, h, w]`` (zero-initialised) added
    to the patch embeddings, which stock Wan lacks (its RoPE is relative). Tests whether absolute position is
    what keeps the transformer from learning where a direction's path starts. ``with_time`` adds a learned
    per-frame embedding ``[1, D, T, 1, 1]`` too (the frame index within the clip: "early frames on the left"
    for a rightward prompt needs it; the conv probe gets it from zero padding in time)."""
    dim, (_, ph, pw) = (
        model.config.num_attention_heads * model.config.attention_head_dim,
        model.config.patch_size,
    )
    world = WorldConfig()
    grid = (world.height // 2 // ph, world.width // 2 // pw)
    model.patch_embedding.abs_pos = torch.nn.Parameter(torch.zeros(1, dim, 1, *grid))
    model.patch_embedding.abs_time = torch.nn.Parameter(torch.zeros(1, dim, world.num_frames, 1, 1))
    model.patch_embedding.use_time = with_time

    def add(module, _, out):
        out = out + module.abs_pos
        return out + module.abs_time[:, :, : out.shape[2]] if module.use_time else out

    model.patch_embedding.register_forward_hook(add)


def scale_qk_norms(model: CausalWanModel, gain: float) -> None:
    """Recipe: initialise the self-attention query / key RMSNorm weights to ``sqrt(gain)``, so attention logits
    start ``gain`` times larger. With qk-norm, logits are bounded by about ``sqrt(head_dim)`` (5.7 at 32) until
    those weights grow, too flat to single out one neighbour among hundreds of keys, which motion needs."""
    for block in model.blocks:
        for norm in (block.attn1.norm_q, block.attn1.norm_k):
            torch.nn.init.constant_(norm.weight, gain**0.5)


def add_conv_stem(model: CausalWanModel, width: int = 64) -> None:
    """Diagnostic: replace the linear patch embedding by a 3x3x3 conv (zero-padded: sees the frame border and
    local motion) followed by the stock patchify conv."""
    patchify = model.patch_embedding
    model.patch_embedding = torch.nn.Sequential(
        torch.nn.Conv3d(patchify.in_channels, width, 3, padding=1),
        torch.nn.SiLU(),
        torch.nn.Conv3d(width, patchify.out_channels, patchify.kernel_size, stride=patchify.stride),
    )


def add_text_adaln(model: CausalWanModel, text_dim: int) -> None:
    """Diagnostic: also feed the prompt into Wan's adaLN (a zero-initialised projection of the bag of words added
    to the per-frame time embedding), i.e. multiplicative conditioning like the conv probe's FiLM, besides the
    stock additive cross-attention."""
    embedder = model.condition_embedder.time_embedder
    embedder.text_adaln = torch.nn.Linear(text_dim, embedder.linear_2.out_features)
    torch.nn.init.zeros_(embedder.text_adaln.weight)
    torch.nn.init.zeros_(embedder.text_adaln.bias)

    def stash_text(module, args, kwargs):
        module.condition_embedder.time_embedder.prompt = kwargs["encoder_hidden_states"][:, 0]

    model.register_forward_pre_hook(stash_text, with_kwargs=True)
    embedder.register_forward_hook(lambda module, _, out: out + module.text_adaln(module.prompt)[:, None])


def generate(model, text, prompts, shape, args, seed: int) -> torch.Tensor:
    """Latents ``[B, C, T, h, w]`` sampled by `euler_solve` (``args.steps`` Euler steps on a grid shifted by
    ``args.shift``, CFG scale ``args.cfg`` against the null prompt); ``args.sampler == "chunked"`` denoises
    ``args.chunk`` frames at a time on the clean frames generated so far, as a streaming student does."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(prompts), *shape, generator=gen)
    return euler_solve(
        ScoreModel(model),
        noise,
        text(prompts),
        text([""] * len(prompts)),
        guidance=args.cfg - 1.0,  # c + g (c - u) with g = scale - 1
        num_steps=args.steps,
        shift=args.shift,
        chunk_frames=args.chunk if args.sampler == "chunked" else None,
        block_causal=BlockCausal(args.chunk) if args.causal else None,
    ).x0


@torch.no_grad()
def sensitivity(model, text, codec: PixelCodec, world: WorldConfig, args, n: int = 32) -> dict:
    """How much the model uses each prompt attribute: the relative rise of the flow-matching loss on ``n``
    val videos when the prompt's colour (next palette colour) or direction (reversed) is swapped, per sigma;
    ``ctx_`` rows keep the first chunk clean (the streaming case) and score the other frames."""
    items = [sample_attributes(world, "val", i)[0] for i in range(n)]
    x0 = codec.encode(render_batch(items, world)).permute(0, 2, 1, 3, 4)
    colours = list(PALETTE)
    variants = {
        "true": [PromptSpec(a.colour, a.shape, a.directions) for a in items],
        "colour": [
            PromptSpec(colours[(colours.index(a.colour) + 1) % len(colours)], a.shape, a.directions)
            for a in items
        ],
        "direction": [PromptSpec(a.colour, a.shape, tuple(REVERSE[d] for d in a.directions)) for a in items],
    }
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    out = {}
    mask = BlockCausal(args.chunk) if args.causal else None
    for context in (False, True):
        for sigma in (0.5, 0.8, 0.95):
            level = torch.full((n, x0.shape[2]), sigma)
            if context:
                level[:, : args.chunk] = 0.0
            x_t = x0 + level[:, None, :, None, None] * (noise - x0)
            scored = slice(args.chunk if context else 0, None)
            loss = {
                k: F.mse_loss(
                    model(
                        x_t,
                        level * 1000,
                        encoder_hidden_states=text([p.canonical for p in v]),
                        block_causal=mask,
                        return_dict=False,
                    )[0][:, :, scored],
                    (noise - x0)[:, :, scored],
                ).item()
                for k, v in variants.items()
            }
            key = f"{'ctx_' if context else ''}sigma_{sigma}"
            out[key] = {k: round(loss[k] / loss["true"] - 1, 4) for k in ("colour", "direction")}
    return out


def evaluate(model, text, codec, world: WorldConfig, split: str, n: int, args) -> dict:
    """Generate ``n`` videos for the first ``n`` prompts of ``split`` and read them with the oracle."""
    prompts = [sample_attributes(world, split, i)[1] for i in range(n)]
    shape = (codec.latent_channels, world.num_frames, world.height // 2, world.width // 2)
    rows = []
    for i in range(0, n, 32):
        lat = generate(model, text, prompts[i : i + 32], shape, args, args.seed + i)
        videos = codec.decode(lat.permute(0, 2, 1, 3, 4)).clamp(0, 1)
        rows += [score_details(v, p) for v, p in zip(videos, prompts[i : i + 32])]
        if i == 0 and args.png:  # first 8 videos, one per row, frames left to right
            grid = videos[:8].permute(0, 3, 1, 4, 2).flatten(2, 3).flatten(0, 1)
            path = Path(args.png).with_name(f"{Path(args.png).stem}_{split}.png")
            Image.fromarray((grid * 255).round().byte().numpy()).resize(
                (grid.shape[1] * 3, grid.shape[0] * 3), 0
            ).save(path)
    mean = lambda xs: round(sum(xs) / len(xs), 4)  # noqa: E731
    out = {
        f"{k}_accuracy": mean([r.parts.get(k, 0.0) for r in rows]) for k in ("colour", "shape", "direction")
    }
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
    ap.add_argument("--minutes", type=float, default=15.0, help="training wall time")
    ap.add_argument("--out", default="outputs/bench/shapes_learnability.json")
    ap.add_argument("--model", default=str(REPO / "configs/model/shapes_probe.yaml"))
    ap.add_argument(
        "--override", action="append", default=[], help="model config override, e.g. num_layers=3"
    )
    ap.add_argument("--arch", choices=("wan", "conv"), default="conv", help="Wan transformer or conv U-Net")
    ap.add_argument("--conv-width", type=int, default=48, help="conv U-Net channels at full resolution")
    ap.add_argument("--wan-abs-pos", action="store_true", help="diagnostic: learned absolute positions")
    ap.add_argument("--wan-conv-stem", action="store_true", help="diagnostic: 3x3x3 conv before patchify")
    ap.add_argument("--wan-text-adaln", action="store_true", help="diagnostic: prompt into adaLN too")
    ap.add_argument("--wan-abs-time", action="store_true", help="with --wan-abs-pos: learned frame index too")
    ap.add_argument("--qk-gain", type=float, default=1.0, help="initial self-attention logit gain (qk norms)")
    ap.add_argument(
        "--eval-at",
        default="",
        help="comma-separated training minutes at which to checkpoint and evaluate (default: only at the end)",
    )
    ap.add_argument(
        "--teacher",
        default="",
        help="flow distillation: regress the guided flow of this conv-run checkpoint (--ckpt of an --arch conv run) "
        "instead of the data's eps - x0",
    )
    ap.add_argument("--teacher-width", type=int, default=48, help="--conv-width of the teacher run")
    ap.add_argument("--teacher-cfg", type=float, default=2.0, help="CFG scale of the teacher's target flow")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: wall time only)")
    ap.add_argument("--ckpt", default="", help="checkpoint file: written at each eval point, resumed if present")
    ap.add_argument(
        "--text-tokens", choices=("bag", "words"), default="bag", help="one bag token or a token per word"
    )
    ap.add_argument("--pool", type=int, default=2048, help="pre-rendered train items")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.995, help="EMA decay (0: no EMA)")
    ap.add_argument("--p-uncond", type=float, default=0.1, help="prompt dropout, for CFG")
    ap.add_argument("--train-shift", type=float, default=3.0, help="shift of the logit-normal noise levels")
    ap.add_argument("--chunk", type=int, default=3, help="frames per chunk (noise levels, mask, sampler)")
    ap.add_argument("--p-chunk-noise", type=float, default=0.0, help="share of samples with per-chunk noise")
    ap.add_argument(
        "--causal", action=argparse.BooleanOptionalAction, default=False, help="block-causal mask"
    )
    ap.add_argument("--sampler", choices=("joint", "chunked"), default="joint")
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
    if args.chunk < 1 or world.num_frames % args.chunk:
        ap.error(f"--chunk={args.chunk} must divide the world's {world.num_frames} frames")
    try:
        mcfg = load_config(args.model, args.override, schema=WanModelConfig)
    except ConfigError as err:
        ap.error(str(err))
    if args.arch == "wan":
        model = CausalWanModel(**mcfg.to_diffusers_kwargs())
        zero_init_wan(model)
        if args.wan_abs_pos:
            add_absolute_positions(model, with_time=args.wan_abs_time)
        if args.qk_gain != 1.0:
            scale_qk_norms(model, args.qk_gain)
        if args.wan_conv_stem:
            add_conv_stem(model)
        if args.wan_text_adaln:
            add_text_adaln(model, mcfg.text_dim)
    else:
        if args.text_tokens != "bag" or args.wan_abs_pos or args.wan_conv_stem or args.wan_text_adaln:
            ap.error("--text-tokens words and the --wan-* diagnostics need --arch wan")
        if args.causal:
            ap.error("--causal needs --arch wan (the conv probe is bidirectional)")
        model = ConvFlowNet(codec.latent_channels, mcfg.text_dim, width=args.conv_width)
    ema = EMA(model, args.ema) if args.ema > 0 else None
    sampled = ema.module if ema is not None else model  # what is evaluated: the EMA weights
    text = BagOfWordsTextEncoder(vocabulary(), mcfg.text_dim, per_word=args.text_tokens == "words")
    params = sum(p.numel() for p in model.parameters())
    teacher = None
    if args.teacher:  # the EMA weights of a conv run
        state = torch.load(args.teacher, weights_only=True)["ema"]
        net = ConvFlowNet(codec.latent_channels, mcfg.text_dim, width=args.teacher_width)
        net.load_state_dict({k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")})
        teacher = ScoreModel(net.requires_grad_(False).eval())

    t0 = time.time()
    latents, specs = make_pool(world, args.pool, codec)
    prep_s = time.time() - t0
    print(f"model {params / 1e6:.2f} M params; pool of {args.pool} rendered in {prep_s:.0f} s", flush=True)

    mask = BlockCausal(args.chunk) if args.causal else None
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    points = sorted(float(m) for m in args.eval_at.split(",") if m.strip()) or [args.minutes]
    if points[-1] > args.minutes:
        ap.error(f"--eval-at {points[-1]} is past --minutes {args.minutes}")
    if points[-1] < args.minutes:
        points.append(args.minutes)
    losses, step, trained_s, checkpoints = [], 0, 0.0, []
    if args.ckpt and Path(args.ckpt).exists():  # resume: weights, optimizer, EMA, RNG, progress
        state = torch.load(args.ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        losses, step, trained_s, checkpoints = state["losses"], state["step"], state["trained_s"], state["points"]
        rng.setstate(state["py_rng"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed {args.ckpt} at step {step} ({trained_s / 60:.1f} min trained)", flush=True)
    done = {c["minutes_target"] for c in checkpoints}

    def report() -> dict:
        window = max(1, min(50, len(losses) // 10))
        curve = [
            {"step": i + window, "loss": round(sum(losses[i : i + window]) / window, 4)}
            for i in range(0, len(losses) - window + 1, max(window, len(losses) // 20))
        ]
        return {
            "benchmark": "shapes_learnability",
            "command": " ".join([".venv/bin/python", *sys.argv]),
            "args": vars(args),
            "world": {k: str(v) if isinstance(v, tuple) else v for k, v in vars(world).items()},
            "model": {
                "arch": args.arch,
                **(mcfg.to_diffusers_kwargs() if args.arch == "wan" else {"conv_width": args.conv_width}),
                "parameters": params,
                "text_encoder": "one-hot token per word"
                if args.text_tokens == "words"
                else "multi-hot bag of words",
            },
            "chance": {
                "colour": round(1 / len(PALETTE), 4),
                "shape": round(1 / len(SHAPES), 4),
                "direction": 0.25,
            },
            "training": {
                "steps": step,
                "samples_seen": step * args.batch,
                "minutes": round(trained_s / 60, 2),
                "loss_first_50": round(sum(losses[:50]) / max(1, len(losses[:50])), 4),
                "loss_last_50": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
                "loss_curve": curve,
            },
            "checkpoints": checkpoints,
            "results": checkpoints[-1]["results"] if checkpoints else {},
            "wall_time_s": {"data": round(prep_s, 1), "train": round(trained_s, 1)},
            "machine": {
                "cpus": os.cpu_count(),
                "threads": args.threads,
                "processor": platform.processor() or platform.machine(),
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                "torch": torch.__version__,
            },
        }

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for target in points:
        if target in done:
            continue
        t0 = time.time() - trained_s
        while time.time() - t0 < target * 60 and not (args.max_steps and step >= args.max_steps):
            for group in opt.param_groups:
                group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
            x0, prompts = draw_batch(latents, specs, args.batch, rng, codec, args.p_uncond)
            sigma = frame_noise_levels(args.batch, x0.shape[2], args.chunk, args.train_shift, args.p_chunk_noise)
            noise = torch.randn_like(x0)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                if teacher is None:
                    loss = flow_matching_loss(ScoreModel(model), x0, text(prompts), sigma, noise, block_causal=mask)
                else:
                    null = text([""] * len(prompts))
                    loss = flow_distillation_loss(
                        ScoreModel(model), teacher, x0, text(prompts), null, sigma, noise, args.teacher_cfg - 1.0,
                        block_causal=mask,
                    )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if ema is not None:
                ema.update(model)
            losses.append(loss.item())
            step += 1
            if step % 50 == 0:
                recent = sum(losses[-50:]) / 50
                print(f"step {step} loss {recent:.4f} ({time.time() - t0:.0f} s)", flush=True)
        trained_s = time.time() - t0
        t_eval = time.time()
        sampled.eval()
        results = {
            split: evaluate(sampled, text, codec, world, split, args.eval, args) for split in ("val", "heldout")
        }
        results["loss_increase_when_swapped"] = sensitivity(sampled, text, codec, world, args)
        checkpoints.append(
            {
                "minutes_target": target,
                "minutes": round(trained_s / 60, 2),
                "steps": step,
                "eval_s": round(time.time() - t_eval, 1),
                "results": results,
            }
        )
        if args.ckpt:  # atomically: a kill mid-write keeps the previous checkpoint
            tmp = Path(args.ckpt).with_suffix(".tmp")
            torch.save(
                {
                    "model": model.state_dict(),
                    "ema": ema.state_dict() if ema is not None else {},
                    "opt": opt.state_dict(),
                    "losses": losses,
                    "step": step,
                    "trained_s": trained_s,
                    "points": checkpoints,
                    "py_rng": rng.getstate(),
                    "torch_rng": torch.get_rng_state(),
                },
                tmp,
            )
            os.replace(tmp, args.ckpt)
        out.write_text(json.dumps(report(), indent=2))
        summary = {
            s: {k: results[s][k] for k in ("colour_accuracy", "shape_accuracy", "direction_accuracy", "mean_motion")}
            for s in ("val", "heldout")
        }
        gap = results["loss_increase_when_swapped"]["sigma_0.8"]["direction"]
        print(f"[{trained_s / 60:.1f} min, step {step}] {summary} direction-swap gap {gap}", flush=True)
        if args.max_steps and step >= args.max_steps:
            break
    print(f"train {trained_s / 60:.1f} min, {step} steps; wrote {out}")


if __name__ == "__main__":
    main()
