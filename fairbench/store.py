"""The results store: one SQLite file per results folder, and the tidy export.

SQLite gives crash safety (one transaction per finished job: kill -9 loses nothing finished)
and lets reports query. The tidy table has one row per job x split x metric, every
hyperparameter its own `param_<name>` column and every metric tag its own column.

Besides the jobs, each run records what the report needs to know about its methods and suite
(`ReportSpecs`: the tables they declare, each method's defaults, the suite's report settings), so
that `fairbench report` reads the results folder alone, on a machine without the plugin that
made it too.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from fairbench import STORE_FORMAT, __version__
from fairbench.errors import FairbenchError
from fairbench.table_spec import ReportTable, table_from_mapping, table_to_mapping

STORE_FILE = "fairbench.sqlite"
LOCK_FILE = "fairbench.lock"
JOB_COLUMNS = [
    "suite",
    "experiment",
    "dataset",
    "protocol",
    "target",
    "sensitive",
    "method",
    "label",
    "budget",
    "seed",
    "split_seed",
    "precision",
]
# Columns added to format 3 after it was released, with the value an older store's jobs have.
_ADDED_COLUMNS = {"precision": "fp32"}
TABLE_COLUMNS = [*JOB_COLUMNS, "split", "metric", "value", "job_id"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, suite TEXT, experiment TEXT, dataset TEXT, protocol TEXT,
    target TEXT, sensitive TEXT, method TEXT, label TEXT, budget TEXT, seed INTEGER, split_seed INTEGER,
    params TEXT, options TEXT, status TEXT, error TEXT, info TEXT, started REAL, finished REAL,
    duration REAL, device TEXT, host TEXT, versions TEXT, git_rev TEXT, log TEXT,
    last_error TEXT, last_attempt REAL, bias TEXT, precision TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    job_id TEXT, split TEXT, metric TEXT, value REAL, tags TEXT,
    FOREIGN KEY (job_id) REFERENCES jobs (job_id)
);
CREATE INDEX IF NOT EXISTS metrics_job ON metrics (job_id);
CREATE TABLE IF NOT EXISTS methods (
    method TEXT, budget TEXT, defaults TEXT, report_tables TEXT, PRIMARY KEY (method, budget)
);
"""
# Added to format 3 without a bump (a bump would change every job id, see plan.Job.identity): a
# store written before has no `methods` table and no `suite_report` meta key until the next run.
SUITE_REPORT_KEY = "suite_report"


@dataclass(frozen=True)
class ReportSpecs:
    """What a run records for the report. `method_tables`: the tables each method declares;
    `defaults`: each (method, budget)'s resolved default parameters (every method of `defaults`
    has its entry in `method_tables`); the suite's `labels` in its order and its `report:`
    settings (`pairs`, `sweep`, `sweep_metrics`, `tables`)."""

    method_tables: dict[str, tuple[ReportTable, ...]] = field(default_factory=dict)
    defaults: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()
    sweep: tuple[str, ...] = ()
    sweep_metrics: tuple[str, ...] = ()
    tables: tuple[ReportTable, ...] = ()

    def unrecorded(self, methods: Iterable[str]) -> list[str]:
        """The `methods` (of the results) whose tables and defaults the store does not hold."""
        return sorted(set(methods) - set(self.method_tables))


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
        with self.db:
            for column, value in _ADDED_COLUMNS.items():
                if column not in _columns(self.db, "jobs"):
                    self.db.execute(f"ALTER TABLE jobs ADD COLUMN {column} TEXT DEFAULT '{value}'")

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

    def record_report_specs(self, specs: ReportSpecs) -> None:
        """Record a run's methods and suite settings for the report (replacing what an earlier run
        recorded for the same method and budget, and the earlier suite's settings)."""
        tables = {
            method: json.dumps([table_to_mapping(table) for table in declared])
            for method, declared in specs.method_tables.items()
        }
        suite = {
            "labels": list(specs.labels),
            "pairs": [list(pair) for pair in specs.pairs],
            "sweep": list(specs.sweep),
            "sweep_metrics": list(specs.sweep_metrics),
            "tables": [table_to_mapping(t) for t in specs.tables],
        }
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO methods VALUES (?, ?, ?, ?)",
                [
                    (method, budget, json.dumps(values, sort_keys=True, default=str), tables[method])
                    for (method, budget), values in specs.defaults.items()
                ],
            )
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (SUITE_REPORT_KEY, json.dumps(suite)))

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


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _json_cell(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def tidy_table(db: sqlite3.Connection) -> pd.DataFrame:
    """The long table of finished jobs: job columns, split, metric, value, job_id, params, tags."""
    present = _columns(db, "jobs")
    selected = [c if c in present else f"'{_ADDED_COLUMNS[c]}' AS {c}" for c in JOB_COLUMNS]
    jobs = pd.read_sql_query(f"SELECT job_id, {', '.join(selected)}, params FROM jobs WHERE status = 'done'", db)
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


def load_report_specs(folder: Path) -> ReportSpecs:
    """What the runs into `folder` recorded for the report (see `ReportSpecs`); empty for a
    store written before fairbench recorded it."""
    check_folder(Path(folder))
    with closing(sqlite3.connect(Path(folder) / STORE_FILE)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        methods = (
            db.execute("SELECT method, budget, defaults, report_tables FROM methods").fetchall()
            if "methods" in tables
            else []
        )
        suite_row = db.execute("SELECT value FROM meta WHERE key = ?", (SUITE_REPORT_KEY,)).fetchone()
    suite = json.loads(suite_row[0]) if suite_row else {}

    def recorded(entries: Iterable[Any]) -> tuple[ReportTable, ...]:
        try:
            return tuple(table_from_mapping(entry) for entry in entries)
        except (ValueError, TypeError) as error:
            raise FairbenchError(
                f"{folder}: a report table its run recorded does not read in this fairbench {__version__} "
                f"({error}); report it with the fairbench that ran it, or run its suite again into this folder"
            ) from None

    return ReportSpecs(
        method_tables={m: recorded(json.loads(specs)) for m, _, _, specs in methods},
        defaults={(m, budget): json.loads(values) for m, budget, values, _ in methods},
        labels=tuple(suite.get("labels", ())),
        pairs=tuple((x, y) for x, y in suite.get("pairs", ())),
        sweep=tuple(suite.get("sweep", ())),
        sweep_metrics=tuple(suite.get("sweep_metrics", ())),
        tables=recorded(suite.get("tables", ())),
    )
