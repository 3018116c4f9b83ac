"""`fairbench run` end to end: the exported table (golden columns), determinism, resume after
kill -9, failing jobs, the process pool, and the small commands."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fairbench.methods.base import HParam, Method
from fairbench.registry import METHODS

GOLDEN = Path(__file__).resolve().parent / "golden" / "results_columns.txt"
VALUE_COLUMNS = ["job_id", "split", "metric", "value"]


def _table(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "results.parquet").sort_values(VALUE_COLUMNS[:3]).reset_index(drop=True)


def test_run_exports_golden_columns_and_resumes_for_free(tiny_suite: Path, tmp_path: Path, fairbench, golden) -> None:
    out = tmp_path / "out"
    result = fairbench("run", tiny_suite, "--results", out)
    assert result.code == 0, result.err
    table = pd.read_parquet(out / "results.parquet")
    csv = pd.read_csv(out / "results.csv")
    columns = "\n".join(table.columns) + "\n"
    golden(GOLDEN, columns)
    assert list(csv.columns) == list(table.columns) and len(csv) == len(table)
    assert table["job_id"].nunique() == 6 and set(table["split"]) == {"val", "test"}
    assert {
        "acc",
        "dp",
        "eo",
        "eo_joint",
        "eodds_sum",
        "eodds_max",
        "discrimination",
        "discrimination_score",
        "consistency",
        "delta",
        "dp_perfect",
        "acc_worst_group",
        "ece",
        "ece_group0",
        "ece_group1",
        "ece_gap",
    } == set(table["metric"])
    assert table.groupby(["job_id", "split", "metric"]).size().max() == 1
    assert (out / "logs").is_dir() and len(list((out / "logs").glob("*.log"))) == 6
    again = fairbench("run", tiny_suite, "--results", out)
    assert again.code == 0 and "6 already done, 0 to run" in again.err
    dry = fairbench("run", tiny_suite, "--results", out, "--dry-run")
    assert dry.code == 0 and "6 jobs" in dry.out and "(6 already done)" in dry.out


def test_dry_run_names_missing_data_and_estimates_time(
    tiny_suite: Path, tmp_path: Path, fairbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fairbench.store import load_jobs

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("FAIRBENCH_OFFLINE")  # a dry run must not download even when it could
    nodata, out = tmp_path / "nodata", tmp_path / "out"
    nodata.mkdir()
    experiments = (
        "experiments=[{dataset: synthetic, target: y, sensitive: s, options: {n: 600}}, "
        "{dataset: adult, target: income, sensitive: \"sex == 'Male'\"}]"
    )
    dry = fairbench("run", tiny_suite, "--results", out, "--data-dir", nodata, "--dry-run", "--set", experiments)
    assert dry.code == 0, dry.err
    missing = [line for line in dry.out.splitlines() if line.startswith("missing data")]
    assert len(missing) == 1, dry.out
    assert missing[0].startswith("missing data: adult (uci_adult/adult.data, uci_adult/adult.test)")
    assert missing[0].endswith("to get it: fairbench data fetch adult")
    assert not any(nodata.iterdir()) and not out.exists()  # nothing downloaded, nothing written
    assert "no estimate for adt, erm: no finished jobs of it in the results folder" in " ".join(dry.out.split())

    assert fairbench("run", tiny_suite, "--results", out).code == 0
    jobs = load_jobs(out)
    median = jobs.groupby("method")["duration"].median()
    dry = fairbench("run", tiny_suite, "--results", out, "--dry-run", "--set", "seeds=[0, 1, 2]")
    assert dry.code == 0 and "missing data" not in dry.out, dry.out
    rows = {line.split("│")[2].strip(): line for line in dry.out.splitlines() if line.count("│") > 6}
    assert rows["erm"].rstrip(" │").endswith(f"{median['erm']:.1f} s")  # seed 2: one erm job
    assert rows["adt"].rstrip(" │").endswith(f"{2 * median['adt']:.1f} s")  # and two adt jobs
    assert f"about {median['erm'] + 2 * median['adt']:.1f} s of job time to run" in " ".join(dry.out.split())
    # no finished job on this dataset: the method's median on the others
    images = "experiments=[{dataset: synthetic_images, target: Attractive, sensitive: Male}]"
    dry = fairbench("run", tiny_suite, "--results", out, "--dry-run", "--set", images)
    rows = {line.split("│")[2].strip(): line for line in dry.out.splitlines() if line.count("│") > 6}
    assert rows["erm"].rstrip(" │").endswith(f"{2 * median['erm']:.1f} s"), dry.out


def test_same_seed_same_numbers(tiny_suite: Path, tmp_path: Path, fairbench) -> None:
    for name in ("a", "b"):
        assert fairbench("run", tiny_suite, "--results", tmp_path / name, "--set", "seeds=[4]").code == 0
    a, b = _table(tmp_path / "a"), _table(tmp_path / "b")
    pd.testing.assert_frame_equal(a[VALUE_COLUMNS], b[VALUE_COLUMNS])
    other = fairbench("run", tiny_suite, "--results", tmp_path / "c", "--set", "seeds=[5]")
    assert other.code == 0 and not _table(tmp_path / "c")["value"].equals(a["value"])


SLOW_SUITE = """\
name: killme
seeds: [0, 1, 2, 3, 4, 5]
budget: quick
experiments:
  - {dataset: synthetic, target: y, sensitive: s, options: {n: 3000}}
methods:
  - method: erm
    params: {epochs: 6}
"""


def _done(folder: Path) -> int:
    try:
        with sqlite3.connect(folder / "fairbench.sqlite", timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_mid_suite_loses_nothing_and_resume_matches(tmp_path: Path) -> None:
    suite = tmp_path / "kill.yaml"
    suite.write_text(SLOW_SUITE)
    env = {**os.environ, "FAIRBENCH_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "fairbench", "run", str(suite), "--threads", "1", "--results"]
    runner = subprocess.Popen(
        [*command, str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while _done(tmp_path / "killed") < 2 and time.time() < deadline and runner.poll() is None:
        time.sleep(0.05)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    finished = _done(tmp_path / "killed")
    assert 2 <= finished < 6, "the runner should have been killed mid-suite"
    resumed = subprocess.run([*command, str(tmp_path / "killed")], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0 and f"{finished} already done, {6 - finished} to run" in resumed.stderr
    whole = subprocess.run([*command, str(tmp_path / "whole")], env=env, capture_output=True, text=True)
    assert whole.returncode == 0
    pd.testing.assert_frame_equal(_table(tmp_path / "killed"), _table(tmp_path / "whole"))


class Boom(Method):
    name = "boom"
    description = "fails on purpose (tests)"
    hparams = {"when": HParam("always", "when to fail")}

    def run(self, data, ctx):
        raise RuntimeError("boom on purpose")


def test_failed_job_is_recorded_and_others_finish(tiny_suite: Path, tmp_path: Path, fairbench) -> None:
    METHODS.register("boom", Boom)
    try:
        result = fairbench(
            "run",
            tiny_suite,
            "--results",
            tmp_path / "out",
            "--set",
            "methods=[{method: erm, params: {epochs: 1}}, {method: boom}]",
        )
    finally:
        METHODS._targets.pop("boom"), METHODS._loaded.pop("boom")
    assert result.code == 1
    assert "2 of 4 jobs failed" in result.err and "RuntimeError: boom on purpose" in result.err
    with sqlite3.connect(tmp_path / "out" / "fairbench.sqlite") as db:
        rows = db.execute("SELECT status, error, log FROM jobs ORDER BY status").fetchall()
    assert [r[0] for r in rows] == ["done", "done", "failed", "failed"]
    assert "Traceback" in Path(rows[-1][2]).read_text()
    assert set(pd.read_csv(tmp_path / "out" / "results.csv")["method"]) == {"erm"}


def test_process_pool_matches_in_process(tiny_suite: Path, tmp_path: Path, fairbench) -> None:
    assert fairbench("run", tiny_suite, "--results", tmp_path / "one", "--threads", "1").code == 0
    pooled = fairbench("run", tiny_suite, "--results", tmp_path / "two", "--workers", "2", "--threads", "1")
    assert pooled.code == 0, pooled.err
    pd.testing.assert_frame_equal(_table(tmp_path / "one")[VALUE_COLUMNS], _table(tmp_path / "two")[VALUE_COLUMNS])
    with sqlite3.connect(tmp_path / "two" / "fairbench.sqlite") as db:
        provenance = db.execute("SELECT device, versions, duration FROM jobs").fetchall()
    assert all(row[0] == "cpu" and '"torch"' in row[1] and row[2] > 0 for row in provenance)


def test_ls_describe_and_version(fairbench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    methods = fairbench("ls", "methods")
    assert methods.code == 0 and "grad_pred" in methods.out and "lam=100.0" in methods.out
    assert "synthetic" in fairbench("ls", "datasets").out
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    assert "quickstart" in fairbench("ls", "suites").out
    described = fairbench(
        "data",
        "describe",
        "synthetic",
        "--target",
        "y",
        "--sensitive",
        "s",
        "--json",
        "--split",
        "test",
        "--option",
        "n=1000",
    )
    import json

    rows = json.loads(described.out)
    assert described.code == 0 and rows[0]["split"] == "test" and rows[0]["n"] == 200
    assert fairbench("--version").out.strip().startswith("fairbench, version")
    bad = fairbench("data", "describe", "synthetic", "--target", "y", "--sensitive", "q > 1")
    assert bad.code == 2 and "unknown column 'q'" in bad.err
