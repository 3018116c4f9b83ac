"""`fairbench rescore`: recompute every framework metric of every finished job from its kept
predictions (no training), write them to the store and re-export the tables.

Rows a method reports itself (DVGE's tagged `sens_acc`) are kept as they are. Labels and groups
come from the predictions files; the dataset is read only for tabular tasks, whose input
features `consistency` needs, and its labels are checked against the kept ones on the way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fairbench import metrics, predictions
from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.errors import FairbenchError
from fairbench.store import Store, load_jobs


def _task(job: Any, data_dir: Path | None, cache: dict[tuple, TaskData | None]) -> TaskData | None:
    """The job's task where metrics need its input features (tabular); None otherwise."""
    bias = job.bias if isinstance(job.bias, str) else None  # NULL in the store: the dataset's own
    key = (job.dataset, job.options, job.protocol, job.target, job.sensitive, int(job.split_seed), bias)
    if key not in cache:
        needs_features = any("features" in m.needs for m in metrics.registered().values())
        try:
            dataset = open_dataset(job.dataset, data_dir, json.loads(job.options or "{}"))
            cache[key] = (
                build_task(dataset, job.protocol, job.target, job.sensitive, int(job.split_seed), bias)
                if needs_features and dataset.kind == "tabular"
                else None
            )
        except (FairbenchError, OSError) as error:
            raise FairbenchError(
                f"rescore needs dataset '{job.dataset}' (its input features, for consistency) and cannot "
                f"read it: {error}"
            ) from None
    return cache[key]


def rescore_job(job: Any, results: Path, data_dir: Path | None, cache: dict) -> list[tuple[str, str, float, dict]]:
    """The framework metric rows of one finished job, from its kept predictions."""
    kept = predictions.load(results, job.job_id, job.finished)
    return predictions.metric_rows(kept, split_features(job, kept, data_dir, cache))


def split_features(
    job: Any, kept: predictions.Predictions, data_dir: Path | None, cache: dict
) -> dict[str, np.ndarray | None]:
    """The input features `consistency` needs for each kept split of `job` (a store row), for
    tabular tasks; checks on the way that the dataset still holds the kept labels."""
    data = _task(job, data_dir, cache)
    features: dict[str, np.ndarray | None] = {}
    for split, part in kept.items():
        if data is None:
            continue
        if part.rows.max(initial=-1) >= len(data.y) or not np.array_equal(data.y[part.rows], part.y):
            raise FairbenchError(
                f"dataset '{job.dataset}' no longer matches job {job.job_id}'s kept labels ({split} split); "
                f"rerun the suite with --force"
            )
        features[split] = predictions.task_features(data, part.rows)
    return features


def rescore(results: Path, data_dir: Path | None = None) -> dict[str, int]:
    """Rescore one results folder; nothing is written unless every job could be rescored."""
    results = Path(results)
    jobs = load_jobs(results)
    done = jobs[jobs["status"] == "done"]
    cache: dict[tuple, TaskData | None] = {}
    updates = {job.job_id: rescore_job(job, results, data_dir, cache) for job in done.itertuples()}
    framework = {name for name, m in metrics.registered().items() if m.compute is not None}
    store = Store(results)
    try:
        store.replace_untagged(updates, framework)
        store.export()
    finally:
        store.close()
    return {"jobs": len(updates), "rows": sum(map(len, updates.values()))}
