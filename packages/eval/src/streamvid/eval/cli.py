"""`streamvid-eval`: run an evaluation suite, or compare two finished runs.

    streamvid-eval --config configs/eval/shapes_smoke.yaml [--set output_dir=outputs/eval/x --set seeds=[0,1]]
    streamvid-eval --compare RUN_DIR_A RUN_DIR_B [--out DIR] [--config CFG]
    torchrun --nproc_per_node 2 .venv/bin/streamvid-eval --config ...      # prompts sharded over 2 ranks

A run writes its folder as described in `streamvid.eval.runner` and prints the summary table (Markdown) on
stdout; rerunning the same command resumes it. `--compare` pairs the runs' videos on (prompt, seed) -- on
(prompt, sample_index) when a run has unknown seeds -- and prints mean difference B - A with its bootstrap CI
and B's win rate per metric (`--out` also writes comparison.csv / comparison.md; `--config` takes the
bootstrap settings from that config's `report:`). Bad input prints one `error:` line and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamvid.core.cli.errors import run_cli
from streamvid.core.config import ConfigError, load_config

PROG = "streamvid-eval"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
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
    return args


def _load(args: argparse.Namespace):
    from streamvid.eval.runner import EvalConfig

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    return load_config(path, args.overrides, schema=EvalConfig)


def run(args: argparse.Namespace) -> int:
    from streamvid.eval.report import to_markdown
    from streamvid.eval.runner import run_eval

    result = run_eval(_load(args))
    if result.table is None:  # a rank other than 0: rank 0 reports
        return 0
    c = result.counts
    print(to_markdown(result.summary))
    print(f"{result.output_dir}: {len(result.table)} videos ({int((result.table['status'] != 'ok').sum())} failed); "
          f"this run generated {c['generated']}, scored {c['scored']}, skipped {c['skipped']}", file=sys.stderr)
    return 0


def compare(args: argparse.Namespace) -> int:
    from streamvid.eval.report import paired_comparison, read_scores, to_markdown
    from streamvid.eval.runner import ReportConfig

    rc = _load(args).report if args.config else ReportConfig()
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
    text = (f"B = {args.compare[1]} vs A = {args.compare[0]}: mean_diff = B - A on {table['n_pairs'].max()} "
            f"pairs keyed by {on}; {rc.level:.0%} bootstrap CI; win_rate = share of pairs where B is better.\n\n"
            + to_markdown(table))
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "comparison.csv", index=False)
        (out / "comparison.md").write_text(text + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROG, lambda: (lambda a: compare(a) if a.compare else run(a))(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
