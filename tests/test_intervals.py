"""Bootstrap confidence intervals from kept predictions: agreement with fairlearn's bootstrap,
coverage of a known gap, the report's --ci tables and clipped Pareto error bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairbench.errors import FairbenchError
from fairbench.predictions import SplitPredictions
from fairbench.report import build_report
from fairbench.report.build import Options
from fairbench.report.figures import error_bars
from fairbench.report.intervals import percentile_interval, replicates

fairlearn = pytest.importorskip("fairlearn.metrics", reason="fairlearn is a dev dependency")


@pytest.mark.slow  # fairlearn's bootstrap takes ~60 ms per replicate: 12 s here
def test_intervals_agree_with_fairlearns_bootstrap() -> None:
    """fairlearn resamples whole rows, we resample within each group (fixed group sizes); for
    gaps between group rates the two give the same interval up to Monte Carlo error (about 0.005
    here with fairlearn's 200 replicates), so the endpoints must agree within 0.015, and the
    overall accuracy's within 0.01."""
    rng = np.random.default_rng(0)
    n = 2000
    g = (rng.random(n) < 0.35).astype(int)
    y = (rng.random(n) < 0.4 + 0.2 * g).astype(int)
    p = np.clip(0.3 * y + 0.25 * g + 0.5 * rng.random(n), 0, 1).astype(np.float32)
    yh = (p >= 0.5).astype(int)
    frame = fairlearn.MetricFrame(
        metrics={
            "dp": fairlearn.selection_rate,
            "eo": fairlearn.true_positive_rate,
            "acc": lambda a, b: float(np.mean(a == b)),
        },
        y_true=y,
        y_pred=yh,
        sensitive_features=g,
        n_boot=200,
        ci_quantiles=[0.025, 0.975],
        random_state=0,
    )
    low, high = frame.difference_ci()
    ours = replicates(SplitPredictions(np.arange(n), p, y, g), 1000, seed=0, names={"dp", "eo", "acc"})
    for name in ("dp", "eo"):
        interval = percentile_interval(ours[name].to_numpy(), 0.95)
        assert interval == pytest.approx((low[name], high[name]), abs=0.015), name
        assert interval[1] - interval[0] == pytest.approx(high[name] - low[name], rel=0.2), name
    overall_low, overall_high = frame.overall_ci
    accuracy = percentile_interval(ours["acc"].to_numpy(), 0.95)
    assert accuracy == pytest.approx((overall_low["acc"], overall_high["acc"]), abs=0.01)


def test_interval_covers_a_known_gap_at_the_nominal_rate() -> None:
    """200 draws of n = 300 rows with P(yh = 1 | g) = 0.5 vs 0.3 (true dp 0.2), 200 replicates
    each: the 95% interval covered the true gap in 191 of 200 draws (0.955) when written."""
    rng = np.random.default_rng(12345)
    draws, n, covered = 200, 300, 0
    for draw in range(draws):
        g = (rng.random(n) < 0.4).astype(int)
        scores = (rng.random(n) < np.where(g == 1, 0.5, 0.3)).astype(np.float32)
        part = SplitPredictions(np.arange(n), scores, rng.integers(0, 2, n), g)
        low, high = percentile_interval(replicates(part, 200, seed=draw, names={"dp"})["dp"].to_numpy(), 0.95)
        covered += low <= 0.2 <= high
    assert 0.90 <= covered / draws <= 0.99, covered


def test_replicates_are_seeded_and_stratified() -> None:
    rng = np.random.default_rng(1)
    part = SplitPredictions(
        np.arange(50), rng.random(50).astype(np.float32), rng.integers(0, 2, 50), (np.arange(50) < 5).astype(int)
    )
    a, b = replicates(part, 30, seed=3), replicates(part, 30, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(replicates(part, 30, seed=4))
    assert a["dp"].notna().all()  # the 5-row group is in every replicate: every gap is defined
    assert "consistency" not in a  # kNN is undefined on samples with repeated rows


def test_error_bars_never_leave_the_metric_range() -> None:
    values = pd.Series([0.01, 0.3])
    bars = error_bars(values, values - 0.05, values + 0.05, "dp")
    assert bars[0].tolist() == pytest.approx([0.01, 0.05]) and bars[1].tolist() == pytest.approx([0.05, 0.05])
    acc = pd.Series([0.99])
    assert error_bars(acc, acc - 0.05, acc + 0.05, "acc")[:, 0].tolist() == pytest.approx([0.05, 0.01])


@pytest.fixture
def finished(tiny_suite: Path, tmp_path: Path, fairbench) -> Path:
    result = fairbench("run", tiny_suite, "--results", tmp_path / "out")
    assert result.code == 0, result.err
    return tmp_path / "out"


def test_report_ci_tables_and_bars(finished: Path, tmp_path: Path, fairbench) -> None:
    opts = Options(parts={"tables", "pareto"}, out=tmp_path / "a", ci=0.9, bootstrap=60, ci_bars=True)
    build_report(finished, opts)
    summary = pd.read_csv(tmp_path / "a" / "summary.csv")
    tested = summary[summary["metric"] != "consistency"]
    assert tested[["ci_low", "ci_high"]].notna().all().all() and (tested["ci_low"] <= tested["ci_high"]).all()
    assert summary.loc[summary["metric"] == "consistency", "ci_low"].isna().all()
    assert "[90% bootstrap interval]" in (tmp_path / "a" / "summary.md").read_text()
    opts.out = tmp_path / "b"
    build_report(finished, opts)
    assert (tmp_path / "a" / "summary.md").read_text() == (tmp_path / "b" / "summary.md").read_text()
    cli = fairbench("report", finished, "--tables", "--ci", "0.95", "--bootstrap", "40", "--out", tmp_path / "c")
    assert cli.code == 0 and " [" in (tmp_path / "c" / "summary.md").read_text()
    bars = fairbench("report", finished, "--pareto", "--ci-bars", "--out", tmp_path / "d")
    assert bars.code == 2 and "--ci-bars needs --ci" in bars.err


def test_report_ci_needs_kept_predictions(finished: Path, tmp_path: Path) -> None:
    for kept in (finished / "predictions").iterdir():  # any job's, whichever point the report selects
        kept.unlink()
    with pytest.raises(FairbenchError, match="ran before fairbench kept predictions"):
        build_report(finished, Options(parts={"tables"}, out=tmp_path / "r", ci=0.95, bootstrap=20))
