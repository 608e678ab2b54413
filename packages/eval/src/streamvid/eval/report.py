"""Tables and plots from per-video scores: summary with bootstrap CIs, paired comparison, Markdown, plots.

A *scores table* has one row per video with the key columns ``prompt`` / ``seed`` / ``sample_index``,
``status`` (``ok`` | ``failed``) and one float column per metric (NaN = "not applicable", e.g. temporal
flickering on a moving video). Summaries and comparisons use ``status == "ok"`` rows and finite values only.

Statistics (percentile bootstrap, Efron & Tibshirani 1993 ch. 13; ``numpy.random.default_rng(seed)``, so a
seed gives the same interval every time):

    CI_level(mean x)  = quantiles (1-level)/2 and (1+level)/2 of mean(x[idx_b]), idx_b ~ U{0..n-1}^n, b < n_boot
    paired difference = d_k = b_k - a_k on the keys both runs share; mean(d) with the same bootstrap CI
    win rate          = (#{b better} + 0.5 #{tie}) / n_pairs, "better" per the metric's direction
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from streamvid.core.stats import bootstrap_ci

__all__ = [
    "META_COLUMNS", "bootstrap_ci", "higher_is_better", "metric_columns", "paired_comparison", "plot_curves",
    "plot_window_curves", "read_scores", "seed_mean_ci", "summarize", "to_markdown", "write_report",
]

META_COLUMNS = ("prompt_index", "prompt_id", "prompt", "sample_index", "seed", "status", "error", "source",
                "file", "seconds", "finished_at")
"""Columns of a scores table that are not metrics."""
LOWER_IS_BETTER_SUFFIXES = (".drift", ".max_drift")
"""Drift columns (``<metric>.drift``): a degradation, so lower is better whatever the metric's direction."""


def read_scores(run_dir: str | Path) -> pd.DataFrame:
    """A run's ``scores.csv``; only empty cells are NaN (a prompt such as "None" stays a string)."""
    path = Path(run_dir) / "scores.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no scores.csv in run folder {run_dir}")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The numeric columns of ``table`` that are not :data:`META_COLUMNS`, in table order."""
    return [c for c in table.columns if c not in META_COLUMNS and pd.api.types.is_numeric_dtype(table[c])]


def higher_is_better(column: str) -> bool:
    """Direction of a score column: ``*.drift`` -> False; else the registry's spec; unknown names -> True."""
    if column.endswith(LOWER_IS_BETTER_SUFFIXES):
        return False
    from streamvid.eval.metrics import get_spec

    try:
        return get_spec(column.split(".", 1)[0]).higher_is_better
    except KeyError:
        return True


def seed_mean_ci(d, *, n_boot: int = 4000, level: float = 0.95, seed: int = 0) -> list[float]:
    """``[mean, lo, hi]`` (4 decimals) of ``d [S, P]`` (seeds x prompts, e.g. paired differences): the mean, and
    `bootstrap_ci` over prompts of the seed means."""
    x = np.asarray(d, dtype=np.float64)
    lo, hi = bootstrap_ci(x.mean(axis=0).tolist(), n_boot=n_boot, level=level, seed=seed)
    return [round(float(x.mean()), 4), round(lo, 4), round(hi, 4)]


def _ok(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["status"] == "ok"] if "status" in table.columns else table


def summarize(table: pd.DataFrame, metrics: Sequence[str] | None = None, *, n_boot: int = 1000,
              level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per metric: n (finite values), n_nan, mean, std (ddof 1), ci_low, ci_high, higher_is_better."""
    ok = _ok(table)
    rows = []
    for name in metrics if metrics is not None else metric_columns(table):
        col = pd.to_numeric(ok[name], errors="coerce").to_numpy(dtype=np.float64) if name in ok else np.array([])
        finite = col[np.isfinite(col)]
        lo, hi = bootstrap_ci(finite, n_boot=n_boot, level=level, seed=seed)
        rows.append({
            "metric": name, "n": int(finite.size), "n_nan": int(col.size - finite.size),
            "mean": float(finite.mean()) if finite.size else math.nan,
            "std": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
            "ci_low": lo, "ci_high": hi, "higher_is_better": higher_is_better(name),
        })
    return pd.DataFrame(rows, columns=["metric", "n", "n_nan", "mean", "std", "ci_low", "ci_high",
                                       "higher_is_better"])


def paired_comparison(a: pd.DataFrame, b: pd.DataFrame, metrics: Sequence[str] | None = None, *,
                      on: Sequence[str] = ("prompt", "seed"), n_boot: int = 1000, level: float = 0.95,
                      seed: int = 0) -> pd.DataFrame:
    """Compare run ``b`` against run ``a`` on the keys ``on`` both have (``ok`` rows only).

    One row per metric: n_pairs, mean_a, mean_b, mean_diff (b - a), ci_low / ci_high (bootstrap CI of the
    mean paired difference), win_rate (b better, ties half), higher_is_better, n_only_a / n_only_b (keys
    present in one run only). ``metrics`` defaults to the metric columns the two tables share.
    """
    on = list(on)
    for name, t in (("a", a), ("b", b)):
        missing = [k for k in on if k not in t.columns]
        if missing:
            raise ValueError(f"run {name} has no key column(s) {missing}; columns: {list(t.columns)}")
        dup = t.duplicated(on)
        if dup.any():
            raise ValueError(f"run {name} has {int(dup.sum())} duplicate key(s) on {on}, e.g. "
                             f"{t.loc[dup, on].iloc[0].tolist()}")
    if metrics is None:
        metrics = [m for m in metric_columns(a) if m in set(metric_columns(b))]
    absent = [m for m in metrics if m not in a.columns or m not in b.columns or m in on]
    if absent:
        raise ValueError(f"metric column(s) {absent} are not in both runs")
    oa, ob = _ok(a), _ok(b)
    joined = oa.merge(ob, on=on, suffixes=("__a", "__b"))
    keys_a, keys_b = set(map(tuple, oa[on].to_numpy())), set(map(tuple, ob[on].to_numpy()))
    rows = []
    for name in metrics:
        va, vb = joined[f"{name}__a"].to_numpy(np.float64), joined[f"{name}__b"].to_numpy(np.float64)
        both = np.isfinite(va) & np.isfinite(vb)
        va, vb = va[both], vb[both]
        diff = vb - va
        hib = higher_is_better(name)
        better = (diff > 0) if hib else (diff < 0)
        win = (better.sum() + 0.5 * (diff == 0).sum()) / diff.size if diff.size else math.nan
        lo, hi = bootstrap_ci(diff, n_boot=n_boot, level=level, seed=seed)
        rows.append({
            "metric": name, "n_pairs": int(diff.size),
            "mean_a": float(va.mean()) if va.size else math.nan, "mean_b": float(vb.mean()) if vb.size else math.nan,
            "mean_diff": float(diff.mean()) if diff.size else math.nan, "ci_low": lo, "ci_high": hi,
            "win_rate": float(win), "higher_is_better": hib,
            "n_only_a": len(keys_a - keys_b), "n_only_b": len(keys_b - keys_a),
        })
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub Markdown table: pandas' ``to_markdown`` when ``tabulate`` is installed, else a small formatter."""
    try:
        import tabulate  # noqa: F401
    except ImportError:
        pass
    else:
        return table.to_markdown(index=False, floatfmt=floatfmt)

    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "nan" if math.isnan(v) else format(float(v), floatfmt)
        return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")

    header = [str(c) for c in table.columns]
    body = [[cell(v) for v in row] for row in table.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in table.columns]
    widths = [max([len(h), 3, *(len(r[i]) for r in body)]) for i, h in enumerate(header)]

    def line(cells) -> str:
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w)
                                 for c, w, num in zip(cells, widths, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else (":" + "-" * (w + 1))
                          for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def _new_axes(n: int, width: float = 4.5, height: float = 3.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n, height), layout="constrained")  # Agg canvas, no pyplot global state
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, n, k + 1) for k in range(n)]


def plot_curves(table: pd.DataFrame, x: str, y: str, out_path: str | Path, *, group: str | None = None,
                n_boot: int = 1000, level: float = 0.95, seed: int = 0, title: str | None = None) -> Path:
    """Mean ``y`` per value of ``x`` (one line per ``group``) with bootstrap CI bars; e.g. metric vs budget."""
    fig, (ax,) = _new_axes(1, width=5.5, height=3.6)
    groups = [(None, table)] if group is None else list(table.groupby(group, sort=True))
    for name, part in groups:
        stats = [(xv, float(np.nanmean(v)), *bootstrap_ci(v, n_boot=n_boot, level=level, seed=seed))
                 for xv, v in ((xv, g[y].to_numpy(np.float64)) for xv, g in part.groupby(x, sort=True))
                 if np.isfinite(v).any()]
        if not stats:
            continue
        xs, means, lo, hi = map(np.asarray, zip(*stats))
        ax.errorbar(xs, means, yerr=[means - lo, hi - means], marker="o", capsize=3,
                    label=None if name is None else f"{group}={name}")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or f"{y} vs {x} (mean, {level:.0%} CI)")
    if group is not None:
        ax.legend(fontsize="small")
    return _save(fig, out_path)


def plot_window_curves(windows: pd.DataFrame, out_path: str | Path, *, n_boot: int = 1000, level: float = 0.95,
                       seed: int = 0) -> Path:
    """Metric per window over a long video: one panel per metric, mean over videos with a CI band.

    ``windows`` has columns metric, window (index), time (window start, seconds) and value.
    """
    names = list(dict.fromkeys(windows["metric"]))
    if not names:
        raise ValueError("no window rows to plot")
    fig, axes = _new_axes(len(names))
    for ax, name in zip(axes, names):
        part = windows[windows["metric"] == name]
        stats = [(float(g["time"].mean()), float(np.nanmean(g["value"])),
                  *bootstrap_ci(g["value"].to_numpy(np.float64), n_boot=n_boot, level=level, seed=seed))
                 for _, g in part.groupby("window", sort=True) if np.isfinite(g["value"]).any()]
        if stats:
            t, mean, lo, hi = map(np.asarray, zip(*stats))
            ax.plot(t, mean, marker="o")
            ax.fill_between(t, lo, hi, alpha=0.25, label=f"{level:.0%} CI")
        ax.set_xlabel("window start (s)")
        ax.set_title(f"{name} per window ({'higher' if higher_is_better(name) else 'lower'} is better)")
    return _save(fig, out_path)


def _save(fig, out_path: str | Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    return out_path


def write_report(table: pd.DataFrame, out_dir: str | Path, *, windows: pd.DataFrame | None = None,
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0, notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md`` (notes, counts, summary, failures) and ``plots/windows.png``."""
    out_dir = Path(out_dir)
    summary = summarize(table, n_boot=n_boot, level=level, seed=seed)
    paths = {"summary_csv": out_dir / "summary.csv", "summary_md": out_dir / "summary.md"}
    summary.to_csv(paths["summary_csv"], index=False)
    status = table["status"] if "status" in table.columns else pd.Series(["ok"] * len(table))
    lines = ["# Evaluation summary", "", *[f"> {n}" for n in notes], "" if notes else None,
             f"Videos: {len(table)} ({int((status == 'ok').sum())} ok, {int((status != 'ok').sum())} failed). "
             f"Mean, std and {level:.0%} bootstrap CI ({n_boot} resamples, seed {seed}) over ok videos; "
             "n_nan counts videos where the metric does not apply.", "", to_markdown(summary), ""]
    failed = table[status != "ok"]
    if len(failed):
        cols = [c for c in ("prompt", "seed", "error") if c in failed.columns]
        lines += ["## Failed videos", "", to_markdown(failed[cols]), ""]
    paths["summary_md"].write_text("\n".join(x for x in lines if x is not None))
    if windows is not None and len(windows):
        paths["windows_png"] = plot_window_curves(windows, out_dir / "plots" / "windows.png", n_boot=n_boot,
                                                  level=level, seed=seed)
    return paths
