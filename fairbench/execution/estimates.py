"""How long jobs will take before they run: the finished jobs of the results folder first, else a
benchmark's measured rates times the work each method declares (`Method.work`).

The rates file is what `python bench/bench_gpu.py --save-rates` writes on a machine: its name,
its device and, per workload, a rate in the workload's unit per second (encoder iterations,
training rows, MLP steps) of one model alone and, as "<workload> stacked", per member of a stack
of the size its `members` records. A stack of k members is priced between the two: its time per
step is taken to grow along the line from one member's to the measured stack's, so that a small
stack is not priced at a large one's rate per member; a stack as large as the measured one or
larger is priced at the measured one's rate.

`fairbench run --dry-run` reads `--rates FILE`, else $FAIRBENCH_RATES, else `rates.json` in the
cache folder. A job whose dataset or method declares no work, or needs a workload the file has no
rate for, gets no estimate from rates (and the dry run says why).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fairbench.artifacts import default_cache_dir
from fairbench.data.base import open_dataset
from fairbench.errors import FairbenchError
from fairbench.methods.base import Work
from fairbench.plan import Job
from fairbench.registry import METHODS
from fairbench.store import STORE_FILE, load_jobs

Estimator = Callable[[Job], "float | None"]
RATES_ENV = "FAIRBENCH_RATES"


def default_rates_path() -> Path:
    """$FAIRBENCH_RATES, else rates.json beside the artifact cache (~/.cache/fairbench)."""
    env = os.environ.get(RATES_ENV)
    return Path(env).expanduser() if env else default_cache_dir().parent / "rates.json"


@dataclass
class Rates:
    """Measured rates of one machine: workload -> units per second."""

    machine: str
    device: str
    rates: dict[str, float]
    # workload -> the members of the stack its "<workload> stacked" rate was measured with
    members: dict[str, int] = field(default_factory=dict)
    measured: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M"))
    host: str = field(default_factory=platform.node)

    def save(self, path: Path) -> None:
        """Write atomically (tmp + rename), merging into the rates already there for this device:
        a partial benchmark run refreshes what it measured and keeps the rest."""
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = load_rates(path) if path.exists() else None
        same = kept is not None and kept.device == self.device
        merged = {"rates": {**kept.rates, **self.rates}, "members": {**kept.members, **self.members}} if same else {}
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self) | merged, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)

    def describe(self) -> str:
        return f"{self.machine} ({self.device}), measured {self.measured}"


def load_rates(path: Path) -> Rates:
    """The rates file at `path`; a clear error when it is not one."""
    try:
        raw = json.loads(Path(path).read_text())
        rates = {str(name): float(value) for name, value in raw["rates"].items()}
        members = {str(name): int(value) for name, value in raw.get("members", {}).items()}
        if any(value <= 0 for value in rates.values()) or any(value < 2 for value in members.values()):
            raise ValueError("a rate is not positive or a stack has fewer than 2 members")
        measured, host = str(raw.get("measured", "")), str(raw.get("host", ""))
        return Rates(str(raw["machine"]), str(raw["device"]), rates, members, measured, host)
    except FileNotFoundError:
        raise FairbenchError(
            f"rates file {path} not found; write one with: python bench/bench_gpu.py --save-rates"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise FairbenchError(
            f"rates file {path} is not one bench/bench_gpu.py wrote ({type(error).__name__}: {error}); "
            f"write it again with --save-rates"
        ) from None


def history_estimator(results: Path) -> Estimator:
    """Estimated seconds of a job from the finished jobs in `results`: the median duration of
    its method on its dataset, else of its method on any dataset; None without any. Post-processed
    variants (`fairbench postprocess`) carry their source's method but train nothing: left out."""
    by_dataset: dict[tuple[str, str], float] = {}
    by_method: dict[str, float] = {}
    if (results / STORE_FILE).exists():
        jobs = load_jobs(results)
        trained = ~jobs["info"].fillna("").str.contains('"postprocessed_from"', regex=False)
        finished = jobs[(jobs["status"] == "done") & jobs["duration"].notna() & trained]
        by_dataset = finished.groupby(["method", "dataset"])["duration"].median().to_dict()
        by_method = finished.groupby("method")["duration"].median().to_dict()
    return lambda job: by_dataset.get((job.method, job.dataset), by_method.get(job.method))


class RateEstimator:
    """Seconds of a job from a machine's rates and the work its method declares on its task's
    shape. Work a method marks `shared` (a cached encoder) is counted for the first job of the
    same experiment and seed that asks, and free for the rest, so each job's answer is fixed the
    first time it is asked. `units`: the plan's work units; the `stackable` work of a unit of
    several jobs is priced as one stack of as many members as the unit holds of that work (its
    distinct encoders for shared work, else its jobs)."""

    def __init__(self, rates: Rates, units: Sequence[Sequence[Job]] = ()) -> None:
        self.rates = rates
        self.unit_of = {job.job_id: (i, unit) for i, unit in enumerate(units) if len(unit) > 1 for job in unit}
        self.answers: dict[str, float | None] = {}
        self.counted: set[tuple[str, ...]] = set()
        self.works: dict[str, list[Work] | None] = {}
        self.sizes: dict[tuple[int, str], int] = {}
        # Why jobs got no estimate: a method or dataset without declared work, or a workload
        # without a rate.
        self.missing: set[str] = set()

    def __call__(self, job: Job) -> float | None:
        if job.job_id not in self.answers:
            self.answers[job.job_id] = self._seconds(job)
        return self.answers[job.job_id]

    def _seconds(self, job: Job) -> float | None:
        work = self._work(job)
        if work is None:
            return None
        seconds, counted = 0.0, []
        for part in work:
            key = _instance(job, part)
            if part.shared and key in self.counted:
                continue
            per_unit = self._seconds_per_unit(part.workload, self._stack_size(job, part), job.precision)
            if per_unit is None:
                self.missing.add(f"workload {part.workload} (no rate)")
                return None
            seconds += part.amount * per_unit
            if part.shared:
                counted.append(key)
        self.counted.update(counted)
        return seconds

    def _work(self, job: Job) -> list[Work] | None:
        """What the job's method declares on its task's shape (None, and why noted, where nothing)."""
        if job.job_id not in self.works:
            shape = open_dataset(job.dataset, None, job.options).shape(job.protocol)
            work = None if shape is None else METHODS.get(job.method)(job.params).work(shape)
            if shape is None:
                self.missing.add(f"dataset {job.dataset} (no declared size)")
            elif work is None:
                self.missing.add(f"method {job.method} (no declared work)")
            self.works[job.job_id] = work
        return self.works[job.job_id]

    def _stack_size(self, job: Job, part: Work) -> int:
        """Members of the stack that does `part` of `job`: 1 unless the job's unit stacks it."""
        if job.job_id not in self.unit_of or not part.stackable:
            return 1
        index, unit = self.unit_of[job.job_id]
        if (index, part.workload) not in self.sizes:
            same = {
                _instance(mate, other)
                for mate in unit
                for other in self._work(mate) or []
                if other.workload == part.workload and other.stackable
            }
            self.sizes[index, part.workload] = len(same)
        return self.sizes[index, part.workload]

    def _seconds_per_unit(self, workload: str, members: int, precision: str) -> float | None:
        """Seconds per unit of `workload` for one member of a stack of `members` (1: alone)."""
        alone = self._rate(workload, precision)
        stacked = self._rate(f"{workload} stacked", precision) if members > 1 else None
        if stacked is None:
            return None if alone is None else 1 / alone
        measured = self.rates.members.get(workload)
        if alone is None or measured is None or members >= measured:
            return 1 / stacked
        # The stack's time per step along the line from one member's to the measured stack's.
        step = 1 / alone + (members - 1) * (measured / stacked - 1 / alone) / (measured - 1)
        return step / members

    def _rate(self, name: str, precision: str) -> float | None:
        """The measured rate "<name>[ <precision>]": the job's precision, else fp32 (an fp32 rate
        prices a tf32 or bf16 job from above)."""
        names = ([f"{name} {precision}"] if precision != "fp32" else []) + [name]
        return next((self.rates.rates[n] for n in names if n in self.rates.rates), None)


def _instance(job: Job, part: Work) -> tuple[str, ...]:
    """Which run of `part` the job's is: one per experiment, split and seed for shared work
    (a cached encoder), the job's own otherwise."""
    return (job.experiment, str(job.split_seed), str(job.seed), part.shared) if part.shared else (job.job_id,)


class PlanEstimator:
    """The results folder's history where it has the job's method, else `rates` (when given);
    counts the jobs each answered, for the dry run's notes."""

    def __init__(self, results: Path, rates: Rates | None = None, units: Sequence[Sequence[Job]] = ()) -> None:
        self.history = history_estimator(results)
        self.rates = RateEstimator(rates, units) if rates is not None else None
        self.from_rates: set[str] = set()

    def __call__(self, job: Job) -> float | None:
        seconds = self.history(job)
        if seconds is None and self.rates is not None:
            seconds = self.rates(job)
            if seconds is not None:
                self.from_rates.add(job.job_id)
        return seconds
