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
from fairbench.report.choices import FIGURE_FORMATS  # noqa: E402
from fairbench.report.pareto import oriented, pareto_front  # noqa: E402

FORMATS = FIGURE_FORMATS
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]


def apply_style() -> None:
    """One look for every figure: white grid, colour-blind-safe palette, paper-sized fonts."""
    sns.set_theme(style="whitegrid", context="paper", palette="colorblind", font_scale=1.05)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight"})


def axis_label(metric: str) -> str:
    """The metric's display name (the registry's) and which way is better."""
    entry = metrics.get(metric)
    better = "higher is better" if entry.higher_is_better else "lower is better"
    if entry.signed_gap:
        better = "nearer 0 is better"
    return f"{entry.label} ({better})"


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
    """One experiment's points (output of pareto_points): each label's front, and the front
    over every label.

    A label's front points carry error bars (seed std on both axes, or with `level` the bootstrap
    interval columns x_low..y_high), are joined in order of x and annotated with their grid point;
    a front point that another label dominates is drawn faint, as are the points off the label's
    own front. The front over all labels is a grey band behind them. The legend sits outside the
    axes, off the data.
    """
    apply_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    on_overall = pareto_front(oriented(points["x"].to_numpy(float), points["y"].to_numpy(float), x_metric, y_metric))
    overall = pd.Series(on_overall, index=points.index)
    best = points[overall].sort_values("x")
    ax.plot(
        best["x"],
        best["y"],
        color="0.55",
        linewidth=6,
        alpha=0.25,
        solid_capstyle="round",
        zorder=1,
        label="front over all methods",
    )
    labels = list(dict.fromkeys(points.sort_values("label")["label"]))
    colors = sns.color_palette("colorblind", n_colors=max(len(labels), 1))
    for i, label in enumerate(labels):
        sub = points[points["label"] == label]
        color, marker = colors[i % len(colors)], MARKERS[i % len(MARKERS)]
        own = sub["on_front"].astype(bool)
        dominated = sub[~own]
        ax.scatter(dominated["x"], dominated["y"], color=color, marker=marker, s=14, alpha=0.22, linewidths=0, zorder=2)
        front = sub[own].sort_values("x")
        if level is None:
            xerr = error_bars(front["x"], front["x"] - front["x_std"], front["x"] + front["x_std"], x_metric)
            yerr = error_bars(front["y"], front["y"] - front["y_std"], front["y"] + front["y_std"], y_metric)
        else:
            xerr = error_bars(front["x"], front["x_low"], front["x_high"], x_metric)
            yerr = error_bars(front["y"], front["y_low"], front["y_high"], y_metric)
        ax.plot(front["x"], front["y"], color=color, linewidth=1.4, zorder=3)
        leading = overall.loc[front.index].to_numpy()  # on the front over all labels too
        for strong, alpha in ((True, 1.0), (False, 0.35)):
            keep = leading == strong
            if keep.any():
                ax.errorbar(
                    front["x"][keep],
                    front["y"][keep],
                    xerr=xerr[:, keep],
                    yerr=yerr[:, keep],
                    color=color,
                    marker=marker,
                    markersize=5.5,
                    linestyle="none",
                    elinewidth=0.8,
                    capsize=2,
                    alpha=alpha,
                    zorder=4,
                )
        ax.plot([], [], color=color, marker=marker, markersize=5.5, linewidth=1.4, label=label)  # legend entry
        for row in front[front["point"] != "default"].itertuples():  # the grid point, e.g. lam=10
            ax.annotate(
                row.point,
                (row.x, row.y),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=6.5,
                color=color,
                zorder=5,
            )
    ax.set_xlabel(axis_label(x_metric))
    ax.set_ylabel(axis_label(y_metric))
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    bars = "std over seeds" if level is None else f"{level:.0%} bootstrap interval of the seed mean"
    note = f"faint: dominated points (by the same method, or another); labels: grid points; bars: {bars}"
    fig.text(0.99, 0.005, note, ha="right", va="bottom", fontsize=6.5, color="0.4")
    fig.tight_layout()
    return fig
