"""The SLURM executor: one submitit job array, one array task per work unit.

What each task asks for comes from the suite's `execution.slurm` (partition, time in minutes,
gpus, cpus, mem_gb; `--set execution.slurm.partition=gpu` on the command line); `--workers`
caps the tasks running at once. This process stays up as the driver: it polls the array and
writes each unit's results, predictions and log (returned through submitit's pickles in
RESULTS/slurm/) into the store as they arrive, so an interrupted run resumes by rerunning the
command, as with the other executors.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from fairbench.errors import FairbenchError
from fairbench.execution import Execution
from fairbench.execution.base import cluster_planning_device, refuse_address, refuse_devices
from fairbench.execution.progress import JobProgress
from fairbench.execution.result import JobResult, failed_results
from fairbench.execution.worker import WorkerSettings, run_unit_detached
from fairbench.plan import Job


class Slurm:
    """The SLURM executor (see the module's docstring)."""

    description = "one submitit job array, one array task per work unit (the suite's execution.slurm)"

    def check(self, execution: Execution) -> None:
        refuse_devices(execution)
        refuse_address(execution)
        if execution.jobs_per_device != 1:
            raise FairbenchError(
                "--jobs-per-device: SLURM gives each array task its own GPUs; set execution.slurm.gpus instead"
            )
        require()

    def describe(self, execution: Execution) -> str:
        return "a slurm job array"

    def planning_device(self, execution: Execution) -> str:
        return cluster_planning_device(execution)

    def execute(
        self,
        units: list[list[Job]],
        settings: WorkerSettings,
        execution: Execution,
        on_result: Callable[[JobResult], None],
        console: Console,
    ) -> None:
        """Submit every unit as a task of one job array; call `on_result` here as each finishes."""
        submitit = require()
        spec = execution.slurm
        gpus = spec.get("gpus")
        if gpus is None:
            gpus = 1 if execution.device.startswith("cuda") else 0
        threads = execution.threads or spec.get("cpus", 1)
        device = "auto" if gpus else "cpu"  # auto: the array task's worker takes the GPUs SLURM gave it
        # submitit keeps each task's pickled call and result beside the logs (a folder the nodes share).
        folder = Path(settings.log_dir).parent / "slurm"
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=spec.get("cluster"))
        executor.update_parameters(
            name="fairbench",
            timeout_min=spec.get("time", 60),
            cpus_per_task=threads,
            gpus_per_node=gpus,
            mem_gb=spec.get("mem_gb"),
            slurm_partition=spec.get("partition"),
            slurm_array_parallelism=execution.workers,
        )
        n = len(units)
        jobs = executor.map_array(run_unit_detached, units, [settings] * n, [threads] * n, [device] * n)
        console.print(
            f"submitted job array {jobs[0].job_id.split('_')[0]} ({n} tasks); logs in {folder}", soft_wrap=True
        )
        pending = dict(zip(jobs, units))
        results_folder = Path(settings.log_dir).parent
        with (
            JobProgress(units, on_result, console, results_folder, execution.workers) as progress,
            _cancel_on_interrupt(pending),
        ):
            while pending:
                progress.show(list(pending.values()))
                for job in [job for job in pending if job.done()]:
                    unit = pending.pop(job)
                    try:
                        results = job.result()
                    except Exception as error:  # submitit wraps a task's death (timeout, preemption, node failure)
                        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                        lost = f"slurm task {job.job_id} failed: {cause}"
                        results = failed_results(unit, lost, "cuda" if gpus else "cpu")
                    progress.finish(results)
                if pending:
                    time.sleep(1.0)


def require() -> Any:
    """The submitit module, or a one-line error saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise FairbenchError(
            '--executor slurm needs submitit: pip install -e ".[slurm]" (or pip install submitit)'
        ) from None
    return submitit


@contextlib.contextmanager
def _cancel_on_interrupt(pending: dict[Any, list[Job]]) -> Iterator[None]:
    """Ctrl-C cancels the tasks not yet back: their results would have no one to store them."""
    try:
        yield
    except KeyboardInterrupt:
        for job in pending:
            job.cancel(check=False)
        raise
