"""The local executor: worker processes on this machine, with rich progress and one device each.

Each worker has its own pipe, so this process knows which unit every worker runs: a worker that
dies (kill -9, out of memory) fails only its unit and is replaced; the others go on.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fairbench.execution.worker import WorkerSettings, failed_results, init_worker, run_unit
from fairbench.plan import Job


def resolve_devices(device: str | Sequence[str], workers: int) -> list[str]:
    """One device per worker: `auto` picks CUDA when available; GPUs (or a given list of
    devices) are shared round-robin."""
    import torch

    if not isinstance(device, str):
        return [list(device)[i % len(device)] for i in range(workers)]
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


class JobProgress:
    """The progress bar of every executor: `show(running units)`, `finish(results)` records
    each result through `on_result` and advances the bar."""

    def __init__(self, units: list[list[Job]], on_result: Callable[[dict[str, Any]], None], console: Console) -> None:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())  # fmt: skip
        self.progress = Progress(*columns, console=console, transient=False)
        self.bar = self.progress.add_task("jobs", total=sum(len(unit) for unit in units))
        self.on_result = on_result

    def __enter__(self) -> JobProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.show([])
        self.progress.stop()

    def show(self, active: list[list[Job]]) -> None:
        names = ", ".join(_describe(unit) for unit in active[:3]) + (" ..." if len(active) > 3 else "")
        self.progress.update(self.bar, description=f"jobs [dim]({names})" if names else "jobs")

    def finish(self, results: list[dict[str, Any]]) -> None:
        for result in results:
            self.on_result(result)
        self.progress.advance(self.bar, len(results))


def _serve(conn: Connection, settings: WorkerSettings, threads: int, device: str) -> None:
    """A worker process: run each unit it is sent until it is sent None. It ends quietly on
    Ctrl-C (the driver reports it) and when the driver is gone (no one would record its results)."""
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    try:
        init_worker(threads, device)
        while (unit := conn.recv()) is not None:
            conn.send(run_unit(unit, settings))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return


def _exit_when_orphaned(parent: int) -> None:
    """End this worker within a second of its driver's death (kill -9 included)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class _Worker:
    """One worker process, its pipe, and the unit it is running (None when idle)."""

    def __init__(self, context: Any, settings: WorkerSettings, threads: int, device: str) -> None:
        self.device = device
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, settings, threads, device))
        self.process.start()
        child.close()
        self.unit: list[Job] | None = None

    def give(self, unit: list[Job]) -> None:
        self.unit = unit
        self.conn.send(unit)

    def collect(self) -> list[dict[str, Any]] | None:
        """The unit's results once sent; a failed result per job if the worker died first."""
        try:
            if self.conn.poll():
                results, self.unit = self.conn.recv(), None
                return results
        except (EOFError, OSError):
            pass  # died while sending: its unit failed
        if self.process.is_alive():
            return None
        self.process.join()
        code = self.process.exitcode
        cause = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        results = failed_results(self.unit or [], f"worker process died ({cause}; out of memory?)", self.device)
        self.unit = None
        return results

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.conn.close()


def execute(
    units: list[list[Job]],
    settings: WorkerSettings,
    workers: int,
    device: str | Sequence[str],
    on_result: Callable[[dict[str, Any]], None],
    console: Console,
    threads: int | None = None,
) -> None:
    """Run every unit; call `on_result` in this process as each job finishes (for the store).
    `device` is auto | cpu | cuda | cuda:<i>, or a list of devices shared over the workers."""
    devices = resolve_devices(device, workers)
    with JobProgress(units, on_result, console) as progress:
        show, finish = progress.show, progress.finish

        if workers == 1:
            init_worker(threads or 1, devices[0])
            for unit in units:
                show([unit])
                finish(run_unit(unit, settings))
            return

        context = multiprocessing.get_context("spawn")

        def start(slot: str) -> _Worker:
            return _Worker(context, settings, threads or 1, slot)

        pool = [start(slot) for slot in devices]
        todo = deque(units)
        try:
            while todo or any(w.unit for w in pool):
                for index, worker in enumerate(pool):
                    if worker.unit is None and todo:
                        if not worker.process.is_alive():  # died while idle: nothing of it lost
                            worker.stop()
                            pool[index] = worker = start(worker.device)
                        worker.give(todo.popleft())
                busy = [w for w in pool if w.unit]
                show([w.unit for w in busy if w.unit])
                wait([c for w in busy for c in (w.conn, w.process.sentinel)], timeout=1.0)
                for index, worker in enumerate(pool):
                    results = worker.collect() if worker.unit else None
                    if results is None:
                        continue
                    if not worker.process.is_alive():
                        worker.stop()
                        pool[index] = start(worker.device)
                    finish(results)
        finally:
            for worker in pool:
                worker.stop()
