"""Progress you can trust: per-method estimates, the grid point of every job, one line per finished
job in a plain log, one line per running job above a full-width bar on a terminal."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from fairbench.execution.progress import Estimate, JobProgress, describe_job, grid_keys
from fairbench.execution.result import JobResult
from fairbench.plan import Job


def _job(method: str, label: str, seed: int, **params: Any) -> Job:
    return Job(
        suite="s",
        experiment="synthetic/y/s",
        dataset="synthetic",
        protocol="random",
        target="y",
        sensitive="s",
        options={},
        method=method,
        label=label,
        params={"epochs": 2, **params},
        seed=seed,
        split_seed=seed,
        budget="quick",
    )


def _result(job: Job, seconds: float, status: str = "done") -> JobResult:
    return JobResult(job=job, status=status, started=0.0, finished=seconds, duration=seconds, device="cpu")


ADT = [[_job("adt", "ADT", seed, lam=lam)] for lam in (1.0, 10.0) for seed in (0, 1)]
ERM = [[_job("erm", "ERM", seed)] for seed in (0, 1)]


def test_the_estimate_uses_this_runs_jobs_of_the_method_and_dataset_then_the_prior_then_the_run() -> None:
    estimate = Estimate(prior=lambda job: 30.0 if job.method == "adt" else None)
    adt, erm = ADT[0][0], ERM[0][0]
    assert estimate.expected(adt) == 30.0 and estimate.expected(erm) is None
    assert estimate.left([adt, erm], [], slots=1) is None  # nothing known of erm yet
    estimate.add(adt, 10.0)
    estimate.add(adt, 20.0)
    assert estimate.expected(adt) == 15.0  # this run's own durations beat the history
    assert estimate.expected(erm) == 15.0  # nothing of erm: the run's mean
    estimate.add(erm, 1.0)
    # two waiting ADT jobs (15 s each), one running ERM 0.4 s in (1 s expected), on 2 slots
    assert estimate.left([adt, adt], [(erm, 0.4)], slots=2) == (15 + 15 + 0.6) / 2
    # on a bigger dataset, the history of that dataset before this run's jobs of the method elsewhere
    big = replace(erm, dataset="adult")
    assert estimate.expected(big) == 1.0
    estimate.prior = lambda job: 40.0 if job.dataset == "adult" else None
    assert estimate.expected(big) == 40.0
    estimate.add(big, 60.0)
    assert estimate.expected(big) == 60.0 and estimate.expected(erm) == 1.0


def test_jobs_are_described_by_their_grid_point_not_their_fixed_parameters() -> None:
    grids = grid_keys(ADT + ERM)
    assert grids == {("synthetic/y/s", "ADT"): ["lam"], ("synthetic/y/s", "ERM"): []}
    assert describe_job(ADT[3][0], grids[("synthetic/y/s", "ADT")]) == "ADT lam=10 seed=1 synthetic/y/s"


def test_a_plain_log_gets_one_line_per_finished_job_with_a_steady_estimate(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=120)
    recorded = []
    with JobProgress(ADT, recorded.append, console, tmp_path, slots=1) as progress:
        for unit in ADT:
            progress.show([unit])
            progress.finish([_result(unit[0], 10.0)])
    lines = out.getvalue().splitlines()
    assert len(recorded) == 4 and len(lines) == 4
    assert lines[0] == "[1/4] done ADT lam=1 seed=0 synthetic/y/s in 10.0 s; about 0:00:30 left"
    assert lines[2] == "[3/4] done ADT lam=10 seed=0 synthetic/y/s in 10.0 s; about 0:00:10 left"


def test_a_terminal_shows_each_running_job_above_a_full_width_bar(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120, height=40)
    with JobProgress(ADT + ERM, lambda result: None, console, tmp_path, slots=2) as progress:
        progress.show(ADT[:2])
        progress.finish([_result(ADT[0][0], 8.0)])
        progress.show(ADT[1:3])
        screen = Console(file=io.StringIO(), width=120, record=True, color_system=None)
        screen.print(progress.live.get_renderable())
    lines = screen.export_text().splitlines()
    assert [line.split(maxsplit=1)[1] for line in lines[:2]] == [
        "ADT lam=1 seed=1 synthetic/y/s",
        "ADT lam=10 seed=0 synthetic/y/s",
    ]
    bar = lines[2]
    assert bar.startswith("jobs") and "1/6" in bar and "left" in bar
    assert bar.index("1/6") > 80  # the bar spans the width; job names are on their own lines
    assert bar.endswith("about 0:00:20 left")  # 3 ADT jobs of 8 s + 2 ERM at the run's mean, on 2 slots
