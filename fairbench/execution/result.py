"""What a worker hands back for each job: `JobResult`, the same from every executor."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fairbench.plan import Job

if TYPE_CHECKING:
    from fairbench.predictions import Predictions

MetricRow = tuple[str, str, float, dict[str, Any]]  # split, metric, value, tags


@dataclass(frozen=True, kw_only=True)
class JobResult:
    """One job's outcome: `rows` and `predictions` when done, `error` when failed; `duration`
    is the job's share of its unit's time; `log` is the log text of a worker that may share no
    disk with the driver (None: the worker wrote the log file itself)."""

    job: Job
    status: Literal["done", "failed"]
    error: str | None = None
    rows: list[MetricRow] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    started: float
    finished: float
    duration: float
    device: str
    host: str = field(default_factory=platform.node)
    predictions: Predictions | None = None
    log: str | None = None


def failed_results(unit: list[Job], error: str, device: str, started: float | None = None) -> list[JobResult]:
    """A failed result for every job of `unit`: the unit raised after `started`, or (None) its
    worker died before reporting."""
    finished = time.time()
    started = finished if started is None else started
    return [
        JobResult(
            job=job,
            status="failed",
            error=error,
            started=started,
            finished=finished,
            duration=finished - started,
            device=device,
        )
        for job in unit
    ]
