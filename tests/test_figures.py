"""Figures fit for a paper: readable titles, registry display names, grid points labelled, the
front over all methods, legends off the data, log ticks at the grid, signed gaps by magnitude."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from test_report_sweep import GEOMETRIC, write_sweep_results

from fairbench import metrics
from fairbench.report.common import experiment_title, slug
from fairbench.report.figures import axis_label, plot_pareto
from fairbench.report.html import CSS
from fairbench.report.pareto import hypervolume_table, oriented, pareto_front
from fairbench.report.sweep import plot_sweep, sweep_stats
from fairbench.store import load_results


def test_file_names_have_no_runs_of_underscores() -> None:
    assert slug("adult/income/sex == 'Male'") == "adult_income_sex_Male"
    assert slug("synthetic/y/s") == "synthetic_y_s" and slug("???") == "x"


def test_experiment_titles_use_its_name_or_dataset_target_sensitive() -> None:
    df = pd.DataFrame(
        {
            "experiment": ["german/credit == 1/age > 25", "Table 1"],
            "dataset": ["german", "adult"],
            "target": ["credit == 1", "income"],
            "sensitive": ["age > 25", "sex"],
        }
    )
    assert experiment_title(df, "german/credit == 1/age > 25") == "german: credit == 1, age > 25"
    assert experiment_title(df, "Table 1") == "Table 1"


def test_every_builtin_metric_has_a_display_name_and_axes_never_show_raw_names() -> None:
    builtins = [m for m in metrics.registered().values() if m.origin.startswith("built-in")]
    assert all(m.display for m in builtins), [m.name for m in builtins if not m.display]
    assert axis_label("bias_gap") == "Aligned - conflicting accuracy (nearer 0 is better)"
    assert axis_label("dp") == "DP gap (lower is better)"


def test_a_signed_gap_is_ranked_by_its_magnitude() -> None:
    # bias_gap against accuracy: -0.05 beats +0.10 at equal accuracy, +0.02 beats -0.30
    x = np.array([-0.05, 0.10, 0.02, -0.30])
    y = np.array([0.90, 0.90, 0.80, 0.80])
    assert pareto_front(oriented(x, y, "bias_gap", "acc")).tolist() == [True, False, True, False]
    points = pd.DataFrame(
        {"experiment": "e", "label": ["A", "B", "C"], "x": [-0.3, 0.1, 0.05], "y": [0.9, 0.9, 0.5], "on_front": True}
    )
    volumes = hypervolume_table(points, "bias_gap", "acc").set_index("label")["hypervolume"]
    assert volumes["B"] > volumes["A"]  # the smaller gap, though the larger signed value
    assert hypervolume_table(points, "bias_gap", "acc")["ref_x"].iloc[0] == pytest.approx(0.3 + 0.1 * 0.25)


def _points() -> pd.DataFrame:
    """ADT's lam=1 front point is dominated by GRAD-Pred's; its lam=10 point is on both fronts."""
    rows = [
        ("ADT", "lam=1", 0.20, 0.80, True),
        ("ADT", "lam=10", 0.05, 0.70, True),
        ("ADT", "lam=5", 0.25, 0.60, False),
        ("GRAD-Pred", "default", 0.10, 0.85, True),
    ]
    frame = pd.DataFrame(rows, columns=["label", "point", "x", "y", "on_front"])
    return frame.assign(experiment="e", x_std=0.01, y_std=0.01, n=3)


def test_pareto_figure_labels_grid_points_fades_what_another_method_dominates_and_keeps_the_legend_off() -> None:
    fig = plot_pareto(_points(), "dp", "acc", title="adult: income, sex")
    try:
        ax = fig.axes[0]
        assert sorted(t.get_text() for t in ax.texts) == ["lam=1", "lam=10"]  # front points; no "default"
        alphas = {}
        for container in ax.containers:  # errorbar containers: (marker line, caps, bars)
            line = container.lines[0]
            for x, y in zip(line.get_xdata(), line.get_ydata()):
                alphas[(round(float(x), 2), round(float(y), 2))] = line.get_alpha()
        assert alphas[(0.2, 0.8)] < 1.0  # on ADT's own front, dominated by GRAD-Pred
        assert alphas[(0.05, 0.7)] == 1.0 and alphas[(0.1, 0.85)] == 1.0
        band = next(line for line in ax.get_lines() if line.get_label() == "front over all methods")
        assert list(band.get_xdata()) == [0.05, 0.10]
        fig.canvas.draw()
        legend = ax.get_legend().get_window_extent()
        assert legend.x0 >= ax.get_window_extent().x1  # beside the axes, not on the data
        assert ax.get_xlabel() == "DP gap (lower is better)"
    finally:
        plt.close(fig)


def test_a_log_sweep_axis_has_its_ticks_at_the_grid_values(tmp_path) -> None:
    df = load_results(write_sweep_results(tmp_path / "sweep"))
    stats = sweep_stats(df, "lam", ["acc"])
    fig = plot_sweep(stats[stats["series"] == "GRAD-Pred"], "lam", ["acc"], {})
    try:
        ax = fig.axes[0]
        assert ax.get_xscale() == "log"
        ticked = GEOMETRIC[:-1]  # 2000 sits too close to 1000 for both labels
        assert list(ax.get_xticks()) == pytest.approx(ticked)
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"{v:g}" for v in ticked]
        assert ax.get_ylabel() == "Accuracy"
    finally:
        plt.close(fig)


def test_html_cells_do_not_wrap_and_sweep_figures_get_the_full_width() -> None:
    assert "white-space:nowrap" in CSS and "figure.wide img{max-width:100%}" in CSS
