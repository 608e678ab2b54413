"""`streamvid-infer-t1`: stream one video with chunk-level test-time search (Stream-T1 or a baseline).

Writes, next to ``--out`` (``<stem>.mp4`` or ``<stem>.gif``): the chosen video as mp4 and gif, ``<stem>.scores.json`` (per-chunk
short / long / fused scores and memory flags of the chosen beam, its final score), ``<stem>.tree.json`` and
``<stem>.tree.png`` (every candidate per chunk with its scores and an edge to its parent beam, pruned and kept
candidates, the chosen video's path, and the memory route of each evicted chunk), ``<stem>.ledger.json`` (NFE by
kind, decodes, reward calls, time per component, peak memory) and ``<stem>.config.yaml`` (the resolved config).
Each file is written atomically; existing files of that stem are replaced, which one ``note:`` line says before
the run. Everything is checked before the model is built, and bad input is one ``error:`` line with exit code 2.
``--frames`` and ``--seed`` are ``streamvid-generate``'s.

Strategies (``strategy``): ``stream_t1`` (the `search` section), ``greedy`` (chunk-greedy, ``n`` children),
``best_of_n`` (``n`` whole videos), ``plain`` (one sample, no search).

Over a prompt file (``--prompts FILE --out-dir DIR``, or a config that sets ``prompts`` / ``output_dir``): one video
per (prompt, seed), each with the files above under ``DIR/videos/``, one table ``DIR/results.csv`` and
``DIR/summary.md``; resumable, and sharded over ranks under ``torchrun`` (`streamvid.tts.batch`). ``--prompt``
streams one video even with a config that lists a prompt file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from streamvid.core.atomic import atomic_write
from streamvid.core.cli.errors import run_cli
from streamvid.core.cli.paths import check_output_file, replacing_note, write_resolved_config
from streamvid.core.config import ConfigError, check_at_least, check_choice, load_config
from streamvid.core.generator_config import GeneratorConfig, check_generator
from streamvid.core.prompts import load_prompts
from streamvid.core.rewards.base import RewardModel
from streamvid.core.rewards.configs import RewardSelection
from streamvid.core.sampler import PromptSwitch
from streamvid.core.video_io import SUPPORTED_EXTENSIONS
from streamvid.tts.search import SearchConfig, SearchResult
from streamvid.tts.strategy import STRATEGIES

if TYPE_CHECKING:
    from streamvid.core.pipeline import StreamVidPipeline

PROG = "streamvid-infer-t1"

EXAMPLES = """\
examples (run from the repository root):
  streamvid-infer-t1 --config configs/infer/shapes_t1.yaml --prompt "a red circle moving left, then up" --out outputs/infer_t1/red.mp4
  streamvid-infer-t1 --config configs/infer/shapes_t1.yaml --prompt "a blue square moving down" --out outputs/infer_t1/blue_bon.mp4 --set strategy=best_of_n --set n=4
  streamvid-infer-t1 --config configs/infer/shapes_t1.yaml --prompt "a red circle moving left" --out outputs/infer_t1/long.mp4 --set num_frames=36 --set "prompt_switches={4: a red circle moving right, 8: a red circle moving up}"
  streamvid-infer-t1 --config configs/infer/shapes_t1.yaml --prompts configs/eval/prompts/shapes_smoke.txt --out-dir outputs/infer_t1/smoke --set "seeds=[0, 1]"
  torchrun --standalone --nproc_per_node 2 .venv/bin/streamvid-infer-t1 --config configs/infer/shapes_t1.yaml --prompts configs/eval/prompts/shapes_smoke.txt --out-dir outputs/infer_t1/smoke2
"""


@dataclass
class InferT1Config:
    """`streamvid-infer-t1`'s config: a student, a reward, a search strategy and what to render."""

    prompt: str | None = None
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    reward: RewardSelection = field(default_factory=lambda: RewardSelection(name="shapes_learned"))
    """The search reward: long-term window score and final pick (and the short-term score unless
    ``short_reward`` is set)."""
    short_reward: RewardSelection | None = None
    """The short-term (new chunk) reward, e.g. a frame scorer at paper scale (Stream-T1: HPSv3); null: ``reward``."""
    strategy: str = "stream_t1"
    search: SearchConfig = field(default_factory=SearchConfig)
    """Stream-T1's settings (methods.md B.7)."""
    n: int = 4
    """Children per chunk (greedy) or videos (best_of_n)."""
    budget: float | None = None
    """A budget in multiples of plain sampling's NFE (1, 2, 4, 8 ...): sets n / children x beams for the strategy
    (`plan_for_budget`); null: the settings as given. Below 1 is refused."""
    num_frames: int = 12
    prompt_switches: dict[int, str] = field(default_factory=dict)
    """Chunk index -> the prompt streamed from that chunk on (a multi-segment video, LongLive-style; the cached
    history is re-encoded under each new prompt when ``generator.sampler.recache_on_switch``). Rewards score each
    chunk against its segment's prompt. Example: ``--set "prompt_switches={4: a red circle moving up}"``."""
    fps: int = 8
    threads: int = 1

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        check_at_least("", 1, n=self.n, fps=self.fps, threads=self.threads)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True,
                        help="YAML file (schema: InferT1Config in streamvid.tts.cli; one with prompts / seeds / "
                             "output_dir: InferT1BatchConfig in streamvid.tts.batch)")
    parser.add_argument("--prompt", default=None,
                        help="text prompt of one video (required unless the config sets prompt or prompts)")
    parser.add_argument("--out", default=None,
                        help="output video path of one video (.mp4 or .gif; the video is written in both formats, the "
                             "other files go next to it)")
    parser.add_argument("--prompts", default=None, metavar="FILE",
                        help="prompt file (.txt one prompt a line, .csv, .json; sets prompts): one video per prompt "
                             "and seed (seeds), instead of --prompt")
    parser.add_argument("--out-dir", default=None, metavar="DIR",
                        help="with a prompt file: the run folder (sets output_dir; videos/, results.csv, summary.md); "
                             "a rerun resumes it")
    parser.add_argument("--frames", type=int, default=None,
                        help="latent frames (multiple of the chunk size; sets num_frames)")
    parser.add_argument("--seed", type=int, default=None,
                        help="noise seed of the search (sets search.seed; with a prompt file, seeds=[SEED])")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (e.g. strategy=greedy, search.top_k=3)")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> InferT1Config:
    """The config of the command line, checked (prompts against the rewards, frames, checkpoint) before any model
    is built: an `InferT1Config` for one video, an `InferT1BatchConfig` for a prompt file."""
    from streamvid.tts.batch import InferT1BatchConfig, resolve_batch

    path = Path(args.config)
    cfg = load_config(path, args.overrides, schema=InferT1BatchConfig,  # a missing file is a ConfigError there
                      check=lambda c: check_generator(c.generator))
    if args.prompt is not None and args.prompts is not None:
        raise ConfigError("give --prompt (one video) or --prompts FILE (one video per prompt and seed), not both")
    if args.prompts is not None or (args.prompt is None and cfg.prompts is not None):
        return check_search(resolve_batch(cfg, args))
    if args.out_dir is not None:
        raise ConfigError("--out-dir is the folder of a prompt file's run: give --prompts FILE (or --out for one video)")
    if args.prompt is not None:
        cfg = replace(cfg, prompt=args.prompt)
    if args.frames is not None:
        cfg = replace(cfg, num_frames=args.frames)
    if args.seed is not None:
        cfg = replace(cfg, search=replace(cfg.search, seed=args.seed))
    if cfg.prompt is None or not cfg.prompt.strip():
        raise ConfigError(f"no prompt: give --prompt \"a red circle moving left\" or --prompts FILE (the config {path} "
                          "sets none)")
    if args.out is None:
        raise ConfigError("no output: give --out outputs/infer_t1/video.mp4")
    return check_search(cfg.video_config(), [cfg.prompt])


def check_search(cfg: InferT1Config, prompts: Sequence[str] | None = None) -> InferT1Config:
    """``cfg`` with its budget planned, after the checks shared by both modes: frames, prompt switches, the
    rewards' weights and ``prompts`` (default: the prompt file's; each with the switches' prompts), the checkpoint."""
    if prompts is None:
        prompts = [e.prompt for e in load_prompts(cfg.prompts)]
    chunk = cfg.generator.sampler.cache.chunk_frames
    if cfg.num_frames <= 0 or cfg.num_frames % chunk:
        raise ConfigError(f"--frames / num_frames {cfg.num_frames} must be a positive multiple of the chunk size {chunk}")
    for switch in PromptSwitch.from_mapping(cfg.prompt_switches):
        problem = switch.problem(cfg.num_frames // chunk)
        if problem is not None:
            raise ConfigError(f"prompt_switches.{switch.chunk}: {problem} ({cfg.num_frames} frames in chunks of {chunk})")
    if cfg.budget is not None:
        from streamvid.tts.search import plan_for_budget

        search, n = plan_for_budget(cfg.strategy, cfg.budget, cfg.search)
        cfg = replace(cfg, search=search if cfg.strategy == "stream_t1" else cfg.search, n=n)
    cfg.reward.check_paths("reward")
    prompts = [*prompts, *cfg.prompt_switches.values()]
    cfg.reward.check_prompts(prompts, "reward")
    if cfg.short_reward is not None:
        cfg.short_reward.check_paths("short_reward")
        cfg.short_reward.check_prompts(prompts, "short_reward")
    if cfg.generator.checkpoint is None:
        raise ConfigError("generator.checkpoint is null: search needs a trained student (e.g. "
                          "assets/shapes/stream_r1_student)")
    return cfg


def output_files(out: Path) -> dict[str, Path]:
    """Everything a run writes for ``--out``: the video (``out``), the same video in the other format, the scores,
    the search tree (JSON, PNG), the ledger and the resolved config, all named after ``out``'s stem."""
    stem = out.with_suffix("")
    other = ".gif" if out.suffix.lower() == ".mp4" else ".mp4"
    return {"video": out, "other": stem.with_suffix(other), "scores": Path(f"{stem}.scores.json"),
            "tree": Path(f"{stem}.tree.json"), "tree_png": Path(f"{stem}.tree.png"),
            "ledger": Path(f"{stem}.ledger.json"), "config": Path(f"{stem}.config.yaml")}


def _write_json(path: Path, data: dict) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def draw_tree(result: SearchResult, chunk_frames: int, path: Path, switches: Sequence[PromptSwitch] = ()) -> None:
    """``<stem>.tree.png``: the search tree (`tree_figure`: parent -> child edges, pruned and kept candidates, the
    chosen path, memory routes), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from streamvid.tts.tree_figure import tree_figure

    fig = tree_figure(result, chunk_frames, switches)
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


@dataclass
class Searcher:
    """What a run builds once and searches every video with: the student pipeline and the reward(s)."""

    pipe: StreamVidPipeline
    reward: RewardModel
    short_reward: RewardModel | None = None


@dataclass(frozen=True)
class VideoSummary:
    """One searched video as the terminal line and ``results.csv`` report it."""

    final: float | None
    """The chosen video's final score; None when nothing was picked (one beam)."""
    nfe: int
    cost_multiple: float
    """NFE in multiples of plain sampling's."""
    seconds: float
    """Wall time of the search (the files' writing excluded)."""


def build_searcher(cfg: InferT1Config, prompts: Sequence[str]) -> Searcher:
    """The pipeline (its text vocabulary from ``prompts`` and the switches) and the rewards of ``cfg``; sets torch's
    thread count to ``cfg.threads``."""
    from streamvid.core.generator import build_generator, prompt_vocabulary
    from streamvid.core.rewards import build_reward

    torch.set_num_threads(cfg.threads)
    reward = build_reward(cfg.reward.config())
    short_reward = build_reward(cfg.short_reward.config()) if cfg.short_reward is not None else None
    pipe = build_generator(cfg.generator, vocabulary=prompt_vocabulary([*prompts, *cfg.prompt_switches.values()]))
    pipe.set_progress_bar_config(disable=True)
    return Searcher(pipe, reward, short_reward)


def search_and_write(cfg: InferT1Config, searcher: Searcher, files: dict[str, Path],
                     progress: bool = True) -> VideoSummary:
    """Search ``cfg.prompt``'s video (seed ``cfg.search.seed``) and write `output_files` ``files``: the video (mp4 and
    gif), scores, tree (JSON, PNG), ledger and ``cfg`` itself (a config that regenerates this video)."""
    from streamvid.core.video_io import write_video
    from streamvid.tts.strategy import SearchStrategy

    pipe = searcher.pipe
    switches = PromptSwitch.from_mapping(cfg.prompt_switches)
    strategy = SearchStrategy(searcher.reward, cfg.strategy, cfg.search, cfg.n, searcher.short_reward)
    chunks = cfg.num_frames // pipe.sampler.chunk_frames
    start = time.perf_counter()
    with tqdm(total=strategy.progress_total(chunks), desc=cfg.strategy, unit="chunk", file=sys.stderr,
              disable=not progress) as bar:
        strategy.on_chunk = lambda k: bar.update(1)
        output = pipe(cfg.prompt, cfg.num_frames, search=strategy, prompt_switches=switches, output_type="pt")
    seconds = time.perf_counter() - start
    result, video = output.search, output.frames[0]
    best = result.best
    write_video(files["video"], video, fps=cfg.fps)
    write_video(files["other"], video, fps=cfg.fps)
    scores = {"prompt": cfg.prompt, "prompt_switches": {str(k): p for k, p in sorted(cfg.prompt_switches.items())},
              "strategy": cfg.strategy, "final": best.final, "seed": best.seed,
              "chunks": [{"chunk": k, "short": s, "long": lg, "fused": f,
                          "flags": best.flags.get(k * pipe.sampler.chunk_frames)}
                         for k, (s, lg, f) in enumerate(zip(best.short, best.long, best.fused, strict=False))],
              "routes": {str(k): v for k, v in best.routes.items()}}
    _write_json(files["scores"], scores)
    _write_json(files["tree"], {"tree": result.tree_dicts(), "routes": scores["routes"],
                                "search": asdict(cfg.search)})
    draw_tree(result, pipe.sampler.chunk_frames, files["tree_png"], switches)
    plain_nfe = chunks * (len(pipe.sampler.schedule) + 1)
    ledger = result.ledger.to_dict() | {"plain_nfe": plain_nfe, "cost_multiple": round(result.ledger.nfe / plain_nfe, 3)}
    _write_json(files["ledger"], ledger)
    write_resolved_config(cfg, files["config"])
    return VideoSummary(best.final, result.ledger.nfe, ledger["cost_multiple"], seconds)


def infer(args: argparse.Namespace) -> int:
    from streamvid.tts.batch import InferT1BatchConfig, run_batch

    cfg = resolve_config(args)
    if isinstance(cfg, InferT1BatchConfig):  # a prompt file
        run_batch(cfg)
        return 0
    out = check_output_file(args.out, "--out", SUPPORTED_EXTENSIONS)
    files = output_files(out)
    if note := replacing_note(list(files.values())):
        print(note, file=sys.stderr)
    summary = search_and_write(cfg, build_searcher(cfg, [cfg.prompt]), files)
    final = "n/a (one beam, nothing to pick)" if summary.final is None else f"{summary.final:.4f}"
    print(f"{PROG}: {cfg.strategy}: final score {final}, NFE {summary.nfe} ({summary.cost_multiple}x plain), "
          f"wall time {summary.seconds:.1f} s", file=sys.stderr)
    print(f"{PROG}: wrote {', '.join(str(p) for p in files.values())}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, lambda: infer(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
