"""Runs one work unit (a job, or a stack of jobs that train together) inside a worker process:
data -> method -> scores -> metric rows. Exceptions become failed results, never crashes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from fairbench import predictions
from fairbench.artifacts import ArtifactCache
from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.methods.base import Outcome, RunContext
from fairbench.plan import Job
from fairbench.predictions import Predictions
from fairbench.registry import METHODS
from fairbench.store import TABLE_COLUMNS

_device = "cpu"


@dataclass(frozen=True)
class WorkerSettings:
    data_dir: str | None
    cache_dir: str
    log_dir: str


def init_worker(threads: int, device: str) -> None:
    """Worker start: bound the threads so workers do not oversubscribe the cores, and take the
    worker's device (deterministic kernels on CUDA)."""
    global _device
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    _device = device
    if device.startswith("cuda"):
        deterministic_cuda()


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


def metric_rows(data: TaskData, outcome: Outcome) -> tuple[list[tuple[str, str, float, dict]], Predictions]:
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


def failed_results(unit: list[Job], error: str, device: str) -> list[dict[str, Any]]:
    """One failed result per job of a unit that never reported (its worker died)."""
    now = time.time()
    return [{"job": job, "status": "failed", "error": error, "rows": [], "info": {}, "started": now, "finished": now,
             "duration": 0.0, "device": device, "host": platform.node()} for job in unit]  # fmt: skip


def run_unit_detached(unit: list[Job], settings: WorkerSettings, threads: int, device: str) -> list[dict[str, Any]]:
    """`run_unit` on a machine that may share no disk with the driver (Ray, SLURM): the logs are
    written to a temporary folder and come back as text in each result's `log`, for the driver
    to write. `device` auto (or cuda) is resolved here, on the node: the scheduler has set
    CUDA_VISIBLE_DEVICES to the GPUs it gave the task."""
    import torch

    if device in ("auto", "cuda"):
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    init_worker(threads, device)
    with tempfile.TemporaryDirectory(prefix="fairbench-logs-") as folder:
        results = run_unit(unit, replace(settings, log_dir=folder))
        for result in results:
            log = Path(folder) / f"{result['job'].job_id}.log"
            result["log"] = log.read_text() if log.exists() else ""
    return results


def run_unit(unit: list[Job], settings: WorkerSettings) -> list[dict[str, Any]]:
    """Run the unit; one result dict per job (status, rows, info, timings, error)."""
    log_dir = Path(settings.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    logger, handlers = _job_logger(unit, log_dir)
    first = unit[0]
    started = time.time()
    base = {"device": _device, "host": platform.node(), "started": started}
    try:
        logger.info(
            "unit of %d job(s): %s %s seed=%d split_seed=%d on %s",
            len(unit),
            first.label,
            first.experiment,
            first.seed,
            first.split_seed,
            _device,
        )
        data = _task(first.dataset, json.dumps(first.options, sort_keys=True), settings.data_dir, first.protocol,
                     first.target, first.sensitive, first.split_seed, first.bias)  # fmt: skip
        ctx = RunContext(_device, first.seed, ArtifactCache(Path(settings.cache_dir)), logger, log_dir)
        cls = METHODS.get(first.method)
        if len(unit) == 1:
            outcomes = [cls(first.params).run(data, ctx)]
        else:
            outcomes = cls.run_stacked([job.params for job in unit], data, ctx)
        finished = time.time()
        results = []
        for job, outcome in zip(unit, outcomes):
            check_tags(job.method, outcome)
            rows, kept = metric_rows(data, outcome)
            results.append({**base, "job": job, "status": "done", "error": None, "rows": rows, "info": outcome.info,
                            "finished": finished, "duration": (finished - started) / len(unit),
                            "predictions": kept})  # fmt: skip
        logger.info("done in %.1fs", finished - started)
        return results
    except Exception as error:  # a failing job must not stop the suite
        logger.error("failed:\n%s", traceback.format_exc())
        finished = time.time()
        message = f"{type(error).__name__}: {error}"
        return [{**base, "job": job, "status": "failed", "error": message, "rows": [], "info": {},
                 "finished": finished, "duration": finished - started} for job in unit]  # fmt: skip
    finally:
        for handler in handlers:
            with contextlib.suppress(OSError):  # a full disk loses the log's tail, not the run
                handler.close()
            logger.removeHandler(handler)
