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
import copy
import json
import math
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
from streamvid.core.model_config import WanModelConfig
from streamvid.core.world import (
    PALETTE,
    SHAPES,
    PromptSpec,
    WorldConfig,
    generate_prompt,
    render_batch,
    sample_attributes,
    score_details,
    vocabulary,
)

REPO = Path(__file__).resolve().parents[1]
FLIP = {"left": "right", "right": "left", "up": "up", "down": "down"}
REVERSE = {"left": "right", "right": "left", "up": "down", "down": "up"}


class BagOfWords:
    """Fixed text encoder: a prompt -> one token ``[1, dim]``, the multi-hot vector of its vocabulary words, or
    with ``per_word`` one one-hot token per vocabulary word ``[max_words, dim]`` (zero-padded, as Wan pads its
    text context)."""

    def __init__(self, dim: int, per_word: bool = False, max_words: int = 12) -> None:
        self.per_word, self.max_words = per_word, max_words
        self.index = {w: i for i, w in enumerate(vocabulary())}
        if len(self.index) > dim:
            raise ValueError(f"text_dim={dim} is smaller than the vocabulary ({len(self.index)} words)")
        self.dim = dim

    def __call__(self, prompts: list[str | None]) -> torch.Tensor:
        """``B`` prompts (None: the null prompt, all zeros) -> ``[B, 1 or max_words, dim]``."""
        out = torch.zeros(len(prompts), self.max_words if self.per_word else 1, self.dim)
        for row, prompt in enumerate(prompts):
            words = [w for w in (prompt or "").lower().replace(",", " , ").split() if w in self.index]
            for position, word in enumerate(words[: self.max_words]):
                out[row, position if self.per_word else 0, self.index[word]] = 1.0
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


class FiLMResBlock(torch.nn.Module):
    """GroupNorm -> per-frame FiLM from the condition -> SiLU -> 3x3x3 conv, twice, plus the input."""

    def __init__(self, width: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = torch.nn.GroupNorm(8, width), torch.nn.GroupNorm(8, width)
        self.conv1 = torch.nn.Conv3d(width, width, 3, padding=1)
        self.conv2 = torch.nn.Conv3d(width, width, 3, padding=1)
        self.film = torch.nn.Linear(cond_dim, 2 * width)
        torch.nn.init.zeros_(self.conv2.weight)
        torch.nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, W, T, h, w]``, ``cond`` ``[B, T, cond_dim]`` -> ``[B, W, T, h, w]``."""
        scale, shift = self.film(cond).permute(0, 2, 1)[..., None, None].chunk(2, dim=1)
        h = self.conv1(F.silu(self.norm1(x) * (1 + scale) + shift))
        return x + self.conv2(F.silu(self.norm2(h)))


class ConvFlowNet(torch.nn.Module):
    """A small 3-D convolutional U-Net flow model, the convolutional counterpart of the Wan probe.

    Latents ``[B, C, T, h, w]`` -> 3x3x3 conv stem (width ``W``) -> FiLM res-block -> stride-(1, 2, 2) conv
    (``2W``) -> two FiLM res-blocks -> transposed conv back to ``h x w`` + skip -> FiLM res-block -> conv to
    ``C`` (zero-initialised). The condition is an MLP of the sinusoidal embedding of each frame's timestep and
    the bag-of-words prompt. Convolutions are local and zero-padded, so unlike RoPE attention they see
    absolute position (the frame border) and short-range motion from the first steps of training.
    Same call signature as `CausalWanModel` for the parts the probe uses (full attention only).
    """

    def __init__(self, channels: int, text_dim: int, width: int = 32, cond_dim: int = 128) -> None:
        super().__init__()
        self.freq_dim = 64
        self.cond = torch.nn.Sequential(
            torch.nn.Linear(self.freq_dim + text_dim, cond_dim),
            torch.nn.SiLU(),
            torch.nn.Linear(cond_dim, cond_dim),
        )
        self.stem = torch.nn.Conv3d(channels, width, 3, padding=1)
        self.enc = FiLMResBlock(width, cond_dim)
        self.down = torch.nn.Conv3d(width, 2 * width, 3, stride=(1, 2, 2), padding=1)
        self.mid = torch.nn.ModuleList([FiLMResBlock(2 * width, cond_dim) for _ in range(2)])
        self.up = torch.nn.ConvTranspose3d(2 * width, width, (1, 2, 2), stride=(1, 2, 2))
        self.dec = FiLMResBlock(width, cond_dim)
        self.out_norm = torch.nn.GroupNorm(8, width)
        self.out = torch.nn.Conv3d(width, channels, 3, padding=1)
        torch.nn.init.zeros_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)

    def forward(self, x, timestep, encoder_hidden_states, block_causal=None, return_dict=False):
        """``x`` ``[B, C, T, h, w]``, ``timestep`` ``[B]`` or ``[B, T]`` in [0, 1000], text ``[B, 1, text_dim]``
        -> ``([B, C, T, h, w],)`` flow prediction."""
        if block_causal is not None:
            raise ValueError("the convolutional probe is bidirectional: run it without --causal")
        batch, _, frames = x.shape[:3]
        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(batch, frames)
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device) / half)
        angles = timestep[..., None].float() * freqs  # [B, T, half]
        text = encoder_hidden_states[:, :1].expand(batch, frames, -1)
        cond = self.cond(torch.cat([angles.cos(), angles.sin(), text], dim=-1))  # [B, T, cond_dim]
        skip = self.enc(self.stem(x), cond)
        h = self.down(skip)
        for block in self.mid:
            h = block(h, cond)
        h = self.dec(self.up(h) + skip, cond)
        return (self.out(F.silu(self.out_norm(h))),)


def add_absolute_positions(model: CausalWanModel) -> None:
    """Diagnostic: a learned absolute spatial position embedding ``[1, D, 1, h, w]`` (zero-initialised) added
    to the patch embeddings, which stock Wan lacks (its RoPE is relative). Tests whether absolute position is
    what keeps the transformer from learning where a direction's path starts."""
    dim, (_, ph, pw) = (
        model.config.num_attention_heads * model.config.attention_head_dim,
        model.config.patch_size,
    )
    grid = (WorldConfig().height // 2 // ph, WorldConfig().width // 2 // pw)
    model.patch_embedding.abs_pos = torch.nn.Parameter(torch.zeros(1, dim, 1, *grid))
    model.patch_embedding.register_forward_hook(lambda module, _, out: out + module.abs_pos)


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


def make_pool(world: WorldConfig, size: int, codec: PixelCodec) -> tuple[torch.Tensor, list[PromptSpec]]:
    """``size`` train items: latents ``[N, C, T, h, w]`` and their prompt specs."""
    attrs = [sample_attributes(world, "train", i)[0] for i in range(size)]
    videos = torch.cat([render_batch(attrs[i : i + 256], world) for i in range(0, size, 256)])
    specs = [PromptSpec(a.colour, a.shape, a.directions) for a in attrs]
    return codec.encode(videos).permute(0, 2, 1, 3, 4).contiguous(), specs


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


def train_sigmas(batch: int, frames: int, args) -> torch.Tensor:
    """Per-frame noise levels ``[B, T]``: with probability ``args.p_chunk_noise`` a sample draws one level per
    chunk of ``args.chunk`` frames (diffusion forcing: clean-ish chunks next to noisy ones teach "continue the
    motion the prompt names"), otherwise one level for the whole clip."""
    chunks = frames // args.chunk
    per_chunk = sample_sigmas(batch * chunks, args.train_shift).view(batch, chunks)
    per_clip = sample_sigmas(batch, args.train_shift)[:, None].expand(batch, chunks)
    use_chunk = torch.rand(batch, 1) < args.p_chunk_noise
    return torch.where(use_chunk, per_chunk, per_clip).repeat_interleave(args.chunk, dim=1)


def flow(model, x, sigma, cond, null, cfg: float, mask) -> torch.Tensor:
    """Guided flow prediction ``[B, C, T, h, w]`` at per-frame noise levels ``sigma`` ``[B, T]``."""
    t = sigma * 1000
    v = model(x, t, encoder_hidden_states=cond, block_causal=mask, return_dict=False)[0]
    if cfg != 1.0:
        v_null = model(x, t, encoder_hidden_states=null, block_causal=mask, return_dict=False)[0]
        v = v_null + cfg * (v - v_null)
    return v


@torch.no_grad()
def generate(model, text, prompts, shape, args, seed: int) -> torch.Tensor:
    """Euler flow-matching ODE from noise (sigma 1 -> 0 on a grid shifted by ``args.shift``) with
    classifier-free guidance ``args.cfg`` against the null prompt -> latents ``[B, C, T, h, w]``.

    ``args.sampler == "joint"`` denoises all frames together; ``"chunked"`` denoises ``args.chunk`` frames at a
    time given the clean frames generated so far (sigma 0), as a streaming student does.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(prompts), *shape, generator=gen)
    s = torch.linspace(1.0, 0.0, args.steps + 1)
    grid = args.shift * s / (1 + (args.shift - 1) * s)
    cond, null = text(prompts), text([None] * len(prompts))
    mask = BlockCausal(args.chunk) if args.causal else None
    frames = shape[1]
    spans = (
        [(0, frames)]
        if args.sampler == "joint"
        else [(a, a + args.chunk) for a in range(0, frames, args.chunk)]
    )
    for start, stop in spans:
        for i in range(args.steps):
            sigma = torch.zeros(len(prompts), stop)
            sigma[:, start:stop] = grid[i]
            v = flow(model, x[:, :, :stop], sigma, cond, null, args.cfg, mask)
            x[:, :, start:stop] += (grid[i + 1] - grid[i]) * v[:, :, start:stop]
    return x


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
        zero_init(model)
        if args.wan_abs_pos:
            add_absolute_positions(model)
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
    ema = copy.deepcopy(model).requires_grad_(False) if args.ema > 0 else model
    text = BagOfWords(mcfg.text_dim, per_word=args.text_tokens == "words")
    params = sum(p.numel() for p in model.parameters())

    t0 = time.time()
    latents, specs = make_pool(world, args.pool, codec)
    prep_s = time.time() - t0
    print(f"model {params / 1e6:.2f} M params; pool of {args.pool} rendered in {prep_s:.0f} s", flush=True)

    mask = BlockCausal(args.chunk) if args.causal else None
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    losses, step, t0 = [], 0, time.time()
    while time.time() - t0 < args.minutes * 60:
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        x0, prompts = draw_batch(latents, specs, args.batch, rng, codec, args.p_uncond)
        sigma = train_sigmas(args.batch, x0.shape[2], args)  # [B, T]
        noise = torch.randn_like(x0)
        x_t = (1 - sigma[:, None, :, None, None]) * x0 + sigma[:, None, :, None, None] * noise
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            v = model(
                x_t, sigma * 1000, encoder_hidden_states=text(prompts), block_causal=mask, return_dict=False
            )[0]
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
    results = {
        split: evaluate(ema, text, codec, world, split, args.eval, args) for split in ("val", "heldout")
    }
    results["loss_increase_when_swapped"] = sensitivity(ema, text, codec, world, args)
    eval_s = time.time() - t0
    window = max(1, min(50, len(losses) // 10))
    curve = [
        {"step": i + window, "loss": round(sum(losses[i : i + window]) / window, 4)}
        for i in range(0, len(losses) - window + 1, max(window, len(losses) // 20))
    ]
    report = {
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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for split, r in results.items():
        print(split, {k: v for k, v in r.items() if k != "examples"} if "examples" in r else r)
    print(f"train {train_s / 60:.1f} min, {step} steps; wrote {out}")


if __name__ == "__main__":
    main()
