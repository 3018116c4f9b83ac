"""`fairbench status RESULTS` and the log index: where a run stands, read from its folder."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import yaml

from fairbench.plan import expand
from fairbench.store import Store, lock_folder
from fairbench.suite import Suite


def test_status_counts_states_names_failures_the_lock_holder_and_revisions(
    tiny_suite: Path, tmp_path: Path, fairbench
) -> None:
    results = tmp_path / "out"
    assert fairbench("run", tiny_suite, "--results", results, "--set", "seeds=[0]").code == 0
    index = list(csv.DictReader((results / "logs" / "index.tsv").open(), delimiter="\t"))
    assert [(row["label"], row["point"], row["seed"]) for row in index] == [
        ("erm", "-", "0"),
        ("ADT", "lam=1", "0"),
        ("ADT", "lam=10", "0"),
    ]
    assert all((results / "logs" / row["log"]).exists() for row in index)
    # as if a run of both seeds had started: it saved its suite, failed one job, began another
    suite = yaml.safe_load((results / "suite.yaml").read_text())
    suite["seeds"] = [0, 1]
    (results / "suite.yaml").write_text(yaml.safe_dump(suite))
    erm1, adt1 = [job for job in expand(Suite.model_validate(suite)) if job.seed == 1][:2]
    store = Store(results)
    store.record(
        {
            **asdict(erm1),
            "status": "failed",
            "error": "ValueError: boom\nTraceback ...",
            "duration": 0.0,
            "git_rev": "abc1234",
        },
        [],
    )
    store.close()
    (results / "logs" / f"{adt1.job_id}.log").write_text("started\n")

    shown = fairbench("status", results)
    assert shown.code == 0, shown.err
    assert f"{results}: 6 jobs: 3 done, 1 failed, 1 interrupted, 1 pending" in shown.out
    assert "lock: free" in shown.out
    assert f"erm - seed=1 {erm1.experiment}: ValueError: boom (logs/{erm1.job_id}.log)" in shown.out
    assert "abc1234 (1 jobs)" in shown.out
    lock = lock_folder(results)
    try:
        held = fairbench("status", results).out
    finally:
        lock.release()
    assert "1 running" in held and "lock: held by pid" in held and "running ADT lam=1 seed=1" in held


def test_status_of_a_folder_without_results_is_a_one_line_error(tmp_path: Path, fairbench) -> None:
    result = fairbench("status", tmp_path)
    assert result.code == 2 and "is not a results folder" in result.err
