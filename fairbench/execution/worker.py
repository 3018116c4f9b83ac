"""Runs one work unit (a job, or a stack of jobs that train together) inside a worker process:
data -> method -> scores -> metric rows. Exceptions become failed results, never crashes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from fairbench import predictions
from fairbench.artifacts import ArtifactCache
from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.execution.devices import resolve_device
from fairbench.execution.result import JobResult, MetricRow, failed_results
from fairbench.methods.base import Outcome, RunContext
from fairbench.plan import Job
from fairbench.predictions import Predictions
from fairbench.registry import METHODS
from fairbench.store import TABLE_COLUMNS
from fairbench.train import seed_everything


@dataclass(frozen=True)
class WorkerSettings:
    data_dir: str | None
    cache_dir: str
    log_dir: str
    compile: bool = False  # the suite's `compile:` (fairbench.train.Arithmetic.compiled)


def init_worker(threads: int, device: str) -> str:
    """Worker start: bound the threads so workers do not oversubscribe the cores, and resolve the
    worker's device (deterministic kernels on CUDA); returns it, for every `run_unit` call."""
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    device = resolve_device(device)
    if device.startswith("cuda"):
        deterministic_cuda()
    return device


def deterministic_cuda() -> None:
    """Same suite + seed -> same numbers on a GPU too: cuBLAS and cuDNN restricted to
    deterministic kernels (slower for some; see the README). An operation with no deterministic
    CUDA kernel (e.g. the backward of ResNet's adaptive average pooling) warns rather than
    failing the job."""
    import torch

    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # read when cuBLAS starts, i.e. later
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@lru_cache(maxsize=8)
def _task(
    dataset: str,
    options: str,
    data_dir: str | None,
    protocol: str,
    target: str,
    sensitive: str,
    seed: int,
    bias: str | None,
) -> TaskData:
    return build_task(
        open_dataset(dataset, data_dir and Path(data_dir), json.loads(options)), protocol, target, sensitive, seed, bias
    )


def _job_logger(unit: list[Job], log_dir: Path) -> tuple[logging.Logger, list[logging.Handler]]:
    logger = logging.getLogger(f"fairbench.job.{unit[0].job_id}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handlers: list[logging.Handler] = []
    for job in unit:  # a stacked unit writes its log into every member's file
        handler = logging.FileHandler(log_dir / f"{job.job_id}.log", mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        handlers.append(handler)
    return logger, handlers


def metric_rows(data: TaskData, outcome: Outcome) -> tuple[list[MetricRow], Predictions]:
    """Rows (split, metric, value, tags): framework metrics from the kept (float32) scores, then the
    method's own; and the kept predictions they were computed from."""
    kept = predictions.from_outcome(data, outcome.scores)
    features = {split: predictions.task_features(data, part.rows) for split, part in kept.items()}
    rows = predictions.metric_rows(kept, features)
    rows.extend((r.split, r.metric, r.value, r.tags) for r in outcome.metrics)
    return rows, kept


def check_tags(method: str, outcome: Outcome) -> None:
    """A method's metric tags become table columns: one named like a column of the results
    table would make export and report fail for every job, so it fails this job instead."""
    for row in outcome.metrics:
        for tag in row.tags:
            if tag in TABLE_COLUMNS or tag.startswith("param_") or tag == predictions.ATTRIBUTE_TAG:
                raise ValueError(
                    f"method '{method}' tags metric '{row.metric}' with '{tag}', a column of the results table "
                    f"(or the framework's per-attribute tag); rename the tag"
                )


def run_unit_detached(unit: list[Job], settings: WorkerSettings, threads: int, device: str) -> list[JobResult]:
    """`run_unit` on a machine that may share no disk with the driver (a cluster's launcher): the
    logs are written to a temporary folder and come back as text in each result's `log`, for the
    driver to write. `device` is resolved here, on the node (`auto`: the GPU the scheduler gave
    the task through CUDA_VISIBLE_DEVICES, if any)."""
    device = init_worker(threads, device)
    with tempfile.TemporaryDirectory(prefix="fairbench-logs-") as folder:
        results = run_unit(unit, replace(settings, log_dir=folder), device)
        logs = [Path(folder) / f"{result.job.job_id}.log" for result in results]
        return [replace(result, log=log.read_text() if log.exists() else "") for result, log in zip(results, logs)]


def run_unit(unit: list[Job], settings: WorkerSettings, device: str) -> list[JobResult]:
    """Run the unit on `device` (concrete: see `init_worker`); one result per job."""
    log_dir = Path(settings.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    logger, handlers = _job_logger(unit, log_dir)
    first = unit[0]
    started = time.time()
    try:
        logger.info(
            "unit of %d job(s): %s %s seed=%s split_seed=%s on %s%s",
            len(unit),
            first.label,
            first.experiment,
            ",".join(sorted({str(job.seed) for job in unit}, key=int)),
            ",".join(sorted({str(job.split_seed) for job in unit}, key=int)),
            device,
            ", steps compiled" if settings.compile else "",
        )
        data = [
            _task(
                job.dataset,
                json.dumps(job.options, sort_keys=True),
                settings.data_dir,
                job.protocol,
                job.target,
                job.sensitive,
                job.split_seed,
                job.bias,
            )
            for job in unit
        ]
        cache = ArtifactCache(Path(settings.cache_dir))
        ctxs = [RunContext(device, job.seed, cache, logger, log_dir, job.precision, settings.compile) for job in unit]
        if settings.compile:
            import torch

            # a unit's networks are its own: compiled code of earlier units would only be guarded out
            torch.compiler.reset()
        # The framework seeds every job, whatever ran before it in this worker; the engine seeds
        # again from the same seed when a training starts.
        seed_everything(first.seed)
        cls = METHODS.get(first.method)
        if len(unit) == 1:
            outcomes = [cls(first.params).run(data[0], ctxs[0])]
        else:
            outcomes = cls.run_stacked([job.params for job in unit], data, ctxs)
        finished = time.time()
        results = []
        for job, task, outcome in zip(unit, data, outcomes, strict=True):
            check_tags(job.method, outcome)
            rows, kept = metric_rows(task, outcome)
            results.append(
                JobResult(
                    job=job,
                    status="done",
                    rows=rows,
                    info=outcome.info,
                    started=started,
                    finished=finished,
                    duration=(finished - started) / len(unit),
                    device=device,
                    predictions=kept,
                )
            )
        logger.info("done in %.1fs", finished - started)
        return results
    except Exception as error:  # a failing job must not stop the suite
        logger.error("failed:\n%s", traceback.format_exc())
        return failed_results(unit, f"{type(error).__name__}: {error}", device, started)
    finally:
        for handler in handlers:
            with contextlib.suppress(OSError):  # a full disk loses the log's tail, not the run
                handler.close()
            logger.removeHandler(handler)
