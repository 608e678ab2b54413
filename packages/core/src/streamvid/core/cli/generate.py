"""`streamvid-generate`: stream one video from a prompt and write it (mp4 or gif) with its resolved config.

Builds the model, codec and text encoder from the config (random weights when `generator.checkpoint` is null,
which the command says on the terminal), streams the video chunk by chunk with a progress bar, writes it
atomically and writes the resolved config, prompt included, next to it as `<out stem>.config.yaml` (atomically
too; no other file in the folder is touched). Existing files of those names are replaced, which a `note:` line
says first. Feeding that file back (`--config red.config.yaml --out x.mp4`)
makes the same video: the random initialisation is seeded by `init_seed`.

Everything is checked before the model is built: the config, `--frames`, a non-blank prompt and the output
path (extension .mp4 or .gif; its folder a writable directory, or missing under a writable one, then created).
Bad input prints one `error:` line on stderr and exits with code 2.

Threads (`--threads`, default `auto`): torch's intra-op threads. `auto` takes 1 thread for models under
100 M parameters and torch's default (one per core, or OMP_NUM_THREADS) above. Measured on the 2-core CPU
this repository is developed on, with two training jobs running (12 frames, median of 5 after a warm-up; range
over separate runs): tiny config (1.5 M parameters, 32x32; 5 runs): 1 thread 0.23-0.50 s, 2 threads 1.2-18.8 s;
19 M parameters (small.yaml widths, 64x64; 2 runs): 1 thread 9.2-10.3 s, 2 threads 26-49 s. Thread synchronisation
outweighs the parallel work on tensors this small, and a thread waiting for a busy core stalls the others
(the 18.8 s). Wan2.1-1.3B on a CPU needs every core; on a GPU the setting barely matters.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from streamvid.core.cli.errors import run_cli
from streamvid.core.cli.paths import check_output_file, replacing_note, write_resolved_config
from streamvid.core.config import ConfigError, load_config
from streamvid.core.generator_config import GeneratorConfig, check_generator
from streamvid.core.video_io import SUPPORTED_EXTENSIONS, write_video

PROG = "streamvid-generate"
AUTO_THREADS_MAX_PARAMS = 100_000_000
"""`--threads auto`: models below this many parameters run on 1 intra-op thread (see the module docstring)."""

EXAMPLES = """\
examples (run from the repository root):
  streamvid-generate --config configs/generate/shapes_student.yaml --prompt "a red circle moving left, then up" --out outputs/generate/student.mp4
  streamvid-generate --config configs/generate/tiny_random.yaml --prompt "a red circle moving left" --out outputs/generate/red.mp4
  streamvid-generate --config configs/generate/tiny_random.yaml --prompt "a blue square moving up" --out outputs/generate/blue.gif --frames 24 --seed 3 --set generator.sampler.cache.local_attn_frames=6
  streamvid-generate --config outputs/generate/red.config.yaml --out outputs/generate/red_again.mp4
"""


@dataclass
class GenerateConfig:
    """`streamvid-generate`'s config: a prompt, a generator and what to render."""

    prompt: str | None = None
    """Text of the video; `--prompt` sets it. The resolved config records it."""
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    num_frames: int = 12
    """Latent frames to generate (= video frames with the pixel codec); a multiple of the chunk size."""
    fps: int = 8
    """Frame rate of the written video."""
    seed: int = 0
    """Seed of every noise draw (0 is a seed like any other)."""
    init_seed: int = 0
    """Torch seed of the random initialisation (model without checkpoint, learned text encoder without path)."""
    prompt_switches: dict[int, str] = field(default_factory=dict)
    """Chunk index -> the prompt streamed from that chunk on (a multi-segment video; the cached history is
    re-encoded under the new prompt when ``generator.sampler.recache_on_switch``). Example:
    ``--set "prompt_switches={2: a red circle moving up}"``."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file (schema: GenerateConfig in streamvid.core.cli.generate)")
    parser.add_argument("--prompt", default=None, help="text prompt (required unless the config sets prompt)")
    parser.add_argument("--out", required=True, help="output video path (.mp4 or .gif)")
    parser.add_argument("--frames", type=int, default=None, help="latent frames (multiple of the chunk size)")
    parser.add_argument("--seed", type=int, default=None, help="noise seed")
    parser.add_argument("--threads", default="auto",
                        help="torch intra-op threads: a positive integer, or auto (default: 1 below 100 M model "
                             "parameters, torch's default above; for the tiny model 1 thread was 4x to 80x faster than 2 on a busy 2-core CPU)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (keys of GenerateConfig, e.g. seed=3)")
    return parser.parse_args(argv)


def parse_threads(value: str) -> int | None:
    """`--threads`: a positive integer, or None for `auto`."""
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--threads must be a positive integer or 'auto', got {value!r}")
    return int(value)


def auto_threads(model: torch.nn.Module) -> int:
    """1 intra-op thread for models under `AUTO_THREADS_MAX_PARAMS` parameters, else torch's default."""
    params = sum(p.numel() for p in model.parameters())
    return 1 if params < AUTO_THREADS_MAX_PARAMS else torch.get_num_threads()


def resolve_config(args: argparse.Namespace) -> GenerateConfig:
    """The config with the command-line values applied, validated (ConfigError names what is wrong)."""
    config_path = Path(args.config)
    if not config_path.is_file():
        raise FileNotFoundError(f"config file not found: {config_path}")
    cfg = load_config(config_path, args.overrides, schema=GenerateConfig, check=lambda c: check_generator(c.generator))
    if args.prompt is not None:
        cfg = replace(cfg, prompt=args.prompt)
    if args.frames is not None:
        cfg = replace(cfg, num_frames=args.frames)
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    if cfg.prompt is None:
        raise ConfigError(f"no prompt: give --prompt (the config {config_path} sets no prompt)")
    if not cfg.prompt.strip():
        raise ConfigError(f"the prompt is blank ({cfg.prompt!r}); give the text of the video, e.g. "
                          "--prompt \"a red circle moving left\"")
    chunk = cfg.generator.sampler.cache.chunk_frames
    if cfg.num_frames <= 0 or cfg.num_frames % chunk:
        raise ConfigError(f"--frames {cfg.num_frames} must be a positive multiple of the chunk size {chunk}")
    if cfg.prompt_switches:
        from streamvid.core.sampler import PromptSwitch  # imports diffusers: only when switches are given

        for switch in PromptSwitch.from_mapping(cfg.prompt_switches):
            problem = switch.problem(cfg.num_frames // chunk)
            if problem is not None:
                raise ConfigError(f"prompt_switches.{switch.chunk}: {problem} ({cfg.num_frames} frames in chunks "
                                  f"of {chunk})")
    if cfg.fps <= 0:
        raise ConfigError(f"fps must be > 0, got {cfg.fps}")
    return cfg


def random_weights_note(cfg: GeneratorConfig) -> str | None:
    """One terminal line when part of the generator has random (untrained) weights, else None."""
    from streamvid.core.generator import random_parts

    parts = random_parts(cfg)
    if "model" in parts:
        return ("note: generator.checkpoint is null, so the model has random (untrained) weights: the video is "
                "noise that only shows the pipeline runs")
    if parts:
        return ("warning: generator.text_encoder.path is null, so the text encoder has random (untrained) "
                f"weights and the checkpoint {cfg.checkpoint} cannot follow the prompt; set it to the text "
                "encoder saved with that checkpoint")
    return None


def generate(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    threads = parse_threads(args.threads)
    out = check_output_file(args.out, "--out", SUPPORTED_EXTENSIONS)
    config_out = out.with_name(f"{out.stem}.config.yaml")
    if config_out.is_dir():
        raise ConfigError(f"--out {out}: the resolved config goes to {config_out}, which is a directory")
    if note := replacing_note([out, config_out]):
        print(note, file=sys.stderr)
    # Inputs are checked: now import diffusers (seconds) and build. User errors above come back in ~2 s.
    from streamvid.core.generator import build_generator, prompt_vocabulary

    if threads is not None:
        torch.set_num_threads(threads)
    if note := random_weights_note(cfg.generator):
        print(note, file=sys.stderr)

    with torch.random.fork_rng(devices=[]):  # a seeded random initialisation: the resolved config reproduces it
        torch.manual_seed(cfg.init_seed)
        pipe = build_generator(cfg.generator,
                               vocabulary=prompt_vocabulary([cfg.prompt, *cfg.prompt_switches.values()]))
    unknown = [w for p in (cfg.prompt, *cfg.prompt_switches.values()) for w in pipe.unknown_words(p)]
    if unknown := list(dict.fromkeys(unknown)):
        print(f"warning: the text encoder does not know {', '.join(map(repr, unknown))} (outside its vocabulary, "
              "e.g. the shapes world's); the video ignores them", file=sys.stderr)
    if threads is None:
        torch.set_num_threads(auto_threads(pipe.model))
    start = time.perf_counter()
    chunk = cfg.generator.sampler.cache.chunk_frames
    frames = []
    for pixels in tqdm(pipe.stream(cfg.prompt, cfg.num_frames, seed=cfg.seed, prompt_switches=cfg.prompt_switches),
                       total=cfg.num_frames // chunk,
                       desc="chunks", unit="chunk", file=sys.stderr):
        frames.append(pixels[0])
    seconds = time.perf_counter() - start
    video = torch.cat(frames, dim=0)
    write_video(out, video, fps=cfg.fps)
    write_resolved_config(cfg, config_out)
    n = torch.get_num_threads()
    print(f"wrote {out} ({video.shape[0]} frames, {video.shape[-1]}x{video.shape[-2]} px, generated in "
          f"{seconds:.2f} s on {n} thread{'s' if n > 1 else ''}) and {config_out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, lambda: generate(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
