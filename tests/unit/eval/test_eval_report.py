"""Reports: bootstrap CIs (contain the mean, seeded, right width), summaries, paired comparisons with a known
difference, Markdown without tabulate, and plots."""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from streamvid.eval.report import (
    bootstrap_ci,
    higher_is_better,
    metric_columns,
    paired_comparison,
    plot_curves,
    plot_window_curves,
    summarize,
    to_markdown,
    write_report,
)


def _run(values: dict[str, np.ndarray], seeds=(0, 1, 2, 3, 4), prompts=("p0", "p1", "p2", "p3")) -> pd.DataFrame:
    keys = [(p, s) for p in prompts for s in seeds]
    table = pd.DataFrame({"prompt": [p for p, _ in keys], "seed": [s for _, s in keys], "status": "ok"})
    for name, v in values.items():
        table[name] = v
    return table


def test_bootstrap_ci_contains_the_mean_is_seeded_and_has_the_normal_width():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=400)
    lo, hi = bootstrap_ci(x, n_boot=2000, seed=7)
    assert lo < x.mean() < hi
    assert (lo, hi) == bootstrap_ci(x, n_boot=2000, seed=7)
    assert (lo, hi) != bootstrap_ci(x, n_boot=2000, seed=8)
    half_width = 1.96 * x.std(ddof=1) / math.sqrt(x.size)  # CLT interval
    assert (hi - lo) / 2 == pytest.approx(half_width, rel=0.1)
    assert bootstrap_ci([1.0, float("nan"), 1.0]) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_ci([float("nan")]))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(x, level=95)


def test_summarize_counts_nan_and_uses_ok_rows_only():
    table = pd.DataFrame({"prompt": list("abcde"), "seed": 0, "status": ["ok", "ok", "ok", "ok", "failed"],
                          "error": [None] * 4 + ["boom"], "m": [1.0, 2.0, 3.0, float("nan"), 100.0]})
    assert metric_columns(table) == ["m"]
    row = summarize(table, n_boot=500).set_index("metric").loc["m"]
    assert (row["n"], row["n_nan"]) == (3, 1)
    assert row["mean"] == pytest.approx(2.0) and row["std"] == pytest.approx(1.0)
    assert row["ci_low"] <= 2.0 <= row["ci_high"] and row["ci_low"] >= 1.0 and row["ci_high"] <= 3.0


def test_paired_comparison_recovers_a_known_difference_on_shuffled_partly_overlapping_runs():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.2, size=20)
    a = _run({"sharpness": base, "warping_error": base})
    b = _run({"sharpness": base + 0.1 + rng.normal(0, 0.01, 20), "warping_error": base + 0.1})
    b = pd.concat([b, _run({"sharpness": [9.0], "warping_error": [9.0]}, seeds=(99,), prompts=("extra",))])
    b = b.sample(frac=1.0, random_state=0)  # row order must not matter: pairs are matched on (prompt, seed)
    a = a.iloc[1:]  # one key only in b
    result = paired_comparison(a, b, n_boot=2000, seed=0).set_index("metric")
    sharp = result.loc["sharpness"]
    assert sharp["n_pairs"] == 19 and (sharp["n_only_a"], sharp["n_only_b"]) == (0, 2)
    assert sharp["mean_diff"] == pytest.approx(0.1, abs=0.01)
    assert sharp["ci_low"] < 0.1 < sharp["ci_high"] and sharp["ci_low"] > 0
    assert sharp["win_rate"] == 1.0  # higher sharpness is better: b wins every pair
    assert result.loc["warping_error", "win_rate"] == 0.0  # lower warping error is better: b loses every pair
    assert not result.loc["warping_error", "higher_is_better"]


def test_paired_comparison_ties_count_half_and_duplicates_are_refused():
    a = _run({"m": np.arange(20.0)})
    b = a.copy()
    b.loc[:9, "m"] += 1.0
    result = paired_comparison(a, b, n_boot=100).iloc[0]
    assert result["win_rate"] == pytest.approx((10 + 0.5 * 10) / 20)
    with pytest.raises(ValueError, match="duplicate key"):
        paired_comparison(pd.concat([a, a.iloc[:1]]), b)
    with pytest.raises(ValueError, match="not in both runs"):
        paired_comparison(a, b, metrics=["other"])


def test_direction_of_drift_columns_and_unknown_metrics():
    assert higher_is_better("sharpness") and not higher_is_better("warping_error")
    assert not higher_is_better("sharpness.drift") and higher_is_better("sharpness.slope")
    assert higher_is_better("some_future_reward")


def test_markdown_fallback_formats_numbers_escapes_pipes_and_aligns():
    table = pd.DataFrame({"metric": ["a|b", "c"], "n": [3, 10], "mean": [0.123456, float("nan")], "flag": [True, False]})
    text = to_markdown(table)
    lines = text.splitlines()
    assert len(lines) == 4 and all(line.startswith("|") and line.endswith("|") for line in lines)
    assert "a\\|b" in lines[2] and "0.1235" in lines[2] and "nan" in lines[3]
    assert len({len(line) for line in lines}) == 1  # columns padded to one width
    rule = lines[1].split("|")[1:-1]
    assert rule[0].startswith(":") and rule[1].endswith(":") and rule[3].startswith(":")


def test_plots_write_images(tmp_path):
    windows = pd.DataFrame([{"metric": m, "window": k, "time": k * 0.5, "value": v + k + s}
                            for m in ("sharpness", "warping_error") for k in range(3) for s, v in enumerate([0, 1])])
    path = plot_window_curves(windows, tmp_path / "plots" / "windows.png", n_boot=100)
    assert matplotlib.image.imread(path).shape[1] > 2 * matplotlib.image.imread(path).shape[0]  # two panels
    budget = pd.DataFrame({"budget": [1, 1, 2, 2, 4, 4] * 2, "score": np.arange(12.0), "method": ["bon"] * 6 + ["t1"] * 6})
    assert matplotlib.image.imread(plot_curves(budget, "budget", "score", tmp_path / "b.png", group="method")).ndim == 3
    with pytest.raises(ValueError, match="no window rows"):
        plot_window_curves(windows.iloc[:0], tmp_path / "empty.png")


def test_write_report_lists_failures_and_notes(tmp_path):
    table = pd.DataFrame({"prompt": ["a", "b"], "seed": [0, 0], "status": ["ok", "failed"],
                          "error": [None, "metric m: ValueError: bad"], "m": [1.0, float("nan")]})
    paths = write_report(table, tmp_path, notes=["smoke run"], n_boot=50)
    text = paths["summary_md"].read_text()
    assert "> smoke run" in text and "Videos: 2 (1 ok, 1 failed)" in text
    assert "## Failed videos" in text and "metric m: ValueError: bad" in text
    assert pd.read_csv(paths["summary_csv"]).loc[0, "n"] == 1


def test_seed_mean_ci_is_the_mean_and_the_bootstrap_over_prompts_of_the_seed_means() -> None:
    from streamvid.eval.report import bootstrap_ci, seed_mean_ci

    d = [[0.1, 0.3, 0.5], [0.3, 0.5, 0.7]]  # seeds x prompts
    lo, hi = bootstrap_ci([0.2, 0.4, 0.6], n_boot=500)
    assert seed_mean_ci(d, n_boot=500) == [0.4, round(lo, 4), round(hi, 4)]
    assert lo < 0.4 < hi
