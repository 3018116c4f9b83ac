"""`fairbench postprocess`: threshold variants of finished jobs, fitted on validation, applied to
test, stored as jobs with provenance; the plain per-group threshold search checked by hand."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairbench import metrics, predictions
from fairbench.execution.estimates import history_estimator
from fairbench.plan import expand
from fairbench.postprocess import group_thresholds
from fairbench.suite import load_suite

SUITE = """\
name: pp
seeds: [0]
budget: quick
experiments:
  - {dataset: synthetic, target: y, sensitive: [s, "x0 > 0"], options: {n: 1500, bias: 2.0}}
methods:
  - {method: erm, params: {epochs: 2}}
"""


def test_group_thresholds_give_every_group_the_best_common_rate() -> None:
    # Group 1's scores all sit below 0.5: one global threshold selects none of it.
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.45, 0.4, 0.3, 0.2])
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert group_thresholds(scores, y, groups, "dp") == {0: 0.8, 1: 0.4}  # rate 1/2: every row right
    # eo ranks each group's positives: a rate of 1 keeps every positive, the lowest positive's score
    y = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    assert group_thresholds(scores, y, groups, "eo") == {0: 0.2, 1: 0.4}


@pytest.fixture
def finished(tmp_path: Path, fairbench) -> Path:
    suite = tmp_path / "pp.yaml"
    suite.write_text(SUITE)
    result = fairbench("run", suite, "--results", tmp_path / "out")
    assert result.code == 0, result.err
    return tmp_path / "out"


def test_postprocess_adds_variants_stored_like_jobs(finished: Path, fairbench) -> None:
    result = fairbench("postprocess", finished, "--rule", "dp")
    assert result.code == 0, result.err
    assert "2 post-processed variants of 1 finished jobs" in result.out
    table = pd.read_parquet(finished / "results.parquet")
    assert set(table["label"]) == {"erm", "erm + ThresholdOpt (dp)", "erm + GroupThreshold (dp)"}
    with sqlite3.connect(finished / "fairbench.sqlite") as db:
        jobs = pd.read_sql_query("SELECT job_id, label, info, finished FROM jobs", db).set_index("label")
    source = jobs.loc["erm", "job_id"]
    for label in ("erm + ThresholdOpt (dp)", "erm + GroupThreshold (dp)"):
        info = json.loads(jobs.loc[label, "info"])
        assert info["postprocessed_from"] == source and info["rule"] == "dp" and info["fitted_on"] == "val"
        assert info["source_finished"] == jobs.loc["erm", "finished"]
    value = table[table["split"] == "test"].set_index(["label", "metric"])["value"]
    # the variants close the gap on test, which they never saw
    for label in ("erm + ThresholdOpt (dp)", "erm + GroupThreshold (dp)"):
        assert value[label, "dp_intersectional"] < value["erm", "dp_intersectional"] / 2
    # the plain search gives every intersection the same validation rate, up to one row per group
    kept = predictions.load(finished, jobs.loc["erm + GroupThreshold (dp)", "job_id"])
    val = kept["val"]
    assert set(np.unique(val.scores)) <= {0.0, 1.0}
    smallest = np.bincount(val.strata()).min()
    assert metrics.dp_intersectional(metrics.hard(val.scores), val.strata()) <= 1 / smallest + 1e-12
    # the variants train nothing: run time estimates keep to the source jobs
    with sqlite3.connect(finished / "fairbench.sqlite") as db:
        (trained,) = db.execute("SELECT duration FROM jobs WHERE label = 'erm'").fetchone()
    assert history_estimator(finished)(expand(load_suite(finished / "suite.yaml", ())[0])[0]) == trained
    # again: refitted in place, never duplicated; rescore reproduces the variants' rows
    assert fairbench("postprocess", finished, "--rule", "dp").code == 0
    assert fairbench("rescore", finished).code == 0
    again = pd.read_parquet(finished / "results.parquet")
    pd.testing.assert_frame_equal(again, table, check_exact=True)  # the same seeded decisions, the same ids


def test_postprocess_refuses_a_folder_without_results(tmp_path: Path, fairbench) -> None:
    result = fairbench("postprocess", tmp_path, "--rule", "eo")
    assert result.code == 2 and "is not a results folder" in result.err
