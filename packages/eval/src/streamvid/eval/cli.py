"""`streamvid-eval`: run an evaluation suite, or compare two finished runs.

    streamvid-eval --config CONFIG [--set KEY=VALUE ...]
    streamvid-eval --compare RUN_DIR_A RUN_DIR_B [--out DIR] [--config CONFIG]
    torchrun --nproc_per_node N .venv/bin/streamvid-eval --config CONFIG     # prompts sharded over N ranks

A run writes its folder as described in `streamvid.eval.runner` and prints the summary table (Markdown) on
stdout and its caveats (`note:` lines, e.g. a randomly initialised generator) on stderr; rerunning the same
command resumes it. `--compare` pairs the runs' videos on (prompt, seed) -- on (prompt, sample_index) when a
run has unknown seeds -- and prints mean difference B - A with its bootstrap CI and B's win rate per metric
(`--out` also writes comparison.csv / comparison.md; `--config` takes the bootstrap settings from that
config's `report:`); runs without a common pair are an error. Everything is checked before the first video:
the config, the output folder (a writable directory), the generator's checkpoint and text encoder, the
videos_dir naming. Bad input prints one `error:` line and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamvid.core.cli.errors import run_cli
from streamvid.core.cli.paths import check_output_dir
from streamvid.core.config import ConfigError, load_config

PROG = "streamvid-eval"
EXAMPLES = """\
examples (run from the repository root):
  streamvid-eval --config configs/eval/shapes_student.yaml
  streamvid-eval --config configs/eval/tiny_random_smoke.yaml --set output_dir=outputs/eval/smoke
  streamvid-eval --config configs/eval/tiny_random_smoke.yaml --set output_dir=outputs/eval/window6 --set generator.sampler.cache.local_attn_frames=6
  streamvid-eval --compare outputs/eval/smoke outputs/eval/window6 --out outputs/eval/smoke_vs_window6
  streamvid-eval --config configs/eval/tiny_random_smoke.yaml --set output_dir=outputs/eval/smoke --set export.enabled=true
  streamvid-eval --config configs/eval/videos_folder.yaml --set videos_dir=outputs/eval/smoke/vbench
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file (schema: streamvid.eval.runner.EvalConfig)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, repeatable (e.g. output_dir=outputs/eval/x)")
    parser.add_argument("--compare", nargs=2, metavar=("RUN_DIR_A", "RUN_DIR_B"),
                        help="compare two finished runs instead of running one")
    parser.add_argument("--out", help="with --compare: folder for comparison.csv / comparison.md")
    args = parser.parse_args(argv)
    if args.config is None and args.compare is None:
        parser.error("give --config (run a suite) or --compare RUN_DIR_A RUN_DIR_B")
    if args.overrides and args.config is None:
        parser.error("--set needs --config")
    if args.out and args.compare is None:
        parser.error("--out needs --compare (a run writes to its config's output_dir)")
    return args


def _load(args: argparse.Namespace):
    from streamvid.eval.runner import EvalConfig
    from streamvid.eval.runner_config import check_runnable

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    return load_config(path, args.overrides, schema=EvalConfig, check=check_runnable)


def run(args: argparse.Namespace) -> int:
    from streamvid.eval.report import to_markdown
    from streamvid.eval.runner import run_eval

    result = run_eval(_load(args))
    if result.table is None:  # a rank other than 0: rank 0 reports
        return 0
    c, table = result.counts, result.table
    failed = int((table["status"] != "ok").sum()) if "status" in table.columns else 0
    print(to_markdown(result.summary))
    print(f"{result.output_dir}: {len(table)} videos ({failed} failed); "
          f"this run generated {c['generated']}, scored {c['scored']}, skipped {c['skipped']}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def compare(args: argparse.Namespace) -> int:
    from streamvid.eval.report import paired_comparison, read_scores, to_markdown
    from streamvid.eval.runner import ReportConfig

    rc = _load(args).report if args.config else ReportConfig()
    out = check_output_dir(args.out, "--out") if args.out else None
    a, b = (read_scores(run_dir) for run_dir in args.compare)
    on = ("prompt", "seed")
    if (a["seed"] < 0).any() or (b["seed"] < 0).any():
        on = ("prompt", "sample_index")
        print("note: a run has unknown seeds (-1); pairing on (prompt, sample_index)", file=sys.stderr)
    try:
        table = paired_comparison(a, b, on=on, n_boot=rc.n_boot, level=rc.level, seed=rc.seed)
    except ValueError as err:
        raise ConfigError(f"cannot compare {args.compare[0]} and {args.compare[1]}: {err}") from None
    if table.empty:
        raise ConfigError(f"runs {args.compare[0]} and {args.compare[1]} share no metric column")
    if table["n_pairs"].max() == 0:
        raise ConfigError(_no_pairs(a, b, on, *args.compare))
    text = (f"B = {args.compare[1]} vs A = {args.compare[0]}: mean_diff = B - A on {table['n_pairs'].max()} "
            f"pairs keyed by {on}; {rc.level:.0%} bootstrap CI; win_rate = share of pairs where B is better.\n\n"
            + to_markdown(table))
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "comparison.csv", index=False)
        (out / "comparison.md").write_text(text + "\n")
    return 0


def _no_pairs(a, b, on: tuple[str, ...], name_a: str, name_b: str) -> str:
    """Why a comparison has no pair: no common key at all, or no common key where both videos are ok."""
    keys_a, keys_b = (list(t[list(on)].itertuples(index=False, name=None)) for t in (a, b))
    common = set(keys_a) & set(keys_b)
    key = f"({', '.join(on)})"
    if not common:
        return (f"runs {name_a} and {name_b} share no {key} pair, so there is nothing to compare: A has "
                f"{len(keys_a)} videos (e.g. {keys_a[0] if keys_a else None}), B has {len(keys_b)} "
                f"(e.g. {keys_b[0] if keys_b else None}); compare runs of the same prompts and seeds")
    return (f"runs {name_a} and {name_b} share {len(common)} {key} pairs but none where both videos are ok "
            "with a finite score (see their summary.md)")


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, lambda: (lambda a: compare(a) if a.compare else run(a))(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
