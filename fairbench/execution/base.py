"""The `Executor` protocol every launcher implements, and what the cluster launchers share.

A launcher is a class with a no-argument constructor, registered by name in
`fairbench.registry.EXECUTORS` (built-ins) or under the entry-point group `fairbench.executors`
(plugins). It receives work units and calls `on_result` in the driver process for each job's
`JobResult`, as each finishes: the driver alone writes the results store. A launcher that runs
units on other machines calls `fairbench.execution.worker.run_unit_detached` there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Protocol

from rich.console import Console

from fairbench.errors import FairbenchError
from fairbench.execution.devices import resolve_device
from fairbench.execution.result import JobResult
from fairbench.plan import Job

if TYPE_CHECKING:
    from fairbench.execution import Execution
    from fairbench.execution.worker import WorkerSettings


class Executor(Protocol):
    """Runs work units (lists of jobs that train together) somewhere."""

    description: ClassVar[str]  # one line, for `fairbench ls executors`

    def check(self, execution: Execution) -> None:
        """Raise FairbenchError for options this launcher cannot honour (or a missing package),
        before anything is written."""
        ...

    def describe(self, execution: Execution) -> str:
        """Where the units will run, for the line printed before they start."""
        ...

    def planning_device(self, execution: Execution) -> str:
        """The device the plan is made for: whether sweep members are stacked (cpu, cuda, cuda:<i>)."""
        ...

    def execute(
        self,
        units: list[list[Job]],
        settings: WorkerSettings,
        execution: Execution,
        on_result: Callable[[JobResult], None],
        console: Console,
    ) -> None:
        """Run every unit; call `on_result` in this process as each job finishes."""
        ...


def refuse_devices(execution: Execution) -> None:
    """A launcher whose scheduler places jobs on GPUs takes no --devices."""
    if execution.devices is not None:
        raise FairbenchError(
            f"--devices is for the local executor; {execution.executor} places jobs on the GPUs "
            f"it manages: use --device cuda (and --jobs-per-device)"
        )


def refuse_address(execution: Execution) -> None:
    if execution.address is not None:
        raise FairbenchError("--address is the address of a Ray cluster: add --executor ray")


def cluster_planning_device(execution: Execution) -> str:
    """On a cluster: --device as given (the driver may have no GPU), `auto` resolved here."""
    return resolve_device("auto") if execution.device == "auto" else execution.device
