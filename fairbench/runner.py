"""`fairbench run`: suite -> jobs -> (pre-flight) -> executor -> store -> export -> summary."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from fairbench import predictions
from fairbench.artifacts import default_cache_dir
from fairbench.data.base import DatasetStatus, check_task, data_dir_from_env, open_dataset
from fairbench.errors import FairbenchError
from fairbench.execution import Execution
from fairbench.execution.estimates import RATES_ENV, PlanEstimator, Rates
from fairbench.execution.result import JobResult
from fairbench.execution.stacking import should_stack
from fairbench.execution.worker import WorkerSettings
from fairbench.plan import Job, expand, group_units
from fairbench.provenance import git_revision, versions
from fairbench.registry import DATASETS, METHODS
from fairbench.report.cli import print_table
from fairbench.report.tables import CONSOLE_METRICS, summary_tables
from fairbench.status import write_log_index
from fairbench.store import STORE_FILE, ReportSpecs, Store, check_folder, disk_full, lock_folder
from fairbench.suite import Suite, suite_tables
from fairbench.train import check_compile_supported


def preflight(suite: Suite, data_dir: Path | None) -> None:
    """Check the suite before anything is written: `compile` on a torch that compiles the steps,
    and every experiment's data: files present (downloading them if allowed), target and group
    evaluate, both groups present in train and test."""
    if suite.compile:
        check_compile_supported()
    for experiment in suite.experiments:
        dataset = open_dataset(experiment.dataset, data_dir, experiment.options)
        for seed in sorted({suite.split_seed_of(seed) for seed in suite.seeds}):
            check_task(
                dataset, experiment.protocol, experiment.target, experiment.sensitive, seed, bias=experiment.bias
            )


def missing_data(suite: Suite, data_dir: Path | None) -> list[DatasetStatus]:
    """The datasets (with the suite's options) whose files are not all in the data folder;
    reads no data and downloads nothing."""
    root = data_dir_from_env(data_dir)
    statuses: dict[str, DatasetStatus] = {}
    for experiment in suite.experiments:
        key = json.dumps([experiment.dataset, experiment.options], sort_keys=True, default=str)
        if key not in statuses:
            statuses[key] = DATASETS.get(experiment.dataset).status(root, experiment.options)
    return [status for status in statuses.values() if not status.usable]


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min" if value < 3600 else f"{value / 3600:.1f} h"


def plan_table(jobs: list[Job], done: set[str], units: list[list[Job]], estimate: PlanEstimator) -> Table:
    """The dry-run table: one row per experiment x label with job counts and the estimated
    time of the jobs to run on one worker (see fairbench.execution.estimates)."""
    table = Table(
        title=f"{len(jobs)} jobs in {len(units)} work units ({len(done & {j.job_id for j in jobs})} already done)"
    )
    counts = ("grid points", "seeds", "jobs", "to run", "est. time")
    for column in ("experiment", "method", "label", *counts):
        table.add_column(column, justify="right" if column in counts else "left")
    groups: dict[tuple[str, str, str], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.experiment, job.method, job.label), []).append(job)
    total, unknown = 0.0, set()
    for (experiment, method, label), members in groups.items():
        points = {str(sorted(j.params.items())) for j in members}
        seeds = {j.seed for j in members}
        todo = [j for j in members if j.job_id not in done]
        guesses = [estimate(j) for j in todo]
        seconds = sum(g for g in guesses if g is not None)
        total += seconds
        unknown |= {j.method for j, g in zip(todo, guesses) if g is None}
        shown = "-" if not todo else ("no estimate" if None in guesses else _seconds(seconds))
        table.add_row(
            experiment, method, label, str(len(points)), str(len(seeds)), str(len(members)), str(len(todo)), shown
        )
    notes = []
    if total:
        notes.append(
            f"about {_seconds(total)} of job time to run: the median duration of finished jobs of the same "
            f"method (on the same dataset where there are any), else the work each job declares at measured rates"
        )
    if estimate.from_rates:
        notes.append(f"{len(estimate.from_rates)} jobs from the rates of {estimate.rates.rates.describe()}")
    if unknown:
        why = "no finished jobs of it in the results folder"
        if estimate.rates is None:
            why += f" and no rates file (write one with python bench/bench_gpu.py --save-rates; {RATES_ENV})"
        elif estimate.rates.missing:
            why += f", and the rates cannot price it: {', '.join(sorted(estimate.rates.missing))}"
        notes.append(f"no estimate for {', '.join(sorted(unknown))}: {why}")
    table.caption = "; ".join(notes)
    return table


def dry_run_plan(
    suite: Suite,
    results: Path,
    *,
    force: bool,
    stack: str,
    device: str,
    data_dir: Path | None,
    rates: Rates | None = None,
) -> list[str | Table]:
    """What `run --dry-run` prints: the datasets still to get (nothing downloaded) and the plan
    with time estimates from the finished jobs in `results`, else from `rates`. With rates, the
    plan stacks as it would on the rates' device."""
    jobs = expand(suite)
    done: set[str] = set()
    if (results / STORE_FILE).exists() and not force:
        store = Store(results)
        done = finished_jobs(store, results)
        store.close()
    units = plan_units([j for j in jobs if j.job_id not in done], stack, rates.device if rates else device)
    out: list[str | Table] = []
    for status in missing_data(suite, data_dir):
        missing = f" ({', '.join(status.missing)})" if status.missing else ""
        out.append(f"[yellow]missing data[/]: {status.name}{missing} in {status.location}; to get it: {status.action}")
        out.extend(f"  {note}" for note in status.notes)
    out.append(plan_table(jobs, done, units, PlanEstimator(results, rates, units)))
    return out


def registered_specs(methods: Iterable[str], budget: str) -> ReportSpecs:
    """What the report needs of these registered methods: their declared tables and their
    defaults under `budget`."""
    classes = {name: METHODS.get(name) for name in methods}
    return ReportSpecs(
        method_tables={name: cls.report_tables for name, cls in classes.items()},
        defaults={(name, budget): cls.resolve({}, budget) for name, cls in classes.items()},
    )


def report_specs(suite: Suite) -> ReportSpecs:
    """What the report needs from the registry and the suite, resolved now so that the results
    folder alone reports (see fairbench.store.ReportSpecs)."""
    return replace(
        registered_specs([spec.method for spec in suite.methods], suite.budget),
        labels=tuple(spec.label or spec.method for spec in suite.methods),
        pairs=tuple(suite.report.pareto),
        sweep=tuple(suite.report.sweep),
        sweep_metrics=tuple(suite.report.sweep_metrics),
        tables=tuple(suite_tables(suite)),
    )


def print_summary(table: pd.DataFrame, console: Console) -> None:
    """Per experiment: test-split mean ± std over seeds at every label and hyperparameter point."""
    for summary in summary_tables(table, "all"):
        compact = [m for m in CONSOLE_METRICS if m in summary.metrics]
        print_table(console, summary.caption, summary.header_for(compact), summary.text_rows(compact))


def finished_jobs(store: Store, results: Path) -> set[str]:
    """The done jobs whose predictions file is on disk, readable and of the run their row records:
    a done row without them (a crash or a full disk between the two writes, a removed file) is run again."""
    return {
        job_id
        for job_id, finished in store.done_finish_times().items()
        if predictions.intact(results, job_id, finished)
    }


def note_other_revisions(store: Store, done: list[str], revision: str, console: Console) -> None:
    """One line when finished jobs that are reused came from another git revision."""
    others = {rev: n for rev, n in store.done_revisions(done).items() if rev != revision}
    if others:
        console.print(
            f"note: {sum(others.values())} of {len(done)} finished jobs were produced by another git "
            f"revision ({', '.join(sorted(r or 'unknown' for r in others))}); --force reruns them",
            soft_wrap=True,
            highlight=False,
        )


def plan_units(jobs: list[Job], stack: str, device: str) -> list[list[Job]]:
    """The executor's work units: sweep members stacked where `stack` (auto | on | off) says
    so for `device` (cpu | cuda[:i]: the executor's planning device)."""
    return group_units(jobs, should_stack(stack, device))


def auto_device(suite: Suite, execution: Execution) -> Execution:
    """`--device auto` on this machine: the CPU for a suite of tabular data only, whose small MLPs
    spend a GPU's time in kernel launches (the quickstart ran 5x slower on an H200 than on a
    2-core CPU), a GPU where there is one otherwise. Given devices and other launchers are kept."""
    if execution.device != "auto" or execution.devices is not None or execution.executor != "local":
        return execution
    if all(DATASETS.get(experiment.dataset).kind == "tabular" for experiment in suite.experiments):
        return replace(execution, device="cpu")
    return execution


def _set_logs_aside(logs: Path, job_ids: set[str]) -> set[str]:
    """--force: the log of each done job is kept as <id>.done.log until its rerun is recorded (a
    failed rerun keeps the earlier result, and so its log); returns the jobs whose log was."""
    aside = {job_id for job_id in job_ids if (logs / f"{job_id}.log").exists()}
    for job_id in aside:
        (logs / f"{job_id}.log").replace(logs / f"{job_id}.done.log")
    return aside


def _restore_log(logs: Path, job_id: str, kept_earlier: bool) -> Path | None:
    """After a --force rerun is recorded: the earlier log back in place when its result was kept
    (this attempt's log moved to <id>.failed.log, returned), else dropped with that result."""
    earlier = logs / f"{job_id}.done.log"
    if not earlier.exists():
        return None
    if not kept_earlier:
        earlier.unlink()
        return None
    attempt = logs / f"{job_id}.failed.log"
    if (logs / f"{job_id}.log").exists():
        (logs / f"{job_id}.log").replace(attempt)
    earlier.replace(logs / f"{job_id}.log")
    return attempt


def _disk_full_error(error: BaseException, results: Path, kept: int) -> FairbenchError:
    where = getattr(error, "filename", None) or results
    return FairbenchError(
        f"no space left on the disk of {where}: {kept} jobs finished and kept in {results}; free space and rerun "
        f"the same command to resume"
    )


def run_suite(
    suite: Suite,
    results: Path,
    *,
    execution: Execution | None = None,
    force: bool = False,
    stack: str | None = None,
    data_dir: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run every job of `suite` not already done in `results` (in this process by default);
    return counts. `stack` (auto | on | off) overrides the suite's `stack:`."""
    execution = auto_device(suite, execution or Execution())
    console = console or Console(stderr=True)
    jobs = expand(suite)
    check_folder(results)
    preflight(suite, data_dir)
    try:
        results.mkdir(parents=True, exist_ok=True)
        lock = lock_folder(results)
    except OSError as error:
        raise FairbenchError(f"--results {results}: cannot write there ({error.strerror})") from None
    done: set[str] = set()
    kept_now = 0
    aside: set[str] = set()
    store: Store | None = None
    try:
        store = Store(results)
        (results / "suite.yaml").write_text(yaml.safe_dump(suite.model_dump(mode="json"), sort_keys=False))
        store.record_report_specs(report_specs(suite))
        write_log_index(results, jobs)
        done = set() if force else finished_jobs(store, results)
        rerun = (store.done_ids() & {job.job_id for job in jobs}) - done
        todo = [job for job in jobs if job.job_id not in done]
        units = plan_units(todo, stack or suite.stack, execution.planning_device())
        console.print(
            f"[bold]{suite.name}[/]: {len(jobs)} jobs, {len(jobs) - len(todo)} already done, "
            f"{len(todo)} to run with {execution.describe()} -> {results}"
        )
        if rerun and not force:
            console.print(
                f"note: {len(rerun)} finished jobs have no readable predictions file of their run; they run again",
                soft_wrap=True,
                highlight=False,
            )
        failed: list[tuple[Job, str]] = []
        provenance = {"versions": versions(), "git_rev": git_revision()}
        note_other_revisions(store, [job.job_id for job in jobs if job.job_id in done], provenance["git_rev"], console)

        def record(result: JobResult) -> None:
            nonlocal kept_now
            job = result.job
            log = results / "logs" / f"{job.job_id}.log"
            row = {
                **asdict(job),
                **provenance,
                "status": result.status,
                "error": result.error,
                "info": result.info,
                "started": result.started,
                "finished": result.finished,
                "duration": result.duration,
                "device": result.device,
                "host": result.host,
                "log": str(log),
            }
            if result.log is not None:  # a remote worker's log, sent back with its result
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(result.log)
            if result.status == "done" and result.predictions is not None:
                # before the row: "done" means both are on disk (see fairbench.predictions)
                predictions.save(results, job.job_id, result.predictions, result.finished)
            kept = store.record(row, result.rows)
            earlier_log = _restore_log(results / "logs", job.job_id, kept)
            if result.status == "failed":
                note = f" (kept the earlier result; this attempt's log: {earlier_log})" if kept else ""
                failed.append((job, f"{result.error}{note}"))
            else:
                kept_now += 1

        settings = WorkerSettings(
            data_dir=str(data_dir_from_env(data_dir)),
            cache_dir=str(default_cache_dir()),
            log_dir=str(results / "logs"),
            compile=suite.compile,
        )
        if force:
            aside = _set_logs_aside(results / "logs", store.done_ids() & {job.job_id for job in todo})
        if units:
            execution.launcher().execute(units, settings, execution, record, console)
        table = store.export()
    except Exception as error:
        if disk_full(error, results):
            raise _disk_full_error(error, results, len(done) + kept_now) from None
        raise
    finally:
        for job_id in aside:  # reruns that never finished (Ctrl-C, a full disk): their results stand
            _restore_log(results / "logs", job_id, kept_earlier=True)
        if store is not None:
            store.close()
        lock.release()
    if len(table):
        print_summary(table, console)
    for job, error in failed:
        console.print(
            f"[red]failed[/] {job.label} seed={job.seed} {job.experiment} ({job.job_id}): {error}", soft_wrap=True
        )
    if failed:
        console.print(f"[red]{len(failed)} of {len(todo)} jobs failed[/]; logs in {results / 'logs'}")
    return {"jobs": len(jobs), "ran": len(todo), "failed": len(failed), "table": table}
