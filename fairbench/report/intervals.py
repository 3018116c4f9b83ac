"""Bootstrap confidence intervals of every metric, from the kept predictions (no training).

Scheme: the rows of a split are resampled with replacement *within each sensitive group*
(stratified, so every replicate keeps the observed group sizes and every gap stays defined),
`reps` times, each metric recomputed on every replicate; the interval is the percentile
interval [q((1 - level) / 2), q((1 + level) / 2)] of the replicate values.

Seeds of a hyperparameter point: replicate r of the point is the mean over its seeds' jobs of
their replicate r, so the interval is that of the seed-averaged value the tables show, from
test-set sampling alone (the spread over seeds is shown beside it as ±). Every job draws from
the same seeded stream, so jobs scored on the same rows are resampled identically (methods are
compared on the same replicates).

Metrics that need input features (`consistency`) get no interval: a kNN score is not defined
on a sample with repeated rows (a duplicate is its own nearest neighbour).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fairbench import predictions
from fairbench.predictions import SplitPredictions
from fairbench.report.common import GROUP, point_keys, untagged
from fairbench.store import load_jobs

COLUMNS = [*GROUP, "point", "metric", "ci_low", "ci_high"]


def replicates(part: SplitPredictions, reps: int, seed: int = 0, names: Iterable[str] | None = None) -> pd.DataFrame:
    """Metric values on `reps` group-stratified bootstrap resamples: one row per replicate, one
    column per metric (those the kept outputs support without features, or only `names`)."""
    chosen = set(names) if names is not None else None
    strata = part.strata()
    by_group = [np.flatnonzero(strata == value) for value in np.unique(strata)]
    rng = np.random.default_rng(seed)
    given = part.inputs()  # once: the resamples index into it
    rows = []
    for _ in range(reps):
        index = np.concatenate([members[rng.integers(0, len(members), len(members))] for members in by_group])
        evaluated = part.evaluate(index=index, names=chosen, given=given)
        rows.append({name: value for name, value, tags in evaluated if not tags})
    return pd.DataFrame(rows)


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval of replicate values; NaN replicates (an empty cell) are left out."""
    tail = (1.0 - level) / 2
    low, high = np.nanquantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def point_intervals(
    folder: Path,
    df: pd.DataFrame,
    split: str = "test",
    level: float = 0.95,
    reps: int = 1000,
    seed: int = 0,
    points: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Intervals per (experiment, label, point, metric) of the seed-averaged metric on `split`,
    at every point or only at `points` (columns experiment, label, point: e.g. the selected ones).

    Columns: experiment, label, point, metric, ci_low, ci_high.
    """
    rows = untagged(df)
    rows = rows[rows["split"] == split]
    rows = rows.assign(point=point_keys(rows), label=rows["label"].fillna(rows["method"]))
    if points is not None:
        rows = rows.merge(points[[*GROUP, "point"]].dropna().drop_duplicates(), on=[*GROUP, "point"])
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    finished = load_jobs(folder).set_index("job_id")["finished"]
    out = []
    columns = (TextColumn("bootstrap intervals"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # On stderr and gone when done: thousands of jobs x replicates take minutes.
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("jobs", total=rows["job_id"].nunique())
        for (experiment, label, point), group in rows.groupby([*GROUP, "point"], sort=True):
            per_job = []
            for job_id in sorted(group["job_id"].unique()):
                kept = predictions.load(folder, job_id, finished[job_id])
                per_job.append(replicates(kept[split], reps, seed))
                progress.advance(task)
            mean = sum(per_job) / len(per_job)
            for metric in mean.columns:
                low, high = percentile_interval(mean[metric].to_numpy(), level)
                out.append((experiment, label, point, metric, low, high))
    return pd.DataFrame(out, columns=COLUMNS)
