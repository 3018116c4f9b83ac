"""The method contract: declared hyperparameters, budgets, and one `run` per job.

A method receives a `TaskData` and a `RunContext` and returns scores for the val and test rows:
P(y = 1) per row for a binary target, (n, k) class probabilities for `data.n_classes` = k > 2;
the framework computes the metrics. Everything else (data, executors, the store)
is someone else's job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from fairbench.artifacts import ArtifactCache
from fairbench.bounds import Bound, coerce
from fairbench.data.base import TaskData, TaskShape
from fairbench.errors import FairbenchError, did_you_mean
from fairbench.table_spec import ReportTable
from fairbench.train.seeding import stream


@dataclass(frozen=True)
class HParam:
    """A hyperparameter: default (its type is the parameter's type), help, optional choices and
    numeric bounds (see fairbench.bounds; every number must be finite)."""

    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    # Where the default comes from: "paper", "released code" or "our choice" (None: see the help).
    source: str | None = None
    bound: Bound | None = None

    def coerce(self, value: Any, where: str) -> Any:
        """Return `value` as this parameter's type, or raise a one-line error."""
        return coerce(self.default, value, where, self.choices, self.bound)


@dataclass(frozen=True)
class Paper:
    """The publication a method implements, for `fairbench ls methods NAME` and docs/methods.md."""

    authors: str
    title: str
    venue: str
    year: int


@dataclass
class MetricRow:
    """A metric a method reports itself, with tags that become table columns."""

    split: str
    metric: str
    value: float
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a run returns: scores per split (aligned with `data.splits[split]`), extra metric
    rows, and free-form info (e.g. the selected epoch) kept in the job's record."""

    scores: dict[str, np.ndarray]
    metrics: list[MetricRow] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Work:
    """Part of what one job computes, for time estimates from benchmark rates before anything
    ran (fairbench.execution.estimates): `amount` units of the measured workload `workload`,
    e.g. 1e6 iterations of "encoder:factor_vae@3x64x64" or 4.5e6 rows of
    "train:resnet18@3x32x32". `shared`: a key of work the run does once for every job of the
    same experiment and seed that declares it (a cached encoder). `stackable`: members of a
    stacked sweep do it together, at the rate "<workload> stacked" (per member)."""

    workload: str
    amount: float
    shared: str = ""
    stackable: bool = False


@dataclass
class RunContext:
    """What the framework hands a job: its device, its seed, the artifact cache, its log."""

    device: str
    seed: int
    cache: ArtifactCache
    log: logging.Logger
    workdir: Path
    # the arithmetic of training and inference (fairbench.train.PRECISIONS); fp32 on a CPU
    precision: str = "fp32"
    # whether the batched training steps are compiled (fairbench.train.Arithmetic.compiled)
    compile: bool = False

    def stream(self, *labels: Any) -> torch.Generator:
        """The job's torch random stream named `labels` (the same for a member alone or stacked)."""
        return stream(self.seed, *labels)

    def numpy_generator(self) -> np.random.Generator:
        """The job's NumPy random generator, for draws outside training (e.g. a resampling)."""
        return np.random.default_rng(self.seed)


class Method:
    """Base class of every method: set the class attributes, implement `run`."""

    name: ClassVar[str]
    description: ClassVar[str]
    # The method's publication (see fairbench.methods.papers); None for plain baselines (ERM).
    paper: ClassVar[Paper | None] = None
    # Where defaults come from, for parameters built by a family's shared declarations (whose
    # HParam cannot carry one method's `source`): parameter -> paper | released code | our choice.
    defaults_from: ClassVar[dict[str, str]] = {}
    hparams: ClassVar[dict[str, HParam]] = {}
    # Named training budgets: parameter overrides applied under `budget: <name>` in a suite.
    budgets: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}}
    # Parameters whose values may train together in one stacked run (`run_stacked`).
    stackable: ClassVar[tuple[str, ...]] = ()
    # Whether jobs of different seeds may train together too (one stack over seeds x grid).
    stacks_seeds: ClassVar[bool] = False
    # Part of every job's id: bump it when a fix changes the numbers (the method's own code or
    # an artifact it builds), so finished jobs rerun instead of being reused.
    version: ClassVar[int] = 1
    # Report tables this method's tagged metric rows feed (`fairbench report --ablation`).
    report_tables: ClassVar[tuple[ReportTable, ...]] = ()

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def run(self, data: TaskData, ctx: RunContext) -> Outcome:
        raise NotImplementedError

    def work(self, shape: TaskShape) -> list[Work] | None:
        """What one job of these parameters computes on a task of `shape`, in workloads a
        benchmark measures (bench/bench_gpu.py --save-rates); None: unknown (no estimate)."""
        return None

    @classmethod
    def stacks(cls, params: dict[str, Any]) -> bool:
        """Whether a job of these parameters may train in a stack with others (`run_stacked`)."""
        return bool(cls.stackable) or cls.stacks_seeds

    @classmethod
    def stacking_text(cls) -> str:
        """What trains together in a stack, for the method's documentation."""
        parts = [*(["seeds"] if cls.stacks_seeds else []), *(f"`{p}` values" for p in cls.stackable)]
        together = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 2 else parts)
        return f"{together} train together as one batched model."

    @classmethod
    def stack_signature(cls, params: dict[str, Any]) -> dict[str, Any]:
        """What members of one stack share: the parameters but the `stackable` ones."""
        return {k: v for k, v in params.items() if k not in cls.stackable}

    @classmethod
    def run_stacked(cls, params: list[dict[str, Any]], data: list[TaskData], ctxs: list[RunContext]) -> list[Outcome]:
        """Run several members, each with its parameters, its task data and its job context;
        they differ only in `stackable` parameters (and their seeds where `stacks_seeds`). By
        default one by one."""
        return [cls(p).run(d, ctx) for p, d, ctx in zip(params, data, ctxs, strict=True)]

    @classmethod
    def resolve(cls, params: dict[str, Any], budget: str, where: str = "") -> dict[str, Any]:
        """Defaults, then the budget's overrides (none if the method lacks that budget), then
        `params`; checked and typed."""
        resolved = {name: hp.default for name, hp in cls.hparams.items()}
        resolved |= cls.budgets.get(budget, {})
        for name, value in params.items():
            if name not in cls.hparams:
                raise FairbenchError(
                    f"{where}method '{cls.name}' has no parameter '{name}'{did_you_mean(name, cls.hparams)}"
                )
            resolved[name] = cls.hparams[name].coerce(value, f"{where}{name}")
        return resolved


def check_stack(cls: type[Method], params: list[dict[str, Any]], ctxs: list[RunContext]) -> None:
    """Refuse members that may not train together: parameters other than `cls.stackable` that
    differ, or seeds that differ where the method does not stack seeds."""
    fixed = [cls.stack_signature(p) for p in params]
    if any(f != fixed[0] for f in fixed):
        raise FairbenchError(f"run_stacked: members of '{cls.name}' differ in parameters that cannot train together")
    if not cls.stacks_seeds and len({ctx.seed for ctx in ctxs}) > 1:
        raise FairbenchError(f"run_stacked: '{cls.name}' trains members of one seed together, not several seeds")
