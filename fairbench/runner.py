"""`fairbench run`: suite -> jobs -> (pre-flight) -> executor -> store -> export -> summary."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich import box
from rich.console import Console
from rich.table import Table

from fairbench.artifacts import default_cache_dir
from fairbench.data.base import check_task, data_dir_from_env, open_dataset
from fairbench.execution.local import execute, resolve_devices
from fairbench.execution.worker import WorkerSettings
from fairbench.plan import Job, expand, group_units
from fairbench.provenance import git_revision, versions
from fairbench.stacked import should_stack
from fairbench.store import Store, check_folder
from fairbench.suite import Suite

SUMMARY_METRICS = ("acc", "dp", "eo", "discrimination")


def preflight(suite: Suite, data_dir: Path | None) -> None:
    """Check every experiment's data before anything is written: files present (downloading
    them if allowed), target and group evaluate, both groups present in train and test."""
    for experiment in suite.experiments:
        dataset = open_dataset(experiment.dataset, data_dir, experiment.options)
        for seed in suite.seeds:
            check_task(dataset, experiment.protocol, experiment.target, experiment.sensitive, seed)


def plan_table(jobs: list[Job], done: set[str], units: list[list[Job]]) -> Table:
    """The dry-run table: one row per experiment x label with job counts."""
    table = Table(
        title=f"{len(jobs)} jobs in {len(units)} work units ({len(done & {j.job_id for j in jobs})} already done)"
    )
    for column in ("experiment", "method", "label", "grid points", "seeds", "jobs", "to run"):
        table.add_column(column, justify="right" if column in ("grid points", "seeds", "jobs", "to run") else "left")
    groups: dict[tuple[str, str, str], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.experiment, job.method, job.label), []).append(job)
    for (experiment, method, label), members in groups.items():
        points = {str(sorted(j.params.items())) for j in members}
        seeds = {j.seed for j in members}
        todo = sum(j.job_id not in done for j in members)
        table.add_row(experiment, method, label, str(len(points)), str(len(seeds)), str(len(members)), str(todo))
    return table


def summary_tables(table: pd.DataFrame) -> list[Table]:
    """Per experiment: test-split mean ± std over seeds per label and hyperparameter point."""
    test = table[(table["split"] == "test") & table["metric"].isin(SUMMARY_METRICS)]
    out = []
    for experiment, part in test.groupby("experiment", sort=False):
        params = [c for c in part.columns if c.startswith("param_")]
        varying = [c for c in params if part.groupby("label")[c].nunique(dropna=True).max() > 1]
        keys = ["label", *varying]
        stats = part.groupby([*keys, "metric"], dropna=False)["value"].agg(["mean", "std", "count"]).reset_index()
        view = Table(title=f"{experiment}: test split, mean±std over seeds", box=box.SIMPLE_HEAD, pad_edge=False)
        for column in [*(c.removeprefix("param_") for c in keys), "n", *SUMMARY_METRICS]:
            column = {"discrimination": "disc"}.get(column, column)
            view.add_column(column)
        for key, group in stats.groupby(keys, dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            cells = {r.metric: f"{r.mean:.3f}±{0 if pd.isna(r.std) else r.std:.3f}" for r in group.itertuples()}
            view.add_row(*("-" if pd.isna(k) else str(k) for k in key), str(int(group["count"].max())),
                         *(cells.get(m, "") for m in SUMMARY_METRICS))  # fmt: skip
        out.append(view)
    return out


def plan_units(jobs: list[Job], stack: str, device: str) -> list[list[Job]]:
    """The executor's work units: sweep members stacked where `stack` (auto | on | off) says
    so for the device that `device` (auto | cpu | cuda[:i]) resolves to."""
    return group_units(jobs, should_stack(stack, resolve_devices(device, 1)[0]))


def run_suite(
    suite: Suite,
    results: Path,
    *,
    workers: int = 1,
    device: str = "auto",
    threads: int | None = None,
    force: bool = False,
    stack: str | None = None,
    data_dir: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run every job of `suite` not already done in `results`; return counts. `stack`
    (auto | on | off) overrides the suite's `stack:`."""
    console = console or Console(stderr=True)
    jobs = expand(suite)
    check_folder(results)
    preflight(suite, data_dir)
    store = Store(results)
    try:
        (results / "suite.yaml").write_text(yaml.safe_dump(suite.model_dump(), sort_keys=False))
        done = set() if force else store.done_ids()
        todo = [job for job in jobs if job.job_id not in done]
        units = plan_units(todo, stack or suite.stack, device)
        console.print(f"[bold]{suite.name}[/]: {len(jobs)} jobs, {len(jobs) - len(todo)} already done, "
                      f"{len(todo)} to run with {workers} worker(s) -> {results}")  # fmt: skip
        failed: list[tuple[Job, str]] = []
        provenance = {"versions": versions(), "git_rev": git_revision()}

        def record(result: dict[str, Any]) -> None:
            job: Job = result["job"]
            if result["status"] == "failed":
                failed.append((job, result["error"]))
            row = {**{k: v for k, v in asdict(job).items()}, **provenance,
                   "status": result["status"], "error": result["error"], "info": result["info"],
                   "started": result["started"], "finished": result["finished"], "duration": result["duration"],
                   "device": result["device"], "host": result["host"],
                   "log": str(results / "logs" / f"{job.job_id}.log")}  # fmt: skip
            store.record(row, result["rows"])

        settings = WorkerSettings(
            data_dir=str(data_dir_from_env(data_dir)), cache_dir=str(default_cache_dir()), log_dir=str(results / "logs")
        )
        if units:
            execute(units, settings, workers, device, record, console, threads)
        table = store.export()
    finally:
        store.close()
    for view in summary_tables(table) if len(table) else []:
        console.print(view)
    for job, error in failed:
        console.print(f"[red]failed[/] {job.label} seed={job.seed} {job.experiment} ({job.job_id}): {error}")
    if failed:
        console.print(f"[red]{len(failed)} of {len(todo)} jobs failed[/]; logs in {results / 'logs'}")
    return {"jobs": len(jobs), "ran": len(todo), "failed": len(failed), "table": table}
