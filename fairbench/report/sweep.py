"""Metrics against one swept numeric hyperparameter (in the manner of GRAD Figure 2).

A parameter is *swept* in an (experiment, label) group when it takes at least MIN_VALUES
numeric values there. Each line is one label (and, when other parameters also vary, one
combination of them), drawn at the seed mean with a band of +- one seed std (clipped to the
metric's range); the x axis is logarithmic when the grid is geometric, and a dashed vertical
line marks the method's default for that parameter (its default under the run's budget, as the
run recorded it in the results store: store.ReportSpecs.defaults).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from fairbench import metrics as metrics_mod
from fairbench.report.common import GROUP, point_keys, untagged
from fairbench.report.figures import MARKERS, apply_style

MIN_VALUES = 3
# The first three of these present in the results are drawn unless metrics are named.
DEFAULT_METRICS = ("acc", "discrimination", "consistency", "dp", "eo")
SERIES = ["experiment", "label", "method", "budget", "series"]


def numeric(column: pd.Series) -> pd.Series | None:
    """The column as floats, or None when a present value is not a number (a string, a list)."""
    present = column.dropna()
    if present.empty or present.map(lambda v: isinstance(v, bool)).any():
        return None
    values = pd.to_numeric(present, errors="coerce")
    return None if values.isna().any() else pd.to_numeric(column, errors="coerce")


def swept_params(df: pd.DataFrame) -> list[str]:
    """Names of the numeric parameters that take >= MIN_VALUES values in some (experiment, label)."""
    found = []
    for col in sorted(c for c in df.columns if c.startswith("param_")):
        values = numeric(df[col])
        if values is not None and values.groupby([df[c] for c in GROUP], dropna=False).nunique().max() >= MIN_VALUES:
            found.append(col.removeprefix("param_"))
    return found


def is_geometric(values: Sequence[float]) -> bool:
    """True when the distinct values are positive and at least three, and their gaps are more even
    on a log scale than on a linear one (1, 3, 10, 30, ... 2000 is; 0.1, 0.2, ... 1.0 is not)."""
    grid = np.unique(np.asarray(values, dtype=float))
    if len(grid) < 3 or grid[0] <= 0:
        return False

    def spread(gaps: np.ndarray) -> float:
        return float(np.std(gaps) / np.mean(gaps))

    return spread(np.diff(np.log(grid))) < spread(np.diff(grid))


def sweep_metrics(available: set[str], wanted: Sequence[str] | None = None) -> list[str]:
    """`wanted` as given, else the first three of DEFAULT_METRICS that the results hold."""
    if wanted:
        return list(wanted)
    return [m for m in DEFAULT_METRICS if m in available][:3]


def sweep_stats(df: pd.DataFrame, param: str, metrics: Sequence[str], split: str = "test") -> pd.DataFrame:
    """Seed mean and std of each metric per (experiment, series, value x of `param`).

    Columns: experiment, label, method, budget, series, x, metric, mean, std (sample std, 0 for
    one seed), n (seeds). `series` is the label, followed by the other varying parameters'
    values when there are any. Only series in which `param` takes two or more values are kept.
    """
    cols = [*SERIES, "x", "metric", "mean", "std", "n"]
    col = f"param_{param}"
    rows = untagged(df)
    rows = rows[(rows["split"] == split) & rows["metric"].isin(list(metrics))]
    x = numeric(rows[col]) if col in rows and not rows.empty else None
    if x is None:
        return pd.DataFrame(columns=cols)
    rows = rows.assign(x=x, label=rows["label"].fillna(rows["method"])).dropna(subset=["x"])
    others = point_keys(rows.drop(columns=[col]))
    rows = rows.assign(
        series=[label if key == "default" else f"{label} ({key})" for label, key in zip(rows["label"], others)]
    )
    rows = rows[rows.groupby(["experiment", "series"])["x"].transform("nunique") >= 2]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    stats = (
        rows.groupby([*SERIES, "x", "metric"], sort=True, dropna=False)["value"]
        .agg(mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, n="count")
        .reset_index()
    )
    return stats[cols]


Defaults = Mapping[tuple[str, str], Mapping[str, Any]]  # (method, budget) -> its default parameters


def method_defaults(stats: pd.DataFrame, param: str, defaults: Defaults) -> dict[float, list[str]]:
    """Default value of `param` -> the labels whose method has it under the run's budget (per
    `defaults`); methods without a recorded or a numeric default add nothing."""
    found: dict[float, list[str]] = {}
    for (label, method, budget), _ in stats.groupby(["label", "method", "budget"], sort=True, dropna=False):
        value = defaults.get((method, str(budget)), {}).get(param)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found.setdefault(float(value), []).append(str(label))
    return found


def spaced_ticks(grid: Sequence[float], share: float = 0.1) -> list[float]:
    """The grid values to tick on a log axis: in order, each at least `share` of the axis's log
    range after the last one kept, so that labels do not run into each other."""
    logs = np.log10(np.asarray(grid, dtype=float))
    gap = share * (logs.max() - logs.min())
    kept = [0]
    for index in range(1, len(logs)):
        if logs[index] - logs[kept[-1]] >= gap:
            kept.append(index)
    return [float(grid[i]) for i in kept]


def plot_sweep(stats: pd.DataFrame, param: str, metrics: Sequence[str], defaults: Defaults, title: str = "") -> Figure:
    """One panel per metric: a line per series at the seed mean, a +- std band, each method's
    default (per `defaults`, see `method_defaults`) dashed."""
    apply_style()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.1), squeeze=False)
    series = list(dict.fromkeys(stats.sort_values("series")["series"]))
    colors = sns.color_palette("colorblind", n_colors=max(len(series), 1))
    log = is_geometric(stats["x"])
    grid = sorted(stats["x"].dropna().unique())
    marks = method_defaults(stats, param, defaults)
    for ax, metric in zip(axes[0], metrics, strict=True):
        lo, hi = metrics_mod.get(metric).bounds
        for i, name in enumerate(series):
            sub = stats[(stats["series"] == name) & (stats["metric"] == metric)].sort_values("x")
            x, mean, std = (sub[c].to_numpy(dtype=float) for c in ("x", "mean", "std"))
            color = colors[i % len(colors)]
            ax.plot(x, mean, color=color, marker=MARKERS[i % len(MARKERS)], markersize=4, linewidth=1.4, label=name)
            ax.fill_between(x, np.clip(mean - std, lo, hi), np.clip(mean + std, lo, hi), color=color, alpha=0.2)
        for value, labels in marks.items():
            ax.axvline(value, color="black", linestyle="--", linewidth=1.0, label=f"default ({', '.join(labels)})")
        if log:
            ax.set_xscale("log")
            ax.set_xticks(spaced_ticks(grid), minor=False)  # at the grid's values, not at powers of ten
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(param)
        ax.set_ylabel(metrics_mod.get(metric).label)
    # the legend below the panels, off the data
    handles, names = axes[0][-1].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        fontsize=7,
        frameon=False,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(names), 4),
    )
    if title:
        fig.suptitle(title, fontsize=10)
    n = int(stats["n"].max()) if len(stats) else 0
    fig.text(0.99, 0.005, f"bands: ± std over {n} seeds", ha="right", va="bottom", fontsize=6.5, color="0.4")
    fig.tight_layout()
    return fig
