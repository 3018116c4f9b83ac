"""Kept predictions and `fairbench rescore`: every finished job's per-row outputs are kept beside the
store, and rescoring them reproduces the recorded table bit for bit with no training."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairbench import predictions
from fairbench.methods.base import HParam, Method, MetricRow, Outcome
from fairbench.registry import METHODS


class Leaky(Method):
    """Scores from the sensitive group, and a tagged method-reported row (as DVGE's sens_acc)."""

    name = "leaky"
    description = "scores from the group (tests)"
    hparams = {"w": HParam(0.3, "weight of the group")}
    budgets = {"paper": {}, "quick": {}}

    def run(self, data, ctx):
        rng = np.random.default_rng(ctx.seed)
        scores = {s: (self.params["w"] * data.g[r] + 0.7 * rng.random(len(r))) for s, r in data.splits.items()}
        scores = {s: v for s, v in scores.items() if s != "train"}
        return Outcome(scores, [MetricRow("test", "sens_acc", 0.625, {"sens_classifier": "fixed"})])


@pytest.fixture
def finished(tiny_suite: Path, tmp_path: Path, fairbench) -> Path:
    METHODS.register("leaky", Leaky)
    try:
        result = fairbench(
            "run",
            tiny_suite,
            "--results",
            tmp_path / "out",
            "--set",
            "methods=[{method: erm, params: {epochs: 1}}, {method: leaky}]",
        )
    finally:
        METHODS._targets.pop("leaky"), METHODS._loaded.pop("leaky")
    assert result.code == 0, result.err
    return tmp_path / "out"


def _store_rows(folder: Path) -> list[tuple]:
    with sqlite3.connect(folder / "fairbench.sqlite") as db:
        return db.execute("SELECT job_id, split, metric, value, tags FROM metrics ORDER BY 1, 2, 3, 5").fetchall()


def test_predictions_kept_per_job_and_rescore_reproduces_the_table(finished: Path, fairbench) -> None:
    table = pd.read_parquet(finished / "results.parquet")
    stored = _store_rows(finished)
    files = sorted(predictions.path(finished, j).name for j in table["job_id"].unique())
    assert files == sorted(p.name for p in (finished / "predictions").iterdir())  # no tmp files left
    with sqlite3.connect(finished / "fairbench.sqlite") as db:
        job_id, finish = db.execute("SELECT job_id, finished FROM jobs WHERE method = 'erm' LIMIT 1").fetchone()
        # Rescoring must recompute, not reread: spoil every value first.
        db.execute("UPDATE metrics SET value = -1 WHERE tags = '{}'")
    kept = predictions.load(finished, job_id, finish)
    assert set(kept) == {"val", "test"} and kept["test"].scores.dtype == np.float32
    assert len(kept["test"].rows) == len(kept["test"].y) == 120  # 20% of n=600
    result = fairbench("rescore", finished)
    assert result.code == 0, result.err
    assert "rescored 4 finished jobs" in result.out
    assert _store_rows(finished) == stored  # bit for bit, the tagged sens_acc rows included
    pd.testing.assert_frame_equal(pd.read_parquet(finished / "results.parquet"), table, check_exact=True)
    assert (table["metric"] == "sens_acc").sum() == 2


def test_rescore_refuses_missing_stale_or_unreadable_inputs(finished: Path, fairbench) -> None:
    before = _store_rows(finished)
    with sqlite3.connect(finished / "fairbench.sqlite") as db:
        job_id = db.execute("SELECT job_id FROM jobs LIMIT 1").fetchone()[0]
        db.execute("UPDATE jobs SET finished = finished + 1 WHERE job_id = ?", (job_id,))
    stale = fairbench("rescore", finished)
    assert stale.code == 2 and "belongs to another run of job" in stale.err and "Traceback" not in stale.err
    predictions.path(finished, job_id).unlink()
    missing = fairbench("rescore", finished)
    assert missing.code == 2 and f"job {job_id} ran before fairbench kept predictions" in missing.err
    assert _store_rows(finished) == before  # nothing half-written
    assert "not a results folder" in fairbench("rescore", finished / "nope").err


def test_rescore_refuses_a_dataset_that_changed(finished: Path, fairbench) -> None:
    with sqlite3.connect(finished / "fairbench.sqlite") as db:
        job_id, finish = db.execute("SELECT job_id, finished FROM jobs LIMIT 1").fetchone()
    kept = predictions.load(finished, job_id, finish)
    kept["test"].y = 1 - kept["test"].y
    predictions.save(finished, job_id, kept, finish)
    result = fairbench("rescore", finished)
    assert result.code == 2 and f"no longer matches job {job_id}'s kept labels (test split)" in result.err


def test_rescore_says_when_the_dataset_cannot_be_read(finished: Path, fairbench, tmp_path: Path) -> None:
    with sqlite3.connect(finished / "fairbench.sqlite") as db:
        db.execute("UPDATE jobs SET dataset = 'german'")
    result = fairbench("rescore", finished, "--data-dir", tmp_path / "empty")
    assert result.code == 2 and "rescore needs dataset 'german'" in result.err
    assert len(result.err.strip().splitlines()) == 1


class Flaky(Leaky):
    name = "flaky"

    def run(self, data, ctx):
        if ctx.seed == 1:
            raise RuntimeError("fails on seed 1")
        return super().run(data, ctx)


def test_only_finished_jobs_keep_predictions(tiny_suite: Path, tmp_path: Path, fairbench) -> None:
    METHODS.register("flaky", Flaky)
    try:
        result = fairbench("run", tiny_suite, "--results", tmp_path / "out", "--set", "methods=[{method: flaky}]")
    finally:
        METHODS._targets.pop("flaky"), METHODS._loaded.pop("flaky")
    assert result.code == 1
    with sqlite3.connect(tmp_path / "out" / "fairbench.sqlite") as db:
        status = dict(db.execute("SELECT job_id, status FROM jobs").fetchall())
    kept = {p.stem for p in (tmp_path / "out" / "predictions").iterdir()}
    assert sorted(status.values()) == ["done", "failed"] and kept == {j for j, s in status.items() if s == "done"}


class Once(Leaky):
    """Succeeds on its first run in this process, fails on every later one."""

    name = "once"
    runs = 0

    def run(self, data, ctx):
        Once.runs += 1
        if Once.runs > 1:
            raise RuntimeError("the rerun fails")
        return super().run(data, ctx)


def test_a_failed_forced_rerun_keeps_the_good_predictions(tiny_suite: Path, tmp_path: Path, fairbench) -> None:
    METHODS.register("once", Once)
    args = ("run", tiny_suite, "--results", tmp_path / "out", "--set", "methods=[{method: once}]", "--set", "seeds=[0]")
    try:
        assert fairbench(*args).code == 0
        (kept,) = (tmp_path / "out" / "predictions").iterdir()
        good = kept.read_bytes()
        assert fairbench(*args, "--force").code == 1
    finally:
        METHODS._targets.pop("once"), METHODS._loaded.pop("once")
    assert [p.read_bytes() for p in (tmp_path / "out" / "predictions").iterdir()] == [good]
