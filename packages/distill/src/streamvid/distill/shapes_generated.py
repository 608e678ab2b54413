"""Generated shapes-world videos labelled by the oracle: the data a reward needs to rank what generators make.

Real video reward models (VideoAlign / VideoReward) are trained on *generated* videos rated by people; here the
pixel oracle stands in for the raters. A `GeneratorSpec` names one way of making videos: the conv teacher at a
CFG scale and an Euler step count, or a causal student checkpoint streamed with its 4-step sampler (exactly as
``streamvid-generate``). `generate_set` makes ``seeds`` videos per prompt with each generator, so videos of
one prompt differ only in their noise: within-prompt ranks are what best-of-N, Stream-T1 and a batch of DMD
rollouts see. Each video carries its oracle scores at video level and per chunk (the short-term reward of
Stream-T1 scores one chunk), and the oracle's readings (colour, shape, per-frame direction) as auxiliary labels.

    .venv/bin/python -m streamvid.distill.shapes_generated --split train --prompts 48 --seeds 6 \
        --generators teacher:cfg2:s20 teacher:cfg1:s4 student:assets/shapes/student --out outputs/reward_data/train.safetensors

A generator is written ``teacher:cfg<scale>:s<steps>[:<dir>]`` (default dir ``assets/shapes/teacher``) or
``student:<dir>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from streamvid.core.world import WorldConfig, sample_attributes, score_details
from streamvid.distill.shapes_reward_data import AXES, oracle_targets

__all__ = ["GeneratedSet", "GeneratorSpec", "generate_set", "load_generated_set", "save_generated_set"]


@dataclass(frozen=True)
class GeneratorSpec:
    """One way of making videos: the teacher (``kind="teacher"``, Euler ``steps`` with CFG ``cfg``) or a
    causal student (``kind="student"``, its few-step streaming sampler)."""

    kind: str
    path: str
    cfg: float = 2.0
    steps: int = 20

    @property
    def name(self) -> str:
        if self.kind == "teacher":
            return f"teacher:cfg{self.cfg:g}:s{self.steps}" + (f":{self.path}" if self.path != DEFAULT_TEACHER else "")
        return f"student:{self.path}"

    @classmethod
    def parse(cls, text: str) -> GeneratorSpec:
        """``teacher:cfg<scale>:s<steps>[:<dir>]`` or ``student:<dir>`` -> spec; ValueError naming the text."""
        parts = text.split(":")
        try:
            if parts[0] == "teacher" and len(parts) in (3, 4) and parts[1][:3] == "cfg" and parts[2][:1] == "s":
                return cls("teacher", parts[3] if len(parts) == 4 else DEFAULT_TEACHER, float(parts[1][3:]),
                           int(parts[2][1:]))
            if parts[0] == "student" and len(parts) == 2 and parts[1]:
                return cls("student", parts[1])
        except ValueError:
            pass
        raise ValueError(f"generator '{text}': expected teacher:cfg<scale>:s<steps>[:<dir>] or student:<dir>")


DEFAULT_TEACHER = "assets/shapes/teacher"


@dataclass
class GeneratedSet:
    """``N`` generated videos with their prompts and oracle labels.

    Attributes:
        videos: ``[N, T, 3, H, W]`` uint8 (pixels x 255, rounded).
        prompts: ``N`` prompts.
        generators: ``N`` generator names (`GeneratorSpec.name`).
        groups: ``[N]`` long, the prompt's index: videos of one group share prompt and generator.
        axes: ``[N, 3]`` oracle (visual, motion, text) of each whole video.
        chunk_axes: ``[N, C, 3]`` oracle of each ``chunk_frames``-frame chunk alone against the prompt.
        colour, shape: ``[N]`` the oracle's readings (-100 where none); direction ``[N, T]`` per frame
            (`oracle_targets`).
    """

    videos: Tensor
    prompts: list[str]
    generators: list[str]
    groups: Tensor
    axes: Tensor
    chunk_axes: Tensor
    colour: Tensor
    shape: Tensor
    direction: Tensor

    def __len__(self) -> int:
        return self.videos.shape[0]

    def pixels(self, index: Tensor | slice | None = None) -> Tensor:
        """Videos ``[n, T, 3, H, W]`` float in [0, 1]."""
        v = self.videos if index is None else self.videos[index]
        return v.float() / 255.0

    def select(self, keep: Tensor) -> GeneratedSet:
        """The subset where the bool mask ``keep [N]`` is true."""
        idx = keep.nonzero()[:, 0]
        pick = idx.tolist()
        return GeneratedSet(self.videos[idx], [self.prompts[i] for i in pick], [self.generators[i] for i in pick],
                            self.groups[idx], self.axes[idx], self.chunk_axes[idx], self.colour[idx],
                            self.shape[idx], self.direction[idx])


def _chunk_axes(videos: Tensor, prompts: list[str], chunk_frames: int) -> Tensor:
    """``[N, C, 3]``: the oracle's (visual, motion, text) of each chunk of each video, read alone."""
    out = []
    for video, prompt in zip(videos, prompts):
        chunks = [score_details(video[s : s + chunk_frames], prompt) for s in range(0, video.shape[0], chunk_frames)]
        out.append([[getattr(c, a) for a in AXES] for c in chunks])
    return torch.tensor(out, dtype=torch.float32)


def _make_videos(spec: GeneratorSpec, prompts: list[str], seed: int, sampler_cfg) -> Tensor:
    from streamvid.distill.networks import load_model_dir
    from streamvid.distill.shapes_eval import sample_student, sample_teacher

    model = load_model_dir(spec.path, spec.name).eval()
    if spec.kind == "teacher":
        return sample_teacher(model, prompts, model.config.text_dim, seed=seed, steps=spec.steps, cfg=spec.cfg)
    return sample_student(model, sampler_cfg, prompts, seed=seed)


def generate_set(specs: list[GeneratorSpec], split: str, num_prompts: int, seeds: int, seed: int = 0,
                 first_prompt: int = 0, sampler: str = "configs/sampler/self_forcing.yaml",
                 progress: bool = True) -> GeneratedSet:
    """``seeds`` videos for each of ``num_prompts`` prompts of ``split`` (from item ``first_prompt``) with each
    generator of ``specs``, labelled by the oracle. Deterministic in (specs, split, prompts, seeds, seed)."""
    from streamvid.core.config import load_config
    from streamvid.core.sampler_config import SamplerConfig

    sampler_cfg = load_config(sampler, schema=SamplerConfig)
    chunk = sampler_cfg.cache.chunk_frames
    base = [sample_attributes(WorldConfig(), split, first_prompt + i)[1] for i in range(num_prompts)]
    prompts = [p for p in base for _ in range(seeds)]
    groups = torch.arange(num_prompts).repeat_interleave(seeds)
    parts = []
    for g, spec in enumerate(specs):
        start = time.perf_counter()
        videos = _make_videos(spec, prompts, seed + 7919 * g, sampler_cfg).clamp(0, 1)
        labels = oracle_targets(videos, prompts, [1] * len(prompts))
        parts.append(GeneratedSet((videos * 255).round().to(torch.uint8), list(prompts), [spec.name] * len(prompts),
                                  groups + g * num_prompts, labels["axes"], _chunk_axes(videos, prompts, chunk),
                                  labels["colour"], labels["shape"], labels["direction"]))
        if progress:
            mean = labels["axes"].mean(0).tolist()
            print(f"{spec.name}: {len(prompts)} videos in {time.perf_counter() - start:.0f} s; oracle mean "
                  + ", ".join(f"{a} {m:.3f}" for a, m in zip(AXES, mean)), file=sys.stderr, flush=True)
    return GeneratedSet(
        torch.cat([p.videos for p in parts]), [x for p in parts for x in p.prompts],
        [x for p in parts for x in p.generators], torch.cat([p.groups for p in parts]),
        torch.cat([p.axes for p in parts]), torch.cat([p.chunk_axes for p in parts]),
        torch.cat([p.colour for p in parts]), torch.cat([p.shape for p in parts]),
        torch.cat([p.direction for p in parts]),
    )


_TENSORS = ("videos", "groups", "axes", "chunk_axes", "colour", "shape", "direction")


def save_generated_set(data: GeneratedSet, path: str | Path) -> Path:
    """Write ``data`` as one safetensors file (tensors; prompts and generator names in its metadata)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"prompts": json.dumps(data.prompts), "generators": json.dumps(data.generators)}
    save_file({k: getattr(data, k).contiguous() for k in _TENSORS}, str(path), metadata=meta)
    return path


def load_generated_set(path: str | Path) -> GeneratedSet:
    """Read a file written by `save_generated_set`."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    return GeneratedSet(prompts=json.loads(meta["prompts"]), generators=json.loads(meta["generators"]),
                        **{k: tensors[k] for k in _TENSORS})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--generators", nargs="+", required=True, help="teacher:cfg<s>:s<steps>[:<dir>] or student:<dir>")
    ap.add_argument("--split", default="train", choices=("train", "val", "heldout"))
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--first-prompt", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=6, help="videos per prompt and generator")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="the .safetensors file to write")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        specs = [GeneratorSpec.parse(g) for g in args.generators]
        for s in specs:
            if not (Path(s.path) / "config.json").is_file():
                raise ValueError(f"generator '{s.name}': no diffusers model folder at {s.path}")
    except ValueError as err:
        print(f"shapes_generated: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    data = generate_set(specs, args.split, args.prompts, args.seeds, args.seed, args.first_prompt)
    print(f"wrote {save_generated_set(data, args.out)} ({len(data)} videos)")


if __name__ == "__main__":
    main()
