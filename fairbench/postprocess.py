"""`fairbench postprocess`: a fairness-constrained variant of every finished job, from its kept
predictions, without retraining.

Each post-processor is fitted on a job's validation scores and applied to its test scores:

- `threshold_optimizer`: fairlearn's `ThresholdOptimizer` (Hardt et al. 2016) around the job's
  scores, maximising accuracy under the rule's constraint; its predictions are randomised
  between two thresholds per group, drawn with the job's seed.
- `group_threshold`: a plain search: one common rate r on a grid of 201 values in [0, 1]; each
  group's threshold selects the top r of its validation rows (`dp`) or of its validation
  positives (`eo`), so every group's rate is r; r is the rate of best validation accuracy.
  Deterministic; a group with no positives on validation (`eo`) keeps the threshold 0.5.

Rules: `dp` equalises the selection rate (fairlearn's "demographic_parity"); `eo` the
true-positive rate (fairlearn's "true_positive_rate_parity": the project's `eo` is that gap).
The groups are the sensitive attribute's values, or, when an experiment gives several, their
intersections (so every attribute's gap is constrained at once).

A variant is stored like any job: its own id (from the source job's id, the post-processor and
the rule), the source's job columns and parameters with the label `<label> + ThresholdOpt (dp)`
(or `GroupThreshold`), provenance in `info` (`postprocessed_from`, the source's finish time),
its kept predictions and every metric, so every report, rescore and interval shows it. Its
scores are its decisions (0 or 1): a threshold rule has no calibrated score. Its validation
metrics are in-sample (fitted there) and serve only to choose among grid points, as any job's.
Running the command again refits every variant (same ids: replaced, never duplicated).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from fairbench import STORE_FORMAT, predictions
from fairbench.errors import FairbenchError
from fairbench.plan import job_hash
from fairbench.predictions import SplitPredictions
from fairbench.provenance import git_revision, versions
from fairbench.rescore import split_features
from fairbench.store import JOB_COLUMNS, STORE_FILE, Store, load_jobs, lock_folder

RULES = ("dp", "eo")
# The label suffix of each post-processor's rows.
POSTPROCESSORS = {"threshold_optimizer": "ThresholdOpt", "group_threshold": "GroupThreshold"}
_FAIRLEARN_CONSTRAINT = {"dp": "demographic_parity", "eo": "true_positive_rate_parity"}
# The common rates `group_threshold` tries.
RATE_GRID = np.linspace(0.0, 1.0, 201)


class KeptScores(ClassifierMixin, BaseEstimator):
    """A finished job's scores as a prefit estimator for fairlearn: `predict(X)` is X's one
    column, P(y = 1) as the job kept it."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> KeptScores:
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)[:, 0]


def threshold_optimizer(val: SplitPredictions, val_groups: np.ndarray, rule: str, seed: int) -> Callable:
    """fairlearn's ThresholdOptimizer fitted on validation; returns scores, groups -> decisions."""
    from fairlearn.postprocessing import ThresholdOptimizer

    scores = val.scores.astype(np.float64)[:, None]
    optimizer = ThresholdOptimizer(
        estimator=KeptScores().fit(scores, val.y),
        constraints=_FAIRLEARN_CONSTRAINT[rule],
        prefit=True,
        predict_method="predict",
    )
    optimizer.fit(scores, val.y, sensitive_features=val_groups)
    return lambda p, groups: optimizer.predict(p[:, None], sensitive_features=groups, random_state=seed)


def _top_threshold(descending: np.ndarray, rate: float) -> float:
    """The threshold that selects the top ceil(rate * n) of scores sorted in descending order
    (inf selects none)."""
    count = int(np.ceil(rate * len(descending) - 1e-9))
    return np.inf if count == 0 else float(descending[count - 1])


def group_thresholds(scores: np.ndarray, y: np.ndarray, groups: np.ndarray, rule: str) -> dict[Any, float]:
    """Per-group thresholds of the common rate with the best accuracy on these (validation) rows;
    `rule` dp ranks each group's rows, eo its positives only."""
    values, index = np.unique(groups, return_inverse=True)
    ranked = [-np.sort(-scores[(index == i) & ((y == 1) if rule == "eo" else True)]) for i in range(len(values))]
    best: tuple[float, np.ndarray] | None = None
    for rate in RATE_GRID:
        thresholds = np.array([_top_threshold(r, rate) if len(r) else 0.5 for r in ranked])
        accuracy = float(np.mean((scores >= thresholds[index]) == y))
        if best is None or accuracy > best[0]:
            best = (accuracy, thresholds)
    return {value.item(): float(t) for value, t in zip(values, best[1])}


def group_threshold(val: SplitPredictions, val_groups: np.ndarray, rule: str, seed: int) -> Callable:
    """The plain per-group threshold search fitted on validation; returns scores, groups -> decisions."""
    thresholds = group_thresholds(val.scores.astype(np.float64), val.y, val_groups, rule)
    keys, cuts = np.array(list(thresholds)), np.array(list(thresholds.values()))  # keys sorted (np.unique)
    return lambda p, groups: p >= cuts[np.searchsorted(keys, groups)]


FITTERS = {"threshold_optimizer": threshold_optimizer, "group_threshold": group_threshold}


def group_keys(kept: predictions.Predictions) -> dict[str, np.ndarray]:
    """Per split, one id per row for its group: the attribute's value, or the intersection of
    several attributes' values, numbered alike in every split."""
    columns = {split: np.column_stack(part.groups()) for split, part in kept.items()}
    _, ids = np.unique(np.concatenate(list(columns.values())), axis=0, return_inverse=True)
    ids, out, start = ids.ravel(), {}, 0
    for split, block in columns.items():
        out[split] = ids[start : start + len(block)]
        start += len(block)
    return out


def variant(kept: predictions.Predictions, postprocessor: str, rule: str, seed: int) -> predictions.Predictions:
    """The kept outputs of one job post-processed: decisions (0/1) on its validation and test rows."""
    groups = group_keys(kept)
    unseen = set(groups["test"]) - set(groups["val"])
    if unseen:
        raise ValueError(f"{len(unseen)} group(s) of the test split have no validation rows to fit a threshold on")
    decide = FITTERS[postprocessor](kept["val"], groups["val"], rule, seed)
    out = {}
    for split in ("val", "test"):
        part = kept[split]
        decisions = np.asarray(decide(part.scores.astype(np.float64), groups[split]), dtype=np.float32)
        out[split] = SplitPredictions(
            part.rows, decisions, part.y, part.group, part.bias, part.aligned, part.attributes
        )
    return out


def _cell(value: Any) -> Any:
    """A jobs-table cell as the store takes it: a Python scalar, None for a missing value."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and np.isnan(value) else value


def _why_not(kept: predictions.Predictions) -> str | None:
    """Why a finished job cannot be post-processed, or None."""
    if set(kept) != {"val", "test"}:
        return "no validation split kept"
    if kept["val"].scores.ndim != 1:
        return "a multiclass target"
    if not set(np.unique(kept["val"].y)) <= {0, 1}:
        return "a non-binary target"
    return None


def postprocess(
    results: Path, rule: str, chosen: tuple[str, ...] = tuple(POSTPROCESSORS), data_dir: Path | None = None
) -> dict[str, Any]:
    """Add the `chosen` post-processed variants under `rule` of every finished (not itself
    post-processed) job of a results folder; returns counts and the skipped jobs' reasons."""
    results = Path(results)
    if rule not in RULES:
        raise FairbenchError(f"--rule '{rule}': use one of {', '.join(RULES)}")
    unknown = [name for name in chosen if name not in POSTPROCESSORS]
    if unknown:
        raise FairbenchError(f"unknown post-processor '{unknown[0]}': use {' or '.join(POSTPROCESSORS)}")
    if not (results / STORE_FILE).exists():
        raise FairbenchError(f"{results} is not a results folder ({STORE_FILE} not found); run 'fairbench run' first")
    jobs = load_jobs(results)
    done = jobs[jobs["status"] == "done"]
    sources = [job for job in done.itertuples() if "postprocessed_from" not in json.loads(job.info or "{}")]
    lock = lock_folder(results)
    store = Store(results)
    cache: dict = {}
    made, skipped = 0, []
    provenance = {"versions": versions() | {"fairlearn": version("fairlearn")}, "git_rev": git_revision()}
    try:
        for job in sources:
            try:
                kept = predictions.load(results, job.job_id, job.finished)
            except FairbenchError as error:
                skipped.append((job.label, job.job_id, str(error)))
                continue
            reason = _why_not(kept)
            for name in chosen if reason is None else ():
                started = time.time()
                try:
                    outputs = variant(kept, name, rule, int(job.seed))
                except ValueError as error:
                    skipped.append((job.label, job.job_id, f"{name}: {error}"))
                    continue
                rows = predictions.metric_rows(outputs, split_features(job, outputs, data_dir, cache))
                row = _variant_row(job, name, rule, started, provenance)
                store.record(row, rows)
                predictions.save(results, row["job_id"], outputs, row["finished"])
                made += 1
            if reason is not None:
                skipped.append((job.label, job.job_id, reason))
        store.export()
    finally:
        store.close()
        lock.release()
    return {"sources": len(sources), "variants": made, "skipped": skipped}


def _variant_row(job: Any, postprocessor: str, rule: str, started: float, provenance: dict) -> dict[str, Any]:
    """The store row of one post-processed variant of `job` (a store row)."""
    finished = time.time()
    row = {column: _cell(getattr(job, column)) for column in JOB_COLUMNS}
    return (
        row
        | provenance
        | {
            "job_id": job_hash(
                {"format": STORE_FORMAT, "postprocessed_from": job.job_id, "postprocessor": postprocessor, "rule": rule}
            ),
            "label": f"{job.label} + {POSTPROCESSORS[postprocessor]} ({rule})",
            "params": json.loads(job.params or "{}"),
            "options": json.loads(job.options or "{}"),
            "bias": _cell(job.bias),
            "status": "done",
            "error": None,
            "started": started,
            "finished": finished,
            "duration": finished - started,
            "device": "cpu",
            "host": platform.node(),
            "log": None,
            "info": {
                "postprocessed_from": job.job_id,
                "source_finished": _cell(job.finished),
                "postprocessor": postprocessor,
                "rule": rule,
                "fitted_on": "val",
            },
        }
    )
