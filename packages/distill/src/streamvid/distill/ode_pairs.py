"""ODE pairs for the few-step student's ODE initialisation (Self-Forcing, methods.md A.1), on DMD's grid.

The teacher's guided probability-flow ODE is solved with Euler steps on ``euler_grid(num_steps, shift)``; the
state is recorded at the grid indices of the student's few-step levels. With the student's shift (5) and
``num_steps`` a multiple of 4 those are exactly the warped levels [1000, 937.5, 833.3, 625] (indices 0, N/4,
N/2, 3N/4): the pairs lie on the same grid as the sampler and DMD, unlike Self-Forcing's (pairs with shift 8,
DMD with shift 5). `few_step_grid_indices` refuses any grid that misses a level.

File format (``<output_dir>/pairs.safetensors``, metadata in its header, prompts in ``prompts.json``):

* ``x_levels`` ``[N, K, C, T, h, w]``: the state entering step ``grid_indices[k]`` (sigma ``sigmas[k]``);
* ``x0`` ``[N, C, T, h, w]``: the ODE solution;
* ``sigmas`` / ``timesteps`` ``[K]`` (t = 1000 sigma), ``grid_indices`` ``[K]``.

Generation is batched and resumable: each batch is written to ``<output_dir>/.partial/`` (tagged with a
fingerprint of everything that determines it) and the final file is assembled and renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from streamvid.core.atomic import atomic_write
from streamvid.core.config import ConfigError
from streamvid.core.dtypes import DTYPES

if TYPE_CHECKING:  # the schedule imports diffusers: reading a pairs header stays cheap
    from streamvid.core.schedule import FewStepSchedule

__all__ = [
    "PAIRS_FILE",
    "PROMPTS_FILE",
    "OdePairs",
    "few_step_grid_indices",
    "generate_ode_pairs",
    "load_ode_pairs",
    "read_pairs_header",
]

PAIRS_FILE = "pairs.safetensors"
PROMPTS_FILE = "prompts.json"
FORMAT = "streamvid-ode-pairs-v1"
LEVEL_TOLERANCE_T = 1e-2
"""Largest |grid t - few-step t| (timestep units, 0..1000) that counts as the same level."""


def few_step_grid_indices(num_steps: int, shift: float, schedule: FewStepSchedule) -> list[int]:
    """Indices of ``euler_grid(num_steps, shift)`` equal to the schedule's levels; `ConfigError` when one is missing."""
    from streamvid.core.schedule import euler_grid

    grid_t = euler_grid(num_steps, shift).double() * schedule.num_train_timesteps
    indices, missing = [], []
    for t in schedule.timesteps.double():
        j = int((grid_t - t).abs().argmin())
        if abs(float(grid_t[j] - t)) > LEVEL_TOLERANCE_T:
            missing.append(round(float(t), 2))
        indices.append(j)
    if missing:
        levels = [round(float(t), 2) for t in schedule.timesteps]
        raise ConfigError(
            f"the Euler grid (num_steps={num_steps}, shift={shift}) misses the student's few-step levels {missing} "
            f"of {levels}: use the student sampler's shift (sampler.shift) and a num_steps that is a multiple of 4"
        )
    return indices


class OdePairs:
    """Loaded pairs: ``x_levels`` ``[N, K, C, T, h, w]``, ``x0`` ``[N, C, T, h, w]``, ``sigmas`` ``[K]``, prompts."""

    def __init__(self, x_levels: torch.Tensor, x0: torch.Tensor, sigmas: torch.Tensor, prompts: list[str],
                 metadata: dict[str, str]):
        self.x_levels, self.x0, self.sigmas, self.prompts, self.metadata = x_levels, x0, sigmas, prompts, metadata

    def __len__(self) -> int:
        return self.x0.shape[0]


def read_pairs_header(pairs_dir: str | os.PathLike, key: str = "pairs") -> dict[str, Any]:
    """Shapes, levels and metadata of ``<pairs_dir>/pairs.safetensors`` without reading the latents.

    Raises `ConfigError` naming ``key`` and the path when the directory, the file or the prompts are missing
    or the file is not an ODE-pairs file.
    """
    pairs_dir = Path(pairs_dir)
    path = pairs_dir / PAIRS_FILE
    if not pairs_dir.is_dir():
        raise ConfigError(f"{key}: ODE-pairs directory not found: {pairs_dir} (make it with streamvid-train ode-pairs)")
    if not path.is_file():
        partial = " (generation was interrupted: rerun ode-pairs to finish it)" if (pairs_dir / ".partial").is_dir() else ""
        raise ConfigError(f"{key}: {pairs_dir} has no {PAIRS_FILE}{partial}")
    if not (pairs_dir / PROMPTS_FILE).is_file():
        raise ConfigError(f"{key}: {pairs_dir} has no {PROMPTS_FILE}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            shapes = {name: list(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
            sigmas = f.get_tensor("sigmas") if "sigmas" in shapes else None
    except Exception as err:  # noqa: BLE001 - a corrupt file is the user's input
        raise ConfigError(f"{key}: cannot read {path}: {type(err).__name__}: {err}") from None
    if metadata.get("format") != FORMAT or sigmas is None or "x_levels" not in shapes or "x0" not in shapes:
        raise ConfigError(f"{key}: {path} is not an ODE-pairs file ({FORMAT})")
    return {"path": path, "metadata": metadata, "shapes": shapes, "sigmas": sigmas}


def load_ode_pairs(pairs_dir: str | os.PathLike, key: str = "pairs") -> OdePairs:
    """Load the pairs written by `generate_ode_pairs` (checked by `read_pairs_header`)."""
    header = read_pairs_header(pairs_dir, key)
    tensors = load_file(str(header["path"]))
    prompts = json.loads((Path(pairs_dir) / PROMPTS_FILE).read_text())["prompts"]
    if len(prompts) != tensors["x0"].shape[0]:
        raise ConfigError(f"{key}: {PROMPTS_FILE} has {len(prompts)} prompts for {tensors['x0'].shape[0]} pairs")
    return OdePairs(tensors["x_levels"].float(), tensors["x0"].float(), tensors["sigmas"].float(), prompts,
                    header["metadata"])


def _fingerprint(cfg, teacher_dir: Path, indices: list[int]) -> str:
    """Hash of everything that determines the pairs (not output_dir, threads or the progress bar)."""
    data = {k: v for k, v in asdict(cfg).items() if k not in ("output_dir", "threads", "progress_bar", "teacher")}
    h = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode())
    h.update(repr(indices).encode())
    for name in sorted(os.listdir(teacher_dir)):
        if name.endswith((".json", ".safetensors")):
            h.update(name.encode())
            h.update((teacher_dir / name).read_bytes())
    return h.hexdigest()[:16]


def generate_ode_pairs(cfg, teacher: torch.nn.Module, out_dir: str | os.PathLike) -> Path:
    """Solve the teacher's guided ODE for ``cfg.num_pairs`` prompts and write the pairs file (see the module doc).

    Args:
        cfg: an `OdePairsStageConfig` (checked).
        teacher: the loaded teacher (``config.in_channels``, ``config.text_dim``).
        out_dir: where ``pairs.safetensors``, ``prompts.json`` and ``.partial/`` go.
    Returns:
        the path of ``pairs.safetensors``.
    """
    from tqdm import tqdm

    from streamvid.core.euler import euler_solve
    from streamvid.core.schedule import euler_grid
    from streamvid.core.score_model import ScoreModel
    from streamvid.core.text.bag_of_words import BagOfWordsTextEncoder
    from streamvid.core.world import sample_attributes, vocabulary
    from streamvid.distill.shapes_data import step_seed

    out_dir = Path(out_dir)
    schedule = cfg.sampler.schedule()
    indices = few_step_grid_indices(cfg.num_steps, cfg.grid_shift, schedule)
    grid = euler_grid(cfg.num_steps, cfg.grid_shift)
    channels, patch = teacher.config.in_channels, latent_patch(teacher.config.in_channels)
    world = cfg.world
    shape = (channels, world.num_frames, world.height // patch, world.width // patch)
    text = BagOfWordsTextEncoder(vocabulary(), teacher.config.text_dim)
    score = ScoreModel(teacher.eval())
    prompts = [sample_attributes(world, cfg.split, cfg.first_index + i)[1] for i in range(cfg.num_pairs)]
    dtype = DTYPES[cfg.dtype]

    tag = _fingerprint(cfg, Path(cfg.teacher), indices)
    final = out_dir / PAIRS_FILE
    if final.is_file() and (out_dir / PROMPTS_FILE).is_file():
        try:
            with safe_open(str(final), framework="pt") as f:
                complete = (f.metadata() or {}).get("fingerprint") == tag
        except Exception:  # noqa: BLE001 - an unreadable old file is regenerated
            complete = False
        if complete:
            print(f"{final} is complete for this config and teacher; nothing to do", file=sys.stderr)
            return final
    partial = out_dir / ".partial"
    partial.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, cfg.num_pairs, cfg.batch_size))
    bar = tqdm(total=cfg.num_pairs, desc="ode pairs", unit="pair", disable=not cfg.progress_bar, file=sys.stderr)
    for start in starts:
        stop = min(start + cfg.batch_size, cfg.num_pairs)
        shard = partial / f"{tag}-{start:07d}.safetensors"
        if not shard.is_file():
            noise = torch.stack([
                torch.randn(shape, generator=torch.Generator().manual_seed(step_seed(cfg.seed, cfg.first_index + i)))
                for i in range(start, stop)
            ])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16-mixed"):
                result = euler_solve(
                    score, noise, text(prompts[start:stop]), text([""]), guidance=cfg.guidance_scale,
                    num_steps=cfg.num_steps, shift=cfg.grid_shift, record=indices,
                )
            x_levels = torch.stack([result.trajectory[i] for i in indices], dim=1)
            with atomic_write(shard) as tmp:
                save_file({"x_levels": x_levels.to(dtype).contiguous(), "x0": result.x0.to(dtype).contiguous()},
                          str(tmp))
        bar.update(stop - start)
    bar.close()

    shards = [load_file(str(partial / f"{tag}-{start:07d}.safetensors")) for start in starts]
    sigmas = grid[indices].float()
    tensors = {
        "x_levels": torch.cat([s["x_levels"] for s in shards]).contiguous(),
        "x0": torch.cat([s["x0"] for s in shards]).contiguous(),
        "sigmas": sigmas,
        "timesteps": sigmas * schedule.num_train_timesteps,
        "grid_indices": torch.tensor(indices, dtype=torch.long),
    }
    metadata = {
        "format": FORMAT,
        "teacher": str(cfg.teacher),
        "num_steps": str(cfg.num_steps),
        "shift": str(cfg.grid_shift),
        "guidance_scale": str(cfg.guidance_scale),
        "fingerprint": tag,
    }
    with atomic_write(out_dir / PROMPTS_FILE) as tmp:
        tmp.write_text(json.dumps(
            {"prompts": prompts, "split": cfg.split, "first_index": cfg.first_index, "seed": cfg.seed}, indent=1))
    with atomic_write(out_dir / PAIRS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    shutil.rmtree(partial, ignore_errors=True)
    return out_dir / PAIRS_FILE


def latent_patch(channels: int) -> int:
    """The pixel codec's patch p with 3 p^2 = channels (`ConfigError` when there is none)."""
    p = round((channels / 3) ** 0.5)
    if 3 * p * p != channels:
        raise ConfigError(f"the teacher has {channels} input channels, not 3 * p^2 of a pixel codec")
    return p
