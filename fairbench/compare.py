"""`fairbench compare RESULTS_A RESULTS_B`: is B different from A (a code change, a new method
against a baseline), per shared experiment x label x grid point x metric? With two labels
(`--labels A,B`), label B against label A, in one folder or two.

Pairs: a job of A and a job of B with the same experiment, label, grid point and seed. The
difference is B - A of the seed-averaged metric on one split. Its interval is a paired two-level
bootstrap: replicate r resamples the paired seeds with replacement, and within each seed the
split's rows (stratified by sensitive group, as `fairbench report --ci`) with the same draw for A
and B, which scored the same rows when their split seeds agree. A metric the kept predictions
cannot recompute (consistency) is resampled over seeds only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fairbench import metrics, predictions
from fairbench.errors import FairbenchError, did_you_mean
from fairbench.report.common import GROUP, point_keys, untagged
from fairbench.report.intervals import percentile_interval, replicates
from fairbench.store import load_jobs, load_results

KEYS = [*GROUP, "point", "seed"]


@dataclass
class Comparison:
    """`rows`: one per experiment, label, point, metric with mean_a, mean_b, diff, ci_low,
    ci_high, seeds, verdict. `revisions`: the paired jobs' git revisions, A against B.
    `changed_ids`: paired jobs whose ids differ (a method or dataset version, the precision or
    the store format changed between the runs)."""

    rows: pd.DataFrame
    revisions: pd.DataFrame
    changed_ids: int
    pairs: int


def _rows(folder: Path, split: str) -> pd.DataFrame:
    table = untagged(load_results(folder))
    table = table[table["split"] == split]
    return table.assign(point=point_keys(table), label=table["label"].fillna(table["method"]))


def verdict(low: float, high: float, metric: str) -> str:
    """B better, worse, or no different from A at this level, by the interval of B - A."""
    if np.isnan(low) or low <= 0 <= high:
        return "no clear difference"
    higher = low > 0
    return "B better" if higher == metrics.higher_is_better(metric) else "B worse"


def _label_rows(rows_a: pd.DataFrame, rows_b: pd.DataFrame, labels: tuple[str, str]) -> tuple[pd.DataFrame, ...]:
    """Label A's rows against label B's, both under the label "B vs A". A with a single grid
    point (a baseline) is compared with every point of B; else the points must match."""
    for rows, label in zip((rows_a, rows_b), labels):
        if label not in set(rows["label"]):
            raise FairbenchError(f"--labels: no label '{label}' in these results{did_you_mean(label, rows['label'])}")
    rows_a, rows_b = rows_a[rows_a["label"] == labels[0]], rows_b[rows_b["label"] == labels[1]]
    pair = f"{labels[1]} vs {labels[0]}"
    if rows_a["point"].nunique() == 1:
        points = rows_b[["experiment", "point"]].drop_duplicates()
        rows_a = rows_a.drop(columns="point").merge(points, on="experiment")
    return rows_a.assign(label=pair), rows_b.assign(label=pair)


def compare(
    a: Path,
    b: Path,
    split: str = "test",
    names: list[str] | None = None,
    level: float = 0.95,
    reps: int = 500,
    seed: int = 0,
    labels: tuple[str, str] | None = None,
) -> Comparison:
    """Compare results folder `b` with `a` at every shared point (see the module's docstring);
    with `labels` = (A, B), label B of `b` with label A of `a` (which may be the same folder)."""
    rows_a, rows_b = _rows(a, split), _rows(b, split)
    if labels is not None:
        rows_a, rows_b = _label_rows(rows_a, rows_b, labels)
    if names is not None:
        rows_a, rows_b = rows_a[rows_a["metric"].isin(names)], rows_b[rows_b["metric"].isin(names)]
    jobs_a = rows_a[[*KEYS, "job_id"]].drop_duplicates(KEYS)
    jobs_b = rows_b[[*KEYS, "job_id"]].drop_duplicates(KEYS)
    paired = jobs_a.merge(jobs_b, on=KEYS, suffixes=("_a", "_b"))
    if paired.empty:
        raise FairbenchError(f"{a} and {b} share no experiment, label, grid point and seed: nothing to compare")
    values = rows_a[[*KEYS, "metric", "value"]].merge(
        rows_b[[*KEYS, "metric", "value"]], on=[*KEYS, "metric"], suffixes=("_a", "_b")
    )
    finished_a = load_jobs(a).set_index("job_id")
    finished_b = load_jobs(b).set_index("job_id")
    rng = np.random.default_rng(seed)
    out = []
    for (experiment, label, point), group in paired.groupby(GROUP + ["point"], sort=True):
        seeds = group.sort_values("seed")
        draws = rng.integers(0, len(seeds), size=(reps, len(seeds)))  # the seeds of each replicate
        at = values[(values["experiment"] == experiment) & (values["label"] == label) & (values["point"] == point)]
        wanted = set(at["metric"])
        per_seed = []  # per paired seed: replicate differences B - A of every recomputable metric
        for pair, (job_a, job_b) in enumerate(zip(seeds["job_id_a"], seeds["job_id_b"])):
            kept_a = predictions.load(a, job_a, finished_a.loc[job_a, "finished"])[split]
            kept_b = predictions.load(b, job_b, finished_b.loc[job_b, "finished"])[split]
            stream = seed + 2 * pair + 1
            # the same draw for A and B where they scored the same rows; independent ones where not
            paired_rows = np.array_equal(kept_a.rows, kept_b.rows)
            draws_a = stream if paired_rows else stream + 1
            per_seed.append(replicates(kept_b, reps, stream, wanted) - replicates(kept_a, reps, draws_a, wanted))
        for metric, cell in at.groupby("metric", sort=True):
            cell = cell.set_index("seed").loc[seeds["seed"]]
            diffs = (cell["value_b"] - cell["value_a"]).to_numpy()
            if all(metric in reps_ for reps_ in per_seed):
                matrix = np.column_stack([reps_[metric].to_numpy() for reps_ in per_seed])  # reps x seeds
                boot = np.take_along_axis(matrix, draws, axis=1).mean(axis=1)
            else:
                boot = diffs[draws].mean(axis=1)
            low, high = percentile_interval(boot, level)
            out.append(
                {
                    "experiment": experiment,
                    "label": label,
                    "point": point,
                    "metric": metric,
                    "mean_a": cell["value_a"].mean(),
                    "mean_b": cell["value_b"].mean(),
                    "diff": diffs.mean(),
                    "ci_low": low,
                    "ci_high": high,
                    "seeds": len(seeds),
                    "verdict": verdict(low, high, metric),
                }
            )
    revisions = pd.DataFrame(
        {
            "git_a": finished_a.loc[paired["job_id_a"], "git_rev"].fillna("unknown").to_numpy(),
            "git_b": finished_b.loc[paired["job_id_b"], "git_rev"].fillna("unknown").to_numpy(),
        }
    )
    counted = revisions.value_counts().rename("jobs").reset_index()
    changed = int((paired["job_id_a"] != paired["job_id_b"]).sum())
    return Comparison(pd.DataFrame(out), counted, changed, len(paired))


def metric_verdicts(rows: pd.DataFrame) -> list[str]:
    """One line per metric: at how many shared points B is better, worse, or not clearly different."""
    lines = []
    for metric, group in rows.groupby("metric", sort=True):
        counts = group["verdict"].value_counts()
        parts = [f"{counts[v]} {v}" for v in ("B better", "B worse", "no clear difference") if v in counts]
        lines.append(f"{metric}: {', '.join(parts)} (of {len(group)} shared points)")
    return lines
