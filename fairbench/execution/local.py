"""The local executor: a process pool on this machine, with rich progress and device slots."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fairbench.execution.worker import WorkerSettings, init_worker, run_unit
from fairbench.plan import Job


def resolve_devices(device: str, workers: int) -> list[str]:
    """One device per worker: `auto` picks CUDA when available; GPUs are shared round-robin."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            from fairbench.errors import FairbenchError

            raise FairbenchError("--device cuda: no CUDA device is visible; use --device cpu or auto")
        return [f"cuda:{i % count}" for i in range(workers)]
    return [device] * workers


def _describe(unit: list[Job]) -> str:
    job = unit[0]
    size = f" x{len(unit)}" if len(unit) > 1 else ""
    return f"{job.label}{size} seed={job.seed} {job.experiment}"


def execute(
    units: list[list[Job]],
    settings: WorkerSettings,
    workers: int,
    device: str,
    on_result: Callable[[dict[str, Any]], None],
    console: Console,
    threads: int | None = None,
) -> None:
    """Run every unit; call `on_result` in this process as each job finishes (for the store)."""
    total = sum(len(unit) for unit in units)
    devices = resolve_devices(device, workers)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("jobs", total=total)

        def show(active: list[list[Job]]) -> None:
            names = ", ".join(_describe(unit) for unit in active[:3]) + (" ..." if len(active) > 3 else "")
            progress.update(bar, description=f"jobs [dim]({names})" if names else "jobs")

        def finish(results: list[dict[str, Any]]) -> None:
            for result in results:
                on_result(result)
            progress.advance(bar, len(results))

        if workers == 1:
            init_worker(threads or 1, devices[0])
            for unit in units:
                show([unit])
                finish(run_unit(unit, settings))
            show([])
            return

        context = multiprocessing.get_context("spawn")
        slots = context.Queue()
        for slot in devices:
            slots.put(slot)
        with ProcessPoolExecutor(
            workers, context, init_worker, (threads or 1, slots)
        ) as pool:
            pending: dict[Future, list[Job]] = {pool.submit(run_unit, unit, settings): unit for unit in units}
            while pending:
                show(list(pending.values())[:workers])
                done, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    unit = pending.pop(future)
                    try:
                        finish(future.result())
                    except BrokenProcessPool as error:
                        now = time.time()
                        finish([{"job": job, "status": "failed", "error": f"worker process died: {error}",
                                 "rows": [], "info": {}, "started": now, "finished": now, "duration": 0.0,
                                 "device": "", "host": ""} for job in unit])  # fmt: skip
            show([])
