"""Executors: they run work units (lists of jobs) and hand results back to the caller.

`local` (worker processes on this machine, one device each), `ray` (tasks on a Ray cluster) and
`slurm` (a submitit job array). Every one calls `on_result` in the driver process as each job
finishes, so the driver alone writes the results store: resuming is rerunning the command.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from fairbench.errors import FairbenchError
from fairbench.execution.worker import WorkerSettings
from fairbench.plan import Job

EXECUTORS = ("local", "ray", "slurm")


@dataclass(frozen=True)
class Execution:
    """How to run the units.

    `devices` (local only) lists one device per GPU, each running up to `jobs_per_device` jobs at
    once; without it, `workers` processes share `device`. On Ray, `jobs_per_device` sets each
    task's GPU share (1/K); `workers` sizes a local Ray instance (`workers` x `threads` CPUs; every
    core when None; not allowed with `address`); on SLURM it caps the array tasks running at once.
    `slurm` holds the suite's `execution.slurm`.
    """

    executor: str = "local"
    workers: int | None = None
    device: str = "auto"
    devices: tuple[str, ...] | None = None
    jobs_per_device: int = 1
    threads: int | None = None
    address: str | None = None
    retries: int = 1
    slurm: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Options that make no sense together are an error rather than one silently winning."""
        if self.executor not in EXECUTORS:
            raise FairbenchError(f"--executor '{self.executor}': use one of {', '.join(EXECUTORS)}")
        if self.devices is not None:
            if self.executor != "local":
                raise FairbenchError(f"--devices is for the local executor; {self.executor} places jobs on the GPUs "
                                     f"it manages: use --device cuda (and --jobs-per-device)")  # fmt: skip
            if self.device != "auto":
                raise FairbenchError("--devices and --device both given: --devices 0,1 (or all) alone picks the GPUs")
            if self.workers is not None:
                raise FairbenchError("--devices and --workers both given: with --devices the workers are "
                                     "the devices times --jobs-per-device; leave out --workers")  # fmt: skip
        elif self.executor == "local" and self.jobs_per_device != 1:
            raise FairbenchError("--jobs-per-device needs --devices (the GPUs to share), e.g. --devices all")
        if self.executor == "slurm" and self.jobs_per_device != 1:
            raise FairbenchError("--jobs-per-device: SLURM gives each array task its own GPUs; set "
                                 "execution.slurm.gpus instead")  # fmt: skip
        if self.address is not None and self.executor != "ray":
            raise FairbenchError("--address is the address of a Ray cluster: add --executor ray")
        if self.executor != "local":  # missing package: fail before anything is written
            importlib.import_module(f"fairbench.execution.{self.executor}").require()
        if self.address is not None and self.workers is not None:
            raise FairbenchError("--workers sizes a local Ray instance; with --address the cluster's resources "
                                 "decide: leave out --workers")  # fmt: skip

    def slots(self) -> list[str]:
        """Local executor: one device per worker process."""
        from fairbench.execution.local import resolve_devices

        if self.devices is not None:
            return [device for device in self.devices for _ in range(self.jobs_per_device)]
        return resolve_devices(self.device, self.workers or 1)

    def planning_device(self) -> str:
        """The device the plan is made for (whether sweep members stack): a local worker's; on a
        cluster, --device as given, `auto` resolved on this (driver) machine."""
        if self.executor == "local":
            return self.slots()[0]
        if self.device == "auto":
            from fairbench.execution.local import resolve_devices

            return resolve_devices("auto", 1)[0]
        return self.device

    def threads_per_worker(self, cpus: int | None = None) -> int:
        """--threads, else: with --devices the cores shared over the slots (GPU workers feed their
        GPU from the CPU), else 1 (small CPU nets run fastest single-threaded; see the README)."""
        if self.threads is not None:
            return self.threads
        if self.devices is not None:
            return max(1, (cpus or os.cpu_count() or 1) // len(self.slots()))
        return 1

    def describe(self) -> str:
        if self.executor == "local":
            slots = self.slots()
            where = f" on {', '.join(sorted(set(slots)))}" if self.devices is not None else ""
            return f"{len(slots)} worker(s){where}"
        if self.executor == "ray":
            return f"ray at {self.address}" if self.address else "a local ray instance"
        return "a slurm job array"


def parse_devices(spec: str, visible: int | None = None) -> tuple[str, ...]:
    """`--devices`: `all` or comma-separated CUDA indices -> ('cuda:0', ...). `visible` is the
    number of GPUs (torch's count when None; given in tests, which have no GPU)."""
    if visible is None:
        import torch

        visible = torch.cuda.device_count()
    if spec == "all":
        if not visible:
            raise FairbenchError("--devices all: no CUDA device is visible; use --device cpu")
        return tuple(f"cuda:{i}" for i in range(visible))
    parts = [part.strip() for part in spec.split(",")]
    if not all(part.isdigit() for part in parts) or len(set(parts)) != len(parts):
        raise FairbenchError(f"--devices '{spec}': use distinct CUDA indices such as 0,1,2,3, or all")
    absent = [part for part in parts if int(part) >= visible]
    if absent:
        raise FairbenchError(f"--devices '{spec}': {visible} CUDA device(s) visible, no index {', '.join(absent)}")
    return tuple(f"cuda:{part}" for part in parts)


def execute(
    units: list[list[Job]],
    settings: WorkerSettings,
    execution: Execution,
    on_result: Callable[[dict[str, Any]], None],
    console: Console,
) -> None:
    """Run every unit with the chosen executor; `on_result` is called here as each job finishes."""
    if execution.executor == "local":
        from fairbench.execution.local import execute as local

        slots = execution.slots()
        local(units, settings, len(slots), slots, on_result, console, execution.threads_per_worker())
        return
    module = importlib.import_module(f"fairbench.execution.{execution.executor}")
    module.execute(units, settings, execution, on_result, console)
