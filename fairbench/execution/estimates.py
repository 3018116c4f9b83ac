"""How long jobs will take before they run: the finished jobs of the results folder first, else a
benchmark's measured rates times the work each method declares (`Method.work`).

The rates file is what `python bench/bench_gpu.py --save-rates` writes on a machine: its name,
its device and, per workload, a rate in the workload's unit per second (encoder iterations,
training rows, MLP steps). `fairbench run --dry-run` reads `--rates FILE`, else $FAIRBENCH_RATES,
else `rates.json` in the cache folder. A job whose dataset or method declares no work, or needs a
workload the file has no rate for, gets no estimate from rates (and the dry run says why).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fairbench.artifacts import default_cache_dir
from fairbench.data.base import open_dataset
from fairbench.errors import FairbenchError
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
    measured: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M"))
    host: str = field(default_factory=platform.node)

    def save(self, path: Path) -> None:
        """Write atomically (tmp + rename), merging into the rates already there for this device:
        a partial benchmark run refreshes what it measured and keeps the rest."""
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = load_rates(path) if path.exists() else None
        merged = {**kept.rates, **self.rates} if kept and kept.device == self.device else dict(self.rates)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self) | {"rates": merged}, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)

    def describe(self) -> str:
        return f"{self.machine} ({self.device}), measured {self.measured}"


def load_rates(path: Path) -> Rates:
    """The rates file at `path`; a clear error when it is not one."""
    try:
        raw = json.loads(Path(path).read_text())
        rates = {str(name): float(value) for name, value in raw["rates"].items()}
        if any(value <= 0 for value in rates.values()):
            raise ValueError("a rate is not positive")
        measured, host = str(raw.get("measured", "")), str(raw.get("host", ""))
        return Rates(str(raw["machine"]), str(raw["device"]), rates, measured, host)
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
    first time it is asked. `stacked`: job ids that train in a stacked unit (their `stackable`
    work runs at the rate "<workload> stacked" where the file has one)."""

    def __init__(self, rates: Rates, stacked: set[str] = frozenset()) -> None:
        self.rates = rates
        self.stacked = stacked
        self.answers: dict[str, float | None] = {}
        self.counted: set[tuple[str, ...]] = set()
        # Why jobs got no estimate: a method or dataset without declared work, or a workload
        # without a rate.
        self.missing: set[str] = set()

    def __call__(self, job: Job) -> float | None:
        if job.job_id not in self.answers:
            self.answers[job.job_id] = self._seconds(job)
        return self.answers[job.job_id]

    def _seconds(self, job: Job) -> float | None:
        shape = open_dataset(job.dataset, None, job.options).shape(job.protocol)
        if shape is None:
            self.missing.add(f"dataset {job.dataset} (no declared size)")
            return None
        work = METHODS.get(job.method)(job.params).work(shape)
        if work is None:
            self.missing.add(f"method {job.method} (no declared work)")
            return None
        seconds, counted = 0.0, []
        for part in work:
            key = (job.experiment, str(job.split_seed), str(job.seed), part.shared)
            if part.shared and key in self.counted:
                continue
            rate = self._rate(part.workload, part.stackable and job.job_id in self.stacked, job.precision)
            if rate is None:
                self.missing.add(f"workload {part.workload} (no rate)")
                return None
            seconds += part.amount / rate
            if part.shared:
                counted.append(key)
        self.counted.update(counted)
        return seconds

    def _rate(self, workload: str, stacked: bool, precision: str) -> float | None:
        """The most specific measured rate: "<workload>[ stacked][ <precision>]", stacked first,
        the job's precision before fp32 (an fp32 rate prices a tf32 or bf16 job from above)."""
        forms = [f"{workload} stacked", workload] if stacked else [workload]
        names = [n for form in forms for n in ([f"{form} {precision}"] if precision != "fp32" else []) + [form]]
        return next((self.rates.rates[name] for name in names if name in self.rates.rates), None)


class PlanEstimator:
    """The results folder's history where it has the job's method, else `rates` (when given);
    counts the jobs each answered, for the dry run's notes."""

    def __init__(self, results: Path, rates: Rates | None = None, stacked: set[str] = frozenset()) -> None:
        self.history = history_estimator(results)
        self.rates = RateEstimator(rates, stacked) if rates is not None else None
        self.from_rates: set[str] = set()

    def __call__(self, job: Job) -> float | None:
        seconds = self.history(job)
        if seconds is None and self.rates is not None:
            seconds = self.rates(job)
            if seconds is not None:
                self.from_rates.add(job.job_id)
        return seconds
