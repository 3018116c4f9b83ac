"""Sweep figures: metrics against a swept numeric parameter (GRAD Figure 2's form).

A small results folder is written through the real store: GRAD-Pred over a geometric lambda
grid and ADT over a linear one, three seeds, with metric values given by formulas so that seed
means and stds are known by hand.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.collections import PolyCollection

from fairbench.errors import FairbenchError
from fairbench.report import build_report
from fairbench.report.build import Options
from fairbench.report.cli import report as report_command
from fairbench.report.sweep import is_geometric, plot_sweep, sweep_stats, swept_params
from fairbench.runner import registered_specs
from fairbench.store import Store, load_report_specs, load_results

GEOMETRIC = [1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 2000.0]
LINEAR = [0.25, 0.5, 0.75, 1.0]
SEEDS = [0, 1, 2]


def value(metric: str, lam: float, seed: int) -> float:
    """acc falls and discrimination shrinks with log(lam); seeds shift by -0.01, 0, +0.01."""
    base = {"acc": 0.85 - 0.01 * np.log10(lam), "discrimination": 0.1 / (1 + lam), "consistency": 0.9}[metric]
    return base + 0.01 * (seed - 1)


def write_sweep_results(folder: Path) -> Path:
    store = Store(folder)
    jobs = [("GRAD-Pred", "grad_pred", lam) for lam in GEOMETRIC] + [("ADT", "adt", lam) for lam in LINEAR]
    jobs.append(("NN", "erm", None))
    for n, ((label, method, lam), seed) in enumerate((j, s) for j in jobs for s in SEEDS):
        params = {"epochs": 50, "lr": 0.001} | ({} if lam is None else {"lam": lam})
        job = {
            "job_id": f"j{n:03d}",
            "suite": "sweep",
            "experiment": "adult/sex",
            "dataset": "adult",
            "protocol": "official",
            "target": "income",
            "sensitive": "sex == 'Male'",
            "method": method,
            "label": label,
            "budget": "paper",
            "seed": seed,
            "params": params,
            "status": "done",
        }
        rows = [
            (split, metric, value(metric, lam or 1.0, seed), {})
            for split in ("val", "test")
            for metric in ("acc", "discrimination", "consistency")
        ]
        store.record(job, rows)
    store.record_report_specs(registered_specs(["grad_pred", "adt", "erm"], "paper"))
    store.export()
    store.close()
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return write_sweep_results(tmp_path_factory.mktemp("results") / "sweep")


def test_geometric_grid_detection():
    assert is_geometric(GEOMETRIC) and is_geometric([0.001, 0.01, 0.1, 1.0])
    assert not is_geometric(LINEAR) and not is_geometric([0.1, 0.2, 0.3, 0.4, 0.5])
    assert not is_geometric([0.0, 1.0, 10.0, 100.0])  # zero has no logarithm
    assert not is_geometric([1.0, 100.0])  # two values: no grid to judge


def test_swept_params_are_numeric_with_three_values(results):
    df = load_results(results)
    assert swept_params(df) == ["lam"]  # epochs and lr take one value each


def test_seed_means_and_stds_against_hand_values(results):
    stats = sweep_stats(load_results(results), "lam", ["acc", "discrimination"])
    assert set(stats["series"]) == {"GRAD-Pred", "ADT"}  # erm has no lam
    row = stats[(stats["series"] == "GRAD-Pred") & (stats["x"] == 100.0) & (stats["metric"] == "acc")].iloc[0]
    assert row["mean"] == pytest.approx(0.85 - 0.02)
    assert row["std"] == pytest.approx(0.01)  # sample std of -0.01, 0, +0.01
    assert row["n"] == 3
    assert len(stats) == (len(GEOMETRIC) + len(LINEAR)) * 2


def dashed_x(ax) -> list[float]:
    return [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]


def test_figure_log_axis_bands_and_default_line(results):
    df = load_results(results)
    metrics = ["acc", "discrimination", "consistency"]
    stats = sweep_stats(df, "lam", metrics)
    defaults = load_report_specs(results).defaults  # recorded from the registry, read from the store
    fig = plot_sweep(stats[stats["series"] == "GRAD-Pred"], "lam", metrics, defaults)
    try:
        assert len(fig.axes) == 3
        for ax in fig.axes:
            assert ax.get_xscale() == "log"
            assert dashed_x(ax) == [100.0]  # grad_pred's declared default lambda
        # The accuracy band spans mean +- std at every lambda.
        band = next(c for c in fig.axes[0].collections if isinstance(c, PolyCollection))
        ys = band.get_paths()[0].vertices[:, 1]
        means = [0.85 - 0.01 * np.log10(lam) for lam in GEOMETRIC]
        assert ys.max() == pytest.approx(max(means) + 0.01) and ys.min() == pytest.approx(min(means) - 0.01)
    finally:
        plt.close(fig)
    linear = plot_sweep(stats[stats["series"] == "ADT"], "lam", metrics, defaults)
    try:
        assert linear.axes[0].get_xscale() == "linear"
        assert dashed_x(linear.axes[0]) == [1.0]  # adt's default
    finally:
        plt.close(linear)


def test_report_draws_sweeps_automatically_and_on_request(results, tmp_path):
    built = build_report(results, Options(out=tmp_path / "auto"))
    sweep = next(s for s in built.sections if s.title == "Parameter sweeps")
    assert [p.name for f in sweep.figures for p in f.paths] == ["sweep_adult_sex_lam.png"]
    assert (tmp_path / "auto" / "sweep_lam.csv").exists() and (tmp_path / "auto" / "sweep_lam.md").exists()
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(report_command, [str(results), "--out", str(out), "--sweep", "lam", "--sweep-metrics", "acc"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {"sweep_adult_sex_lam.png", "sweep_lam.csv", "sweep_lam.md"}
    assert "acc against lam" in res.output
    for args, message in [
        (["--sweep", "lamb"], "did you mean 'lam'"),
        (["--sweep", "epochs"], "fewer than two numeric values"),
        (["--sweep", "lam", "--sweep-metrics", "acx"], "did you mean 'acc'"),
        (["--sweep", ","], "give at least one name"),
    ]:
        res = runner.invoke(report_command, [str(results), "--out", str(tmp_path / "bad"), *args])
        assert isinstance(res.exception, FairbenchError), (args, res.output)
        assert message in str(res.exception) and "\n" not in str(res.exception)
