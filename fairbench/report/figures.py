"""Figure style and the Pareto-front plot (in the manner of DVGE Figures 3-7).

matplotlib runs on the Agg backend: reports are written on headless machines and clusters.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fairbench import metrics  # noqa: E402
from fairbench.metrics import higher_is_better  # noqa: E402
from fairbench.report.choices import FIGURE_FORMATS  # noqa: E402

FORMATS = FIGURE_FORMATS
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
NAMES = {
    "acc": "Accuracy",
    "dp": "DP gap",
    "eo": "EO gap",
    "eo_joint": "EO (joint) gap",
    "eodds_sum": "Equalized odds gap (sum)",
    "eodds_max": "Equalized odds gap (max)",
    "dp_intersectional": "DP gap (intersections)",
    "eo_intersectional": "EO gap (intersections)",
    "acc_worst_group": "Worst-group accuracy",
    "acc_worst_bias": "Worst-group accuracy (bias)",
    "ece": "Calibration error (ECE)",
    "ece_gap": "Calibration gap (ECE)",
    "discrimination": "Discrimination",
    "consistency": "Consistency",
    "delta": "Delta",
}


def apply_style() -> None:
    """One look for every figure: white grid, colour-blind-safe palette, paper-sized fonts."""
    sns.set_theme(style="whitegrid", context="paper", palette="colorblind", font_scale=1.05)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight"})


def axis_label(metric: str) -> str:
    arrow = "higher is better" if higher_is_better(metric) else "lower is better"
    return f"{NAMES.get(metric, metric)} ({arrow})"


def save_figure(fig: Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Write fig as stem.<fmt> for each format; return the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, format=fmt)
        paths.append(path)
    return paths


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def error_bars(values: pd.Series, low: pd.Series, high: pd.Series, metric: str) -> np.ndarray:
    """Asymmetric (2, n) error bars for matplotlib, clipped to the metric's range: a gap's bar
    never goes below zero, an accuracy's stays within [0, 1]."""
    lo, hi = metrics.get(metric).bounds
    centre = values.to_numpy(dtype=float)
    low = np.clip(low.to_numpy(dtype=float), lo, hi)
    high = np.clip(high.to_numpy(dtype=float), lo, hi)
    return np.vstack([np.maximum(centre - low, 0.0), np.maximum(high - centre, 0.0)])


def plot_pareto(
    points: pd.DataFrame, x_metric: str, y_metric: str, title: str = "", level: float | None = None
) -> Figure:
    """One experiment's points (output of pareto_points): a front per label, dominated points faint.

    Front points carry error bars (seed std on both axes, or with `level` the bootstrap interval
    columns x_low..y_high) and are joined in order of x; the dominated hyperparameter points are
    drawn small and transparent so the sweep stays visible.
    """
    apply_style()
    fig, ax = plt.subplots(figsize=(5.2, 3.9))
    labels = list(dict.fromkeys(points.sort_values("label")["label"]))
    colors = sns.color_palette("colorblind", n_colors=max(len(labels), 1))
    for i, label in enumerate(labels):
        sub = points[points["label"] == label]
        color, marker = colors[i % len(colors)], MARKERS[i % len(MARKERS)]
        dominated = sub[~sub["on_front"].astype(bool)]
        ax.scatter(
            dominated["x"],
            dominated["y"],
            color=color,
            marker=marker,
            s=14,
            alpha=0.22,
            linewidths=0,
            zorder=2,
        )
        front = sub[sub["on_front"].astype(bool)].sort_values("x")
        if level is None:
            xerr = error_bars(front["x"], front["x"] - front["x_std"], front["x"] + front["x_std"], x_metric)
            yerr = error_bars(front["y"], front["y"] - front["y_std"], front["y"] + front["y_std"], y_metric)
        else:
            xerr = error_bars(front["x"], front["x_low"], front["x_high"], x_metric)
            yerr = error_bars(front["y"], front["y_low"], front["y_high"], y_metric)
        ax.errorbar(
            front["x"],
            front["y"],
            xerr=xerr,
            yerr=yerr,
            color=color,
            marker=marker,
            markersize=5.5,
            linewidth=1.4,
            elinewidth=0.8,
            capsize=2,
            label=label,
            zorder=3,
        )
    ax.set_xlabel(axis_label(x_metric))
    ax.set_ylabel(axis_label(y_metric))
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=True, loc="best")
    bars = "std over seeds" if level is None else f"{level:.0%} bootstrap interval of the seed mean"
    fig.text(
        0.99,
        0.005,
        f"faint: dominated points; bars: {bars}",
        ha="right",
        va="bottom",
        fontsize=6.5,
        color="0.4",
    )
    fig.tight_layout()
    return fig
