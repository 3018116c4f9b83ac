"""How to run the work units: the options (`Execution`) and the launcher they name.

The launchers (`local`: worker processes on this machine; `ray`; `slurm`; a plugin's) implement
`fairbench.execution.base.Executor` and are looked up in `fairbench.registry.EXECUTORS`. Every
one calls `on_result` in the driver process as each job finishes, so the driver alone writes the
results store: resuming is rerunning the command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fairbench.execution.base import Executor
from fairbench.execution.devices import check_device
from fairbench.registry import EXECUTORS


@dataclass(frozen=True)
class Execution:
    """How to run the units: `executor` names the launcher; the rest are its options.

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
        """An unknown launcher or device, or options the launcher cannot honour, are an error
        rather than silently ignored."""
        check_device(self.device)
        self.launcher().check(self)

    def launcher(self) -> Executor:
        return EXECUTORS.get(self.executor)()

    def planning_device(self) -> str:
        """The device the plan is made for (whether sweep members stack)."""
        return self.launcher().planning_device(self)

    def describe(self) -> str:
        return self.launcher().describe(self)
