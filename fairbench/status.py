"""`fairbench status RESULTS`: where a results folder's run stands, and its log index.

Counts come from the store (done, failed) and the suite the run saved (its jobs, so those not
recorded yet are pending); a pending job whose log file exists has started: it is running
while a process holds the folder's lock, else it was interrupted.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from filelock import FileLock, Timeout

from fairbench.errors import FairbenchError
from fairbench.execution.progress import describe_job, grid_keys
from fairbench.plan import Job, expand
from fairbench.store import LOCK_FILE, STORE_FILE, load_jobs
from fairbench.suite import Suite

LOG_INDEX = "index.tsv"
INDEX_COLUMNS = ("label", "point", "seed", "experiment", "job_id", "log")


def grid_point(job: Job, grid: list[str]) -> str:
    """`lam=10 eta1=0.5`, or `-` for a method without a grid."""
    return describe_job(job, grid).removeprefix(job.label).split(" seed=")[0].strip() or "-"


def write_log_index(results: Path, jobs: list[Job]) -> Path:
    """logs/index.tsv: label, grid point, seed, experiment -> job id and log file, one row per
    job of the suite (the logs are named by the job's hash)."""
    grids = grid_keys([[job] for job in jobs])
    folder = results / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOG_INDEX
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(INDEX_COLUMNS)
        for job in jobs:
            point = grid_point(job, grids.get((job.experiment, job.label), []))
            writer.writerow((job.label, point, job.seed, job.experiment, job.job_id, f"{job.job_id}.log"))
    return path


def lock_holder(results: Path) -> str | None:
    """What holds the folder's lock (pid and host, as the run wrote it), or None when free."""
    path = results / LOCK_FILE
    if not path.exists():
        return None
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return path.read_text().strip() or "a process (unknown)"
    lock.release()
    return None


@dataclass
class Status:
    """A results folder's state: one row per job (label, method, point, seed, state, duration,
    error, git revision) and who holds its lock."""

    jobs: pd.DataFrame
    holder: str | None

    def counts(self) -> pd.DataFrame:
        """Jobs per label and state, with the median and total duration of the finished ones."""
        table = self.jobs.pivot_table(
            index=["label", "method"], columns="state", values="job_id", aggfunc="count", fill_value=0
        )
        states = [
            state
            for state in ("done", "failed", "running", "interrupted", "pending")
            if state in table or state in ("done", "failed", "pending")
        ]
        table = table.reindex(columns=states, fill_value=0)
        done = self.jobs[self.jobs["state"] == "done"].groupby(["label", "method"])["duration"]
        table["median (s)"] = done.median()
        table["total (s)"] = done.sum()
        return table.reset_index()


def folder_status(results: Path) -> Status:
    """The state of every job of the run saved in `results` (its suite.yaml), and of every job
    the store holds beyond those."""
    if not (results / STORE_FILE).exists():
        raise FairbenchError(f"{results} is not a results folder ({STORE_FILE} not found)")
    recorded = load_jobs(results).set_index("job_id")
    suite_file = results / "suite.yaml"
    planned = expand(Suite.model_validate(yaml.safe_load(suite_file.read_text()))) if suite_file.exists() else []
    holder = lock_holder(results)
    grids = grid_keys([[job] for job in planned])
    rows = []
    for job in planned:
        row = {
            "job_id": job.job_id,
            "label": job.label,
            "method": job.method,
            "seed": job.seed,
            "experiment": job.experiment,
            "point": grid_point(job, grids.get((job.experiment, job.label), [])),
            "state": "pending",
            "duration": None,
            "error": "",
            "git_rev": "",
        }
        if job.job_id in recorded.index:
            stored = recorded.loc[job.job_id]
            row.update(
                state=stored["status"],
                duration=stored["duration"],
                error=stored["error"] or "",
                git_rev=stored["git_rev"] or "unknown",
            )
        elif (results / "logs" / f"{job.job_id}.log").exists():
            row["state"] = "running" if holder else "interrupted"
        rows.append(row)
    known = {row["job_id"] for row in rows}
    for job_id, stored in recorded.iterrows():
        if job_id not in known:  # from an earlier version of the suite
            rows.append(
                {
                    "job_id": job_id,
                    "label": stored["label"],
                    "method": stored["method"],
                    "seed": stored["seed"],
                    "experiment": stored["experiment"],
                    "point": "(not in suite.yaml)",
                    "state": stored["status"],
                    "duration": stored["duration"],
                    "error": stored["error"] or "",
                    "git_rev": stored["git_rev"] or "unknown",
                }
            )
    return Status(pd.DataFrame(rows), holder)
