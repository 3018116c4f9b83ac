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
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from rich.console import Console

from fairbench.errors import FairbenchError
from fairbench.execution import Execution
from fairbench.execution.base import refuse_address
from fairbench.execution.devices import resolve_device
from fairbench.execution.progress import JobProgress
from fairbench.execution.result import JobResult, failed_results
from fairbench.execution.worker import WorkerSettings, init_worker, run_unit
from fairbench.plan import Job


class Local:
    """The local executor (see the module's docstring)."""

    description = "worker processes on this machine (--workers, or --devices x --jobs-per-device)"

    def check(self, execution: Execution) -> None:
        refuse_address(execution)
        if execution.devices is None:
            if execution.jobs_per_device != 1:
                raise FairbenchError("--jobs-per-device needs --devices (the GPUs to share), e.g. --devices all")
            return
        if execution.device != "auto":
            raise FairbenchError("--devices and --device both given: --devices 0,1 (or all) alone picks the GPUs")
        if execution.workers is not None:
            raise FairbenchError(
                "--devices and --workers both given: with --devices the workers are "
                "the devices times --jobs-per-device; leave out --workers"
            )

    def describe(self, execution: Execution) -> str:
        devices = slots(execution)
        where = f" on {', '.join(sorted(set(devices)))}" if execution.devices is not None else ""
        return f"{len(devices)} worker(s){where}"

    def planning_device(self, execution: Execution) -> str:
        return slots(execution)[0]

    def execute(
        self,
        units: list[list[Job]],
        settings: WorkerSettings,
        execution: Execution,
        on_result: Callable[[JobResult], None],
        console: Console,
    ) -> None:
        run_workers(units, settings, slots(execution), threads_per_worker(execution), on_result, console)


def slots(execution: Execution) -> list[str]:
    """One concrete device per worker process: each of --devices --jobs-per-device times, else
    --device for each of --workers (`cuda`: the visible GPUs round-robin)."""
    if execution.devices is not None:
        return [device for device in execution.devices for _ in range(execution.jobs_per_device)]
    return [resolve_device(execution.device, index) for index in range(execution.workers or 1)]


def threads_per_worker(execution: Execution, cpus: int | None = None) -> int:
    """--threads, else: with --devices the cores shared over the slots (GPU workers feed their
    GPU from the CPU), else 1 (small CPU nets run fastest single-threaded; see the README)."""
    if execution.threads is not None:
        return execution.threads
    if execution.devices is not None:
        return max(1, (cpus or os.cpu_count() or 1) // len(slots(execution)))
    return 1


def _serve(conn: Connection, settings: WorkerSettings, threads: int, device: str) -> None:
    """A worker process: run each unit it is sent until it is sent None. It ends quietly on
    Ctrl-C (the driver reports it) and when the driver is gone (no one would record its results)."""
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    try:
        device = init_worker(threads, device)
        while (unit := conn.recv()) is not None:
            conn.send(run_unit(unit, settings, device))
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

    def collect(self) -> list[JobResult] | None:
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


def run_workers(
    units: list[list[Job]],
    settings: WorkerSettings,
    devices: list[str],
    threads: int,
    on_result: Callable[[JobResult], None],
    console: Console,
) -> None:
    """Run every unit in one worker per device (in this process when there is one); call
    `on_result` in this process as each job finishes (for the store)."""
    with JobProgress(units, on_result, console, Path(settings.log_dir).parent, len(devices)) as progress:
        show, finish = progress.show, progress.finish

        if len(devices) == 1:
            device = init_worker(threads, devices[0])
            for unit in units:
                show([unit])
                finish(run_unit(unit, settings, device))
            return

        context = multiprocessing.get_context("spawn")

        def start(slot: str) -> _Worker:
            return _Worker(context, settings, threads, slot)

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
