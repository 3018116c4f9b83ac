"""Every finished job's per-row outputs, kept beside the store, and the metric rows computed from them.

One compressed file per job, `<results>/predictions/<job_id>.npz`, holding for each split s
(val, test) the arrays

    s.rows      int64 row ids: the task's split indices into the dataset's attribute table
    s.scores    float32, (n,) = P(y = 1) for a binary target; (n, k) class probabilities for k classes
    s.y, s.group            the rows' labels and sensitive groups
    s.bias, s.aligned       where the dataset defines them

and `finished`, the job's finish time as its store row records it: a file whose time differs
from its row belongs to another run of the job and is refused.

Labels and groups are kept with the scores (a few bytes per row, compressed) so that confidence
intervals need no dataset: image datasets are large and may be gone when a report is made.
Input features are not kept (they are the dataset itself); `consistency` therefore needs the
dataset when it is recomputed.

Scores are kept as float32 and every recorded metric is computed from the float32 array, so
recomputing from the file reproduces the store bit for bit. The built-in methods' scores are
float32 softmax outputs already (nothing is lost); a float64 score is rounded by at most 6e-8
relative, which can flip a hard prediction only for a score within 3e-8 of 0.5.

The file is written (tmp + rename) only after the job's store row is committed, so a failed
rerun never replaces a good file, and a crash between the two leaves a file whose `finished`
no longer matches: detected, never silently used.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairbench import metrics
from fairbench.data.base import TaskData
from fairbench.errors import FairbenchError

FOLDER = "predictions"
SPLITS = ("val", "test")
_OPTIONAL = ("bias", "aligned")


@dataclass
class SplitPredictions:
    """One split's outputs and the labels, groups (and bias flags) they are scored against."""

    rows: np.ndarray
    scores: np.ndarray
    y: np.ndarray
    group: np.ndarray
    bias: np.ndarray | None = None
    aligned: np.ndarray | None = None

    def inputs(self, features: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The metric inputs of these rows (see fairbench.metrics)."""
        return metrics.inputs(self.y, self.scores, self.group, features, self.bias, self.aligned)


Predictions = dict[str, SplitPredictions]


def from_outcome(data: TaskData, scores: dict[str, np.ndarray]) -> Predictions:
    """A method's scores per split, as kept: float32, with the split's row ids and labels."""
    out: Predictions = {}
    for split, values in scores.items():
        rows = np.asarray(data.splits[split], dtype=np.int64)
        values = np.asarray(values, dtype=np.float32)
        if len(values) != len(rows) or values.ndim not in (1, 2):
            raise ValueError(
                f"method returned scores of shape {values.shape} for the {split} split of {len(rows)} rows"
            )
        out[split] = SplitPredictions(
            rows=rows,
            scores=values,
            y=data.y[rows],
            group=data.g[rows],
            bias=None if data.bias is None else data.bias[rows],
            aligned=None if data.aligned is None else data.aligned[rows],
        )
    return out


def task_features(data: TaskData, rows: np.ndarray) -> np.ndarray | None:
    """The inputs `consistency` compares rows on: tabular features without the sensitive columns."""
    keep = [i for i, source in enumerate(data.feature_sources) if source not in data.sensitive_columns]
    return data.x[rows][:, keep] if data.kind == "tabular" and keep else None


def metric_rows(kept: Predictions, features: dict[str, np.ndarray | None]) -> list[tuple[str, str, float, dict]]:
    """Rows (split, metric, value, tags) of every registered metric the kept outputs support."""
    rows = []
    for split, part in kept.items():
        for name, value in metrics.evaluate_inputs(part.inputs(features.get(split))).items():
            rows.append((split, name, value, {}))
    return rows


def path(results: Path, job_id: str) -> Path:
    return Path(results) / FOLDER / f"{job_id}.npz"


def save(results: Path, job_id: str, kept: Predictions, finished: float) -> Path:
    """Write one job's file atomically (tmp + rename): a reader sees the old file or the new one."""
    arrays: dict[str, np.ndarray] = {"finished": np.float64(finished)}
    for split, part in kept.items():
        for field in ("rows", "scores", "y", "group", *_OPTIONAL):
            value = getattr(part, field)
            if value is not None:
                arrays[f"{split}.{field}"] = value
    target = path(results, job_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(staging, **arrays)
    staging.replace(target)
    return target


def load(results: Path, job_id: str, finished: float | None = None) -> Predictions:
    """One job's kept outputs; with `finished`, refuse a file from another run of the job."""
    source = path(results, job_id)
    if not source.exists():
        raise FairbenchError(
            f"{source} not found: job {job_id} ran before fairbench kept predictions (or the file was "
            f"removed); rerun it with 'fairbench run SUITE --force'"
        )
    try:
        with np.load(source, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise FairbenchError(f"{source} is unreadable ({error}); rerun job {job_id} with --force") from None
    if finished is not None and float(arrays["finished"]) != float(finished):
        raise FairbenchError(
            f"{source} belongs to another run of job {job_id} than its store row (an interrupted write?); "
            f"rerun it with 'fairbench run SUITE --force'"
        )
    out: Predictions = {}
    for split in SPLITS:
        if f"{split}.rows" in arrays:
            fields = {f: arrays.get(f"{split}.{f}") for f in ("rows", "scores", "y", "group", *_OPTIONAL)}
            out[split] = SplitPredictions(**fields)
    return out
