"""Every finished job's per-row outputs, kept beside the store, and the metric rows computed from them.

One compressed file per job, `<results>/predictions/<job_id>.npz`, holding for each split s
(val, test) the arrays

    s.rows      int64 row ids: the task's split indices into the dataset's attribute table
    s.scores    float32, (n,) = P(y = 1) for a binary target; (n, k) class probabilities for k classes
    s.y, s.group            the rows' labels and sensitive groups: (n,) for one sensitive
                            attribute, (n, a) for a of them (one column each)
    s.bias, s.aligned       where the dataset defines them
    attributes              the sensitive attributes' expressions, in column order (several only)

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

A job is done when both its file and its store row are on disk: the file is written first
(tmp + rename), the row committed after. A failed rerun writes no file; a crash (or a full disk)
between the two leaves a file whose `finished` matches no done row, or a done row whose file is
missing: `fairbench run` reruns such a job (see `intact`), and nothing uses a file silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairbench import metrics
from fairbench.data.base import TaskData
from fairbench.errors import FairbenchError

FOLDER = "predictions"
SPLITS = ("val", "test")
_OPTIONAL = ("bias", "aligned")
# The tag of a framework metric row computed for one of several sensitive attributes.
ATTRIBUTE_TAG = "attribute"


@dataclass
class SplitPredictions:
    """One split's outputs and the labels, groups (and bias flags) they are scored against."""

    rows: np.ndarray
    scores: np.ndarray
    y: np.ndarray
    group: np.ndarray
    bias: np.ndarray | None = None
    aligned: np.ndarray | None = None
    # The sensitive attributes, one per column of a 2-D `group`; empty for one attribute.
    attributes: tuple[str, ...] = ()

    def groups(self) -> list[np.ndarray]:
        """Each sensitive attribute's groups (one array per attribute)."""
        return [self.group] if self.group.ndim == 1 else list(self.group.T)

    def strata(self) -> np.ndarray:
        """One id per combination of the sensitive attributes' values (bootstrap strata)."""
        return np.unique(np.column_stack(self.groups()), axis=0, return_inverse=True)[1].ravel()

    def inputs(self, features: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The metric inputs of these rows (see fairbench.metrics), with the first attribute's groups
        and, for several attributes, their intersections."""
        given = metrics.inputs(self.y, self.scores, self.groups()[0], features, self.bias, self.aligned)
        if self.group.ndim == 2:
            given["intersection"] = self.strata()
        return given

    def evaluate(
        self,
        features: np.ndarray | None = None,
        index: np.ndarray | None = None,
        names: set[str] | None = None,
        given: dict[str, np.ndarray] | None = None,
    ) -> list[tuple[str, float, dict]]:
        """(metric, value, tags) of every registered metric these outputs support (or those in
        `names`), on the rows `index` (default all). With several sensitive attributes, a metric
        that reads the group is computed for each (tagged `attribute`) and its untagged value is
        the mean over them, e.g. GRAD's Delta = accuracy - mean discrimination. `given`: these
        rows' `inputs(features)`, computed once by a caller that evaluates many resamples."""
        take = slice(None) if index is None else index
        base = {k: v[take] for k, v in (self.inputs(features) if given is None else given).items()}
        if self.group.ndim == 1:
            return [(name, value, {}) for name, value in metrics.evaluate_inputs(base, names).items()]
        per_group = {m.name for m in metrics.registered().values() if "group" in m.needs}
        out = [(n, v, {}) for n, v in metrics.evaluate_inputs(base, names).items() if n not in per_group]
        tagged: dict[str, list[tuple[str, float]]] = {}
        for attribute, groups in zip(self.attributes, self.groups()):
            given = {k: v for k, v in base.items() if k != "group"} | metrics.group_input(groups[take])
            wanted = per_group if names is None else per_group & set(names)
            for name, value in metrics.evaluate_inputs(given, wanted).items():
                tagged.setdefault(name, []).append((attribute, value))
        for name, values in tagged.items():
            out.append((name, float(np.mean([value for _, value in values])), {}))
            out.extend((name, value, {ATTRIBUTE_TAG: attribute}) for attribute, value in values)
        return out


Predictions = dict[str, SplitPredictions]


def from_outcome(data: TaskData, scores: dict[str, np.ndarray]) -> Predictions:
    """A method's scores per split, as kept: float32, with the split's row ids and labels."""
    out: Predictions = {}
    attributes = tuple(data.protected) if len(data.protected) > 1 else ()
    group = np.column_stack(list(data.protected.values())) if attributes else data.g
    for split, values in scores.items():
        rows = np.asarray(data.splits[split], dtype=np.int64)
        values = np.asarray(values, dtype=np.float32)
        if values.ndim == 2 and values.shape[1] == 2 and data.n_classes == 2:
            values = values[:, 1]  # (n, 2) class probabilities of a binary target -> P(y = 1)
        expected = "(n,) P(y = 1)" if data.n_classes == 2 else f"(n, {data.n_classes}) class probabilities"
        width_ok = values.ndim == 1 if data.n_classes == 2 else values.ndim == 2 and values.shape[1] == data.n_classes
        if len(values) != len(rows) or not width_ok:
            raise ValueError(
                f"method returned scores of shape {values.shape} for the {split} split of {len(rows)} rows; "
                f"a {data.n_classes}-class target takes {expected}"
            )
        out[split] = SplitPredictions(
            rows=rows,
            scores=values,
            y=data.y[rows],
            group=group[rows],
            bias=None if data.bias is None else data.bias[rows],
            aligned=None if data.aligned is None else data.aligned[rows],
            attributes=attributes,
        )
    return out


def task_features(data: TaskData, rows: np.ndarray) -> np.ndarray | None:
    """The inputs `consistency` compares rows on: tabular features without the sensitive columns."""
    hidden = data.input_sources(data.protected)
    keep = [i for i, source in enumerate(data.feature_sources) if source not in hidden]
    return data.x[rows][:, keep] if data.kind == "tabular" and keep else None


def metric_rows(kept: Predictions, features: dict[str, np.ndarray | None]) -> list[tuple[str, str, float, dict]]:
    """Rows (split, metric, value, tags) of every registered metric the kept outputs support."""
    return [(split, *row) for split, part in kept.items() for row in part.evaluate(features.get(split))]


def path(results: Path, job_id: str) -> Path:
    return Path(results) / FOLDER / f"{job_id}.npz"


def save(results: Path, job_id: str, kept: Predictions, finished: float) -> Path:
    """Write one job's file atomically (tmp + rename): a reader sees the old file or the new one."""
    arrays: dict[str, np.ndarray] = {"finished": np.float64(finished)}
    attributes = next((part.attributes for part in kept.values()), ())
    if attributes:
        arrays["attributes"] = np.array(attributes)
    for split, part in kept.items():
        for field in ("rows", "scores", "y", "group", *_OPTIONAL):
            value = getattr(part, field)
            if value is not None:
                arrays[f"{split}.{field}"] = value
    target = path(results, job_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez_compressed(staging, **arrays)
        staging.replace(target)
    except BaseException:  # a full disk, Ctrl-C: no half-written file left behind
        staging.unlink(missing_ok=True)
        raise
    return target


def load(results: Path, job_id: str, finished: float | None = None) -> Predictions:
    """One job's kept outputs; with `finished`, refuse a file from another run of the job."""
    source = path(results, job_id)
    if not source.exists():
        raise FairbenchError(
            f"{source} not found: job {job_id} ran before fairbench kept predictions (or the file was "
            f"removed); rerun the suite with 'fairbench run' to redo it"
        )
    try:
        with np.load(source, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        stamp = float(arrays["finished"])
    # A damaged zip or array raises any of a dozen types (zlib, zipfile, numpy's header parser).
    except Exception as error:
        raise FairbenchError(
            f"{source} is unreadable ({type(error).__name__}); rerun the suite with 'fairbench run' to redo it"
        ) from None
    if finished is not None and stamp != float(finished):
        raise FairbenchError(
            f"{source} belongs to another run of job {job_id} than its store row (an interrupted write?); "
            f"rerun the suite with 'fairbench run' to redo it"
        )
    out: Predictions = {}
    for split in SPLITS:
        if f"{split}.rows" in arrays:
            fields = {f: arrays.get(f"{split}.{f}") for f in ("rows", "scores", "y", "group", *_OPTIONAL)}
            out[split] = SplitPredictions(**fields, attributes=tuple(str(a) for a in arrays.get("attributes", ())))
    if not out or any(len(part.scores) != len(part.rows) or len(part.y) != len(part.rows) for part in out.values()):
        raise FairbenchError(f"{source} is incomplete; rerun the suite with 'fairbench run' to redo job {job_id}")
    return out


def intact(results: Path, job_id: str, finished: float) -> bool:
    """Whether the job's file is present, readable and from the run its store row records."""
    try:
        load(results, job_id, finished)
    except FairbenchError:
        return False
    return True
