"""The progress display of every executor, and the time estimates behind it.

On a terminal: one line per running work unit (label, grid point, seed, experiment, elapsed
time) above a full-width bar with the estimated time left. In a plain log (no terminal): one
line per finished job. The estimate sums the expected duration of every job still to run: the
mean duration of the finished jobs of its method in this run, else what `history_estimator` (the
dry run's history estimate) says, else the mean of every finished job; divided by the units running at
once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from fairbench.execution.estimates import Estimator, history_estimator
from fairbench.execution.result import JobResult
from fairbench.plan import Job


def grid_keys(units: list[list[Job]]) -> dict[tuple[str, str], list[str]]:
    """Per (experiment, label): the parameters whose values differ between its jobs, i.e. the
    grid, which is what tells two of its jobs apart besides the seed."""
    values: dict[tuple[str, str], dict[str, set[str]]] = {}
    for job in (job for unit in units for job in unit):
        seen = values.setdefault((job.experiment, job.label), {})
        for name, value in job.params.items():
            seen.setdefault(name, set()).add(repr(value))
    return {key: [name for name, seen in params.items() if len(seen) > 1] for key, params in values.items()}


def describe_job(job: Job, grid: list[str]) -> str:
    """`ADT lam=10.0 seed=1 synthetic/y/s`: the label, the grid point, the seed, the experiment."""
    point = "".join(
        f" {name}={job.params[name]:g}" if isinstance(job.params[name], float) else f" {name}={job.params[name]}"
        for name in grid
    )
    return f"{job.label}{point} seed={job.seed} {job.experiment}"


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class Estimate:
    """Expected durations of jobs: this run's finished jobs of the same method on the same
    dataset first (a method's cost follows the data's size), then the prior (the results
    folder's history), then this run's jobs of the method on other datasets, then this run's mean."""

    def __init__(self, prior: Estimator) -> None:
        self.prior = prior
        self.durations: dict[tuple[str, str], list[float]] = {}

    def add(self, job: Job, seconds: float) -> None:
        self.durations.setdefault((job.method, job.dataset), []).append(seconds)

    def expected(self, job: Job) -> float | None:
        own = self.durations.get((job.method, job.dataset))
        if own:
            return sum(own) / len(own)
        prior = self.prior(job)
        if prior is not None:
            return prior
        for pool in (
            [s for (m, _), v in self.durations.items() if m == job.method for s in v],
            [s for v in self.durations.values() for s in v],
        ):
            if pool:
                return sum(pool) / len(pool)
        return None

    def left(self, waiting: list[Job], running: list[tuple[Job, float]], slots: int) -> float | None:
        """Seconds until every job is done with `slots` units at once; None while a job has no
        estimate. `running` pairs each running job with its elapsed seconds."""
        total = 0.0
        for job, elapsed in [(job, 0.0) for job in waiting] + running:
            expected = self.expected(job)
            if expected is None:
                return None
            total += max(expected - elapsed, 0.0)
        return total / max(slots, 1)


class JobProgress:
    """`show(running units)` as the executor's loop goes; `finish(results)` records each result
    through `on_result` and advances the count. `slots`: units running at once (None: as many
    as are shown running)."""

    def __init__(
        self,
        units: list[list[Job]],
        on_result: Callable[[JobResult], None],
        console: Console,
        results: Path,
        slots: int | None = None,
    ) -> None:
        self.on_result = on_result
        self.console = console
        self.slots = slots
        self.total = sum(len(unit) for unit in units)
        self.done = 0
        self.waiting = {job.job_id: job for unit in units for job in unit}
        self.grids = grid_keys(units)
        self.estimate = Estimate(history_estimator(results))
        self.started: dict[str, float] = {}  # first job id of a running unit -> its start
        self.running: list[list[Job]] = []
        self.begun = time.monotonic()
        self.live = Live(console=console, refresh_per_second=2, transient=True) if console.is_terminal else None
        columns = (
            TextColumn("[bold]jobs"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
        )
        self.bar = Progress(*columns, console=console, expand=True)
        self.task = self.bar.add_task("", total=self.total)

    def __enter__(self) -> JobProgress:
        if self.live is not None:
            self.live.start()
            self._refresh()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = []
        if self.live is not None:
            self._refresh()
            self.live.stop()
            self.console.print(self.bar.get_renderable())

    def describe(self, job: Job) -> str:
        return describe_job(job, self.grids.get((job.experiment, job.label), []))

    def show(self, active: list[list[Job]]) -> None:
        now = time.monotonic()
        ids = {unit[0].job_id for unit in active}
        self.started = {key: since for key, since in self.started.items() if key in ids}
        for unit in active:
            self.started.setdefault(unit[0].job_id, now)
        self.running = active
        if self.live is not None:
            self._refresh()

    def time_left(self) -> str:
        now = time.monotonic()
        running = [
            (job, now - self.started.get(unit[0].job_id, now))
            for unit in self.running
            for job in unit
            if job.job_id in self.waiting
        ]
        busy = {job.job_id for job, _ in running}
        waiting = [job for key, job in self.waiting.items() if key not in busy]
        left = self.estimate.left(waiting, running, self.slots or len(self.running))
        return "time left unknown until a job finishes" if left is None else f"about {_clock(left)} left"

    def _refresh(self) -> None:
        assert self.live is not None
        self.bar.update(self.task, completed=self.done, description=self.time_left())
        now = time.monotonic()
        room = max(self.console.size.height - 4, 1)
        lines = []
        for unit in self.running[:room]:
            size = f" (+{len(unit) - 1} stacked)" if len(unit) > 1 else ""
            elapsed = _clock(now - self.started.get(unit[0].job_id, now))
            lines.append(Text(f"  {elapsed}  {self.describe(unit[0])}{size}", overflow="ellipsis", no_wrap=True))
        if len(self.running) > room:
            lines.append(Text(f"  ... and {len(self.running) - room} more running"))
        self.live.update(Group(*lines, self.bar.get_renderable()))

    def finish(self, results: list[JobResult]) -> None:
        for result in results:
            self.on_result(result)
            self.waiting.pop(result.job.job_id, None)
            self.done += 1
            if result.status == "done":
                self.estimate.add(result.job, result.duration)
            if self.live is None or result.status != "done":
                self._report(result)
        if self.live is not None:
            self._refresh()

    def _report(self, result: JobResult) -> None:
        """One line per finished job: the plain log's progress, and a failure on a terminal."""
        status = "done" if result.status == "done" else "[red]failed[/]"
        line = (
            f"[{self.done}/{self.total}] {status} {escape(self.describe(result.job))} in "
            f"{result.duration:.1f} s; {self.time_left()}"
        )
        self.console.print(line, soft_wrap=True, highlight=False)
