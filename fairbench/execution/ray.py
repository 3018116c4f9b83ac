"""The Ray executor: one Ray task per work unit, on a running cluster (`--address`) or on a local
Ray instance started for the run.

Each task declares what it needs (`--threads` CPUs; 1/K of a GPU with `--jobs-per-device K`
on a GPU run), so Ray packs tasks onto the cluster's nodes. A task returns its results, kept
predictions and log text to the driver, which writes the store: workers need no shared disk for
results. A task whose worker dies (killed, out of memory, node lost) is rerun by Ray up to
`--retries` times; a job that raises is a failed result, never retried (it would fail again).
Artifacts are built once per artifact cache: point $FAIRBENCH_CACHE at a shared disk for once
per cluster, else each node builds its own once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from fairbench.errors import FairbenchError
from fairbench.execution import Execution
from fairbench.execution.base import cluster_planning_device, refuse_devices
from fairbench.execution.progress import JobProgress
from fairbench.execution.result import JobResult, failed_results
from fairbench.execution.worker import WorkerSettings, run_unit_detached
from fairbench.plan import Job


class Ray:
    """The Ray executor (see the module's docstring)."""

    description = "one Ray task per work unit, on a cluster (--address) or a local Ray instance"

    def check(self, execution: Execution) -> None:
        refuse_devices(execution)
        if execution.address is not None and execution.workers is not None:
            raise FairbenchError(
                "--workers sizes a local Ray instance; with --address the cluster's resources "
                "decide: leave out --workers"
            )
        require()

    def describe(self, execution: Execution) -> str:
        return f"ray at {execution.address}" if execution.address else "a local ray instance"

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
        """Run every unit as a Ray task; call `on_result` here as each unit's results come back."""
        ray = require()
        threads = execution.threads or 1
        if execution.address:
            ray.init(address=execution.address, log_to_driver=False, configure_logging=False)
        else:
            cpus = execution.workers and execution.workers * threads  # None: every core of this machine
            # address="local": a new instance even when another Ray runs on this machine
            ray.init(
                address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False
            )
        try:
            gpus = _gpus_per_task(ray, execution)
            device = "auto" if gpus else "cpu"  # auto: the node's worker takes the GPU Ray gave its task
            task = ray.remote(run_unit_detached).options(
                num_cpus=threads, num_gpus=gpus, max_retries=execution.retries, retry_exceptions=False
            )
            pending = {task.remote(unit, settings, threads, device): unit for unit in units}
            with JobProgress(units, on_result, console, Path(settings.log_dir).parent, execution.workers) as progress:
                while pending:
                    progress.show(list(pending.values()))
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                    for ref in ready:
                        unit = pending.pop(ref)
                        try:
                            results = ray.get(ref)
                        except ray.exceptions.RayError as error:  # the worker died on every attempt
                            cause = str(error).strip().splitlines()[0]
                            tries = execution.retries + 1
                            lost = f"ray worker lost ({tries} attempt(s)): {cause}"
                            results = failed_results(unit, lost, "cuda" if gpus else "cpu")
                        progress.finish(results)
        finally:
            ray.shutdown()


def require() -> Any:
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise FairbenchError('--executor ray needs Ray: pip install -e ".[ray]" (or pip install ray)') from None
    return ray


def _gpus_per_task(ray: Any, execution: Execution) -> float:
    """1/K of a GPU for a GPU run (`--device cuda`, or `auto` on a cluster that has GPUs), else 0."""
    available = ray.cluster_resources().get("GPU", 0)
    if execution.device.startswith("cuda") and not available:  # Ray would wait for a GPU forever
        raise FairbenchError(f"--device {execution.device}: the Ray cluster has no GPU; use --device cpu or auto")
    wants = execution.device.startswith("cuda") or (execution.device == "auto" and available > 0)
    return 1.0 / execution.jobs_per_device if wants else 0.0
