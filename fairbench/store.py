"""The results store: one SQLite file per results folder, and the tidy export.

SQLite gives crash safety (one transaction per finished job: kill -9 loses nothing finished)
and lets reports query. The tidy table has one row per job x split x metric, every
hyperparameter its own `param_<name>` column and every metric tag its own column.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from fairbench import STORE_FORMAT, __version__
from fairbench.errors import FairbenchError

STORE_FILE = "fairbench.sqlite"
LOCK_FILE = "fairbench.lock"
JOB_COLUMNS = ["suite", "experiment", "dataset", "protocol", "target", "sensitive", "method", "label", "budget", "seed",
               "split_seed"]  # fmt: skip
TABLE_COLUMNS = [*JOB_COLUMNS, "split", "metric", "value", "job_id"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, suite TEXT, experiment TEXT, dataset TEXT, protocol TEXT,
    target TEXT, sensitive TEXT, method TEXT, label TEXT, budget TEXT, seed INTEGER, split_seed INTEGER,
    params TEXT, options TEXT, status TEXT, error TEXT, info TEXT, started REAL, finished REAL,
    duration REAL, device TEXT, host TEXT, versions TEXT, git_rev TEXT, log TEXT,
    last_error TEXT, last_attempt REAL, bias TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    job_id TEXT, split TEXT, metric TEXT, value REAL, tags TEXT,
    FOREIGN KEY (job_id) REFERENCES jobs (job_id)
);
CREATE INDEX IF NOT EXISTS metrics_job ON metrics (job_id);
"""


def check_folder(folder: Path) -> None:
    """Refuse a results folder whose store is damaged or written in another store format (before
    anything is written). A store whose creation was cut short (no tables, or no format and no
    jobs) is taken as new."""
    path = Path(folder) / STORE_FILE
    if not path.exists():
        return
    try:
        with closing(sqlite3.connect(path)) as db:
            report = [line for row in db.execute("PRAGMA quick_check") for line in row[0].splitlines()]
            if report != ["ok"]:
                problems = [line for line in report if not line.startswith("***")]
                raise FairbenchError(damaged(path, "; ".join(problems[:2])))
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() if "meta" in tables else None
            empty = "jobs" not in tables or db.execute("SELECT 1 FROM jobs LIMIT 1").fetchone() is None
    except sqlite3.DatabaseError as error:
        raise FairbenchError(damaged(path, str(error))) from None
    if row is None and empty:
        return
    if row is None or row[0] != str(STORE_FORMAT):
        found = "an unknown format" if row is None else f"store format {row[0]}"
        raise FairbenchError(
            f"{path} was written by {found}; this fairbench {__version__} writes format {STORE_FORMAT}: "
            f"choose another --results folder or move that one away"
        )


def damaged(path: Path, problem: str) -> str:
    """The one line that says a store is damaged and what to do."""
    return (
        f"{path} is damaged (sqlite integrity check: {problem}); restore it from a copy, or move the folder "
        f"away and rerun the suite into a fresh one"
    )


def disk_full(error: BaseException, folder: Path) -> bool:
    """Whether `error` comes of a full disk (or quota) under `folder`: the OS says so, SQLite says
    so, or SQLite reports an I/O error (its shared-memory file cannot grow) on a disk with less
    than 1 MB free."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(error, sqlite3.OperationalError):
        return False
    if "disk is full" in str(error):
        return True
    return "disk I/O error" in str(error) and shutil.disk_usage(folder).free < 1 << 20


def lock_folder(folder: Path) -> FileLock:
    """Hold a results folder for one `fairbench run`, or exit at once: two runs on one folder
    would run the same jobs twice. The OS drops the lock when its holder dies (kill -9 too)."""
    path = Path(folder) / LOCK_FILE
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = path.read_text().strip() if path.exists() else ""
        raise FairbenchError(
            f"{folder} is in use by another fairbench run ({holder or 'process unknown'}); "
            f"wait for it to finish or choose another --results folder"
        ) from None
    path.write_text(f"pid {os.getpid()} on {platform.node()}")
    return lock


class Store:
    """Read and write one results folder's store."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        check_folder(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / STORE_FILE
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        # One transaction: a store is created whole or not at all (a full disk mid-way).
        self.db.executescript(
            f"BEGIN; {_SCHEMA} INSERT OR IGNORE INTO meta VALUES ('format', '{STORE_FORMAT}'); "
            f"INSERT OR IGNORE INTO meta VALUES ('created_by', '{__version__}'); COMMIT;"
        )

    def close(self) -> None:
        self.db.close()

    def done_ids(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT job_id FROM jobs WHERE status = 'done'")}

    def done_finish_times(self) -> dict[str, float]:
        """Each done job's finish time (its predictions file records the same)."""
        return dict(self.db.execute("SELECT job_id, finished FROM jobs WHERE status = 'done'").fetchall())

    def done_revisions(self, job_ids: Iterable[str]) -> Counter[str]:
        """How many of these finished jobs each git revision produced."""
        ids = set(job_ids)
        rows = self.db.execute("SELECT job_id, git_rev FROM jobs WHERE status = 'done'")
        return Counter(rev or "" for job_id, rev in rows if job_id in ids)

    def record(self, job: dict[str, Any], metric_rows: Iterable[tuple[str, str, float, dict]]) -> bool:
        """Write one finished (or failed) job and its metric rows in a single transaction.

        A failed attempt at a job that is already done (a `--force` rerun) keeps the done row and
        its metrics, noting the failure in `last_error` and `last_attempt`; returns True then.
        """
        record = dict(job)
        for key in ("params", "options", "info", "versions"):
            record[key] = json.dumps(record.get(key, {}), sort_keys=True, default=str)
        record["last_error"], record["last_attempt"] = record.get("error"), record.get("finished")
        columns = list(record)
        with self.db:
            if record["status"] != "done" and self._done(job["job_id"]):
                self.db.execute(
                    "UPDATE jobs SET last_error = ?, last_attempt = ? WHERE job_id = ?",
                    (record["last_error"], record["last_attempt"], job["job_id"]),
                )
                return True
            self.db.execute("DELETE FROM metrics WHERE job_id = ?", (job["job_id"],))
            self.db.execute(
                f"INSERT OR REPLACE INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [record[c] for c in columns],
            )
            self.db.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, ?)",
                [(job["job_id"], s, m, float(v), json.dumps(t, sort_keys=True)) for s, m, v, t in metric_rows],
            )
        return False

    def _done(self, job_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM jobs WHERE job_id = ? AND status = 'done'", (job_id,)).fetchone()
        return row is not None

    def replace_untagged(self, updates: dict[str, list[tuple[str, str, float, dict]]], names: set[str]) -> None:
        """Replace the framework rows of metrics `names` of each job in `updates` (untagged, or tagged
        only with the sensitive attribute they are computed for) by its new rows, in one transaction
        (`fairbench rescore`); rows a method reported with its own tags stay."""
        marks = ", ".join("?" * len(names))
        with self.db:
            for job_id, rows in updates.items():
                self.db.execute(
                    f"DELETE FROM metrics WHERE job_id = ? AND (tags = '{{}}' OR tags LIKE '{{\"attribute\": %') "
                    f"AND metric IN ({marks})",
                    (job_id, *sorted(names)),
                )
                self.db.executemany(
                    "INSERT INTO metrics VALUES (?, ?, ?, ?, ?)",
                    [(job_id, s, m, float(v), json.dumps(t, sort_keys=True)) for s, m, v, t in rows],
                )

    def export(self) -> pd.DataFrame:
        """Write results.parquet and results.csv next to the store; return the table."""
        table = tidy_table(self.db)
        for name, write in (("results.parquet", table.to_parquet), ("results.csv", table.to_csv)):
            staging = self.folder / (name + ".tmp")
            try:
                write(staging, index=False)
                staging.replace(self.folder / name)
            except BaseException:  # a full disk: the last complete table stays, no half file beside it
                staging.unlink(missing_ok=True)
                raise
        return table


def _json_cell(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def tidy_table(db: sqlite3.Connection) -> pd.DataFrame:
    """The long table of finished jobs: job columns, split, metric, value, job_id, params, tags."""
    jobs = pd.read_sql_query(f"SELECT job_id, {', '.join(JOB_COLUMNS)}, params FROM jobs WHERE status = 'done'", db)
    rows = pd.read_sql_query("SELECT job_id, split, metric, value, tags FROM metrics", db)
    table = rows.merge(jobs, on="job_id", how="inner")
    params = pd.DataFrame(
        [{f"param_{k}": _json_cell(v) for k, v in json.loads(p).items()} for p in table["params"]],
        index=table.index,
    )
    tags = pd.DataFrame([json.loads(t) for t in table["tags"]], index=table.index)
    table = pd.concat([table[TABLE_COLUMNS], params.reindex(sorted(params.columns), axis=1), tags], axis=1)
    _one_type_per_column(table)
    return table.sort_values(["experiment", "label", "job_id", "split", "metric"], kind="stable").reset_index(drop=True)


def _one_type_per_column(table: pd.DataFrame) -> None:
    """Write as text a parameter or tag column whose values differ in type: a name shared by
    methods may be a number for one and a word for another (VFAE's alpha 1.0, LFR's 'group'),
    and a parquet column holds one type."""
    for column in table.columns[len(TABLE_COLUMNS) :]:
        kinds = {
            "bool" if isinstance(v, bool | np.bool_) else "number" if isinstance(v, int | float | np.number) else "text"
            for v in table[column].dropna()
        }
        if len(kinds) > 1:
            table[column] = table[column].map(lambda v: v if pd.isna(v) else str(v))


def load_results(folder: Path) -> pd.DataFrame:
    """The tidy table of a results folder (read from the store, so it is always current)."""
    path = Path(folder) / STORE_FILE
    if not path.exists():
        raise FairbenchError(f"{folder} holds no results ({STORE_FILE} not found); run 'fairbench run' first")
    check_folder(Path(folder))
    with closing(sqlite3.connect(path)) as db:
        return tidy_table(db)


def load_jobs(folder: Path) -> pd.DataFrame:
    """One row per job with its provenance (status, timings, device, versions, git revision)."""
    check_folder(Path(folder))
    with closing(sqlite3.connect(Path(folder) / STORE_FILE)) as db:
        return pd.read_sql_query("SELECT * FROM jobs ORDER BY experiment, label, job_id", db)
