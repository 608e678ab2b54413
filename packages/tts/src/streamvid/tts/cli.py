"""`streamvid-infer-t1`: stream one video with chunk-level test-time search (Stream-T1 or a baseline).

Writes, next to ``--out`` (``<stem>.mp4`` or ``<stem>.gif``): the chosen video as mp4 and gif, ``<stem>.scores.json`` (per-chunk
short / long / fused scores and memory flags of the chosen beam, its final score), ``<stem>.tree.json`` and
``<stem>.tree.png`` (every candidate per chunk with its scores, the survivors, and the memory route of each evicted
chunk), ``<stem>.ledger.json`` (NFE by kind, decodes, reward calls, time per component, peak memory) and
``<stem>.config.yaml`` (the resolved config). Each file is written atomically; existing files of that stem are
replaced, which one ``note:`` line says before the run. Everything is checked before the model is built, and bad
input is one ``error:`` line with exit code 2. ``--frames`` and ``--seed`` are ``streamvid-generate``'s.

Strategies (``strategy``): ``stream_t1`` (the `search` section), ``greedy`` (chunk-greedy, ``n`` children),
``best_of_n`` (``n`` whole videos), ``plain`` (one sample, no search).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from streamvid.core.atomic import atomic_write
from streamvid.core.cli.errors import run_cli
from streamvid.core.cli.paths import check_output_file, replacing_note, write_resolved_config
from streamvid.core.config import ConfigError, check_at_least, check_choice, load_config
from streamvid.core.generator_config import GeneratorConfig, check_generator
from streamvid.core.rewards.configs import RewardSelection
from streamvid.core.sampler import PromptSwitch
from streamvid.core.video_io import SUPPORTED_EXTENSIONS
from streamvid.tts.search import SearchConfig, TreeNode

PROG = "streamvid-infer-t1"
STRATEGIES = ("stream_t1", "greedy", "best_of_n", "plain")

EXAMPLES = """\
examples (run from the repository root):
  streamvid-infer-t1 --config configs/infer/shapes_t1.yaml --prompt "a red circle moving left, then up" --out outputs/infer_t1/red.mp4
  streamvid-infer-t1 --config configs/infer/shapes_t1.yaml --prompt "a blue square moving down" --out outputs/infer_t1/blue_bon.mp4 --set strategy=best_of_n --set n=4
  streamvid-infer-t1 --config configs/infer/shapes_t1.yaml --prompt "a red circle moving left" --out outputs/infer_t1/long.mp4 --set num_frames=36 --set "prompt_switches={4: a red circle moving right, 8: a red circle moving up}"
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
    parser.add_argument("--config", required=True, help="YAML file (schema: InferT1Config in streamvid.tts.cli)")
    parser.add_argument("--prompt", default=None, help="text prompt (required unless the config sets prompt)")
    parser.add_argument("--out", required=True,
                        help="output video path (.mp4 or .gif; the video is written in both formats, the other "
                             "files go next to it)")
    parser.add_argument("--frames", type=int, default=None,
                        help="latent frames (multiple of the chunk size; sets num_frames)")
    parser.add_argument("--seed", type=int, default=None, help="noise seed of the search (sets search.seed)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (e.g. strategy=greedy, search.top_k=3)")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> InferT1Config:
    path = Path(args.config)
    cfg = load_config(path, args.overrides, schema=InferT1Config,  # a missing file is a ConfigError there
                      check=lambda c: check_generator(c.generator))
    if args.prompt is not None:
        cfg = replace(cfg, prompt=args.prompt)
    if args.frames is not None:
        cfg = replace(cfg, num_frames=args.frames)
    if args.seed is not None:
        cfg = replace(cfg, search=replace(cfg.search, seed=args.seed))
    if cfg.prompt is None or not cfg.prompt.strip():
        raise ConfigError(f"no prompt: give --prompt \"a red circle moving left\" (the config {path} sets none)")
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
    if cfg.short_reward is not None:
        cfg.short_reward.check_paths("short_reward")
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


def draw_tree(tree: list[list[TreeNode]], routes: dict[int, str], chunk_frames: int, path: Path,
              switches: Sequence[PromptSwitch] = ()) -> None:
    """PNG: one column per chunk, every candidate's fused score (survivors filled), evicted chunks' routes, and a
    dashed line before each prompt switch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(tree)), 3.2))
    for k, level in enumerate(tree):
        for c in level:
            y = 0.0 if c.fused is None else c.fused
            y = y if y == y and abs(y) != float("inf") else 0.0
            ax.scatter(k, y, s=40, facecolors="tab:blue" if c.kept else "none", edgecolors="tab:blue")
        route = routes.get(k * chunk_frames)
        if route:
            ax.annotate(route, (k, ax.get_ylim()[0]), fontsize=7, rotation=90, va="bottom", color="tab:red")
    for k in sorted(s.chunk for s in switches):
        ax.axvline(k - 0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate("prompt switch", (k - 0.45, ax.get_ylim()[1]), fontsize=7, va="top", color="grey")
    ax.set_xlabel("chunk")
    ax.set_ylabel("fused score (filled: kept)")
    ax.set_title("search tree (red: route of the chunk when it left the window)", fontsize=9)
    fig.tight_layout()
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def infer(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    out = check_output_file(args.out, "--out", SUPPORTED_EXTENSIONS)
    files = output_files(out)
    if note := replacing_note(list(files.values())):
        print(note, file=sys.stderr)
    from streamvid.core.generator import build_generator, prompt_vocabulary
    from streamvid.core.video_io import write_video
    from streamvid.tts.search import best_of_n, chunk_search, greedy_config, plain_config

    torch.set_num_threads(cfg.threads)
    from streamvid.core.rewards import build_reward

    reward = build_reward(cfg.reward.config())
    short_reward = build_reward(cfg.short_reward.config()) if cfg.short_reward is not None else None
    prompts = [cfg.prompt, *cfg.prompt_switches.values()]
    gen = build_generator(cfg.generator, vocabulary=prompt_vocabulary(prompts))
    text = gen.text_encoder.encode([cfg.prompt]).embeddings.to(gen.device)
    switches = [replace(s, text=gen.text_encoder.encode([s.prompt]).embeddings.to(gen.device))
                for s in PromptSwitch.from_mapping(cfg.prompt_switches)]
    chunks = cfg.num_frames // gen.sampler.chunk_frames
    total = chunks * (cfg.n if cfg.strategy == "best_of_n" else 1)
    with tqdm(total=total, desc=cfg.strategy, unit="chunk", file=sys.stderr) as bar:
        common = dict(sampler=gen.sampler, text=text, prompt=cfg.prompt, latent_shape=gen.latent_shape,
                      num_frames=cfg.num_frames, reward=reward, codec=gen.codec, on_chunk=lambda k: bar.update(1),
                      prompt_switches=switches)
        if cfg.strategy == "best_of_n":
            result = best_of_n(n=cfg.n, seed=cfg.search.seed, **common)
        else:
            search = {"stream_t1": cfg.search, "greedy": greedy_config(cfg.n, cfg.search.seed),
                      "plain": plain_config(cfg.search.seed)}[cfg.strategy]
            result = chunk_search(cfg=search, short_reward=short_reward, **common)
    best = result.best
    with torch.no_grad():
        video = gen.codec.decode(best.video_latents()).clamp(0, 1)[0].cpu()
    write_video(files["video"], video, fps=cfg.fps)
    write_video(files["other"], video, fps=cfg.fps)
    scores = {"prompt": cfg.prompt, "prompt_switches": {str(k): p for k, p in sorted(cfg.prompt_switches.items())},
              "strategy": cfg.strategy, "final": best.final, "seed": best.seed,
              "chunks": [{"chunk": k, "short": s, "long": lg, "fused": f,
                          "flags": best.flags.get(k * gen.sampler.chunk_frames)}
                         for k, (s, lg, f) in enumerate(zip(best.short, best.long, best.fused, strict=False))],
              "routes": {str(k): v for k, v in best.routes.items()}}
    _write_json(files["scores"], scores)
    _write_json(files["tree"], {"tree": result.tree_dicts(), "routes": scores["routes"],
                                "search": asdict(cfg.search)})
    draw_tree(result.tree, best.routes, gen.sampler.chunk_frames, files["tree_png"], switches)
    plain_nfe = chunks * (len(gen.sampler.schedule) + 1)
    ledger = result.ledger.to_dict() | {"plain_nfe": plain_nfe, "cost_multiple": round(result.ledger.nfe / plain_nfe, 3)}
    _write_json(files["ledger"], ledger)
    write_resolved_config(cfg, files["config"])
    print(f"{PROG}: wrote {', '.join(str(p) for p in files.values())}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, lambda: infer(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
