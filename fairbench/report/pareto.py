"""Fairness-accuracy Pareto fronts and their hypervolume.

Inputs: the tidy table's untagged rows of the *test* split (as the papers' Figures 3-7 plot
test results of every hyperparameter point), seeds averaged per hyperparameter point.

Orientation: a metric registered as higher-is-better (`fairbench.metrics`) is maximised, any
other (a gap) minimised; a signed gap (bias_gap) by its magnitude. Internally every pair is
mapped to (cost, benefit), the cost being x for a gap, -x for a higher-is-better metric and |x|
for a signed gap (the benefit minus that of y), so that one front/hypervolume routine serves
any two metrics.

Reference point of the hypervolume: per experiment and metric pair, the worst x and the worst
y over the seed-averaged points of *all* methods of that experiment (e.g. the largest dp gap
and the lowest accuracy seen), each pushed outwards by MARGIN = 10% of that axis's observed
range. Why: it needs no scale assumptions (gaps of 0.02 and accuracies of 0.95 sit on very
different ranges across data sets), every method is measured against the same corner within a
block, and nobody is credited for area far beyond what was observed. The margin is there
because with the bare worst corner the extreme points add no area: an unconstrained baseline
with the best accuracy and the largest gap would score exactly 0, as if it had no merit.
Values are only comparable within one experiment x pair; that is all the critical-difference
ranking needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairbench import metrics
from fairbench.metrics import higher_is_better
from fairbench.report.common import GROUP, point_stats, wide_points

MARGIN = 0.1


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated rows of an (n, 2) array of (cost, benefit) = (gap, accuracy).

    A point is dominated when another has cost <= and benefit >= with one of them strict;
    exact duplicates do not dominate each other (both stay). Rows with NaN are never on the front.
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    ok = ~np.isnan(pts).any(axis=1)
    # [i, j] compares candidate dominator j against point i.
    xi, yi = pts[:, 0][:, None], pts[:, 1][:, None]
    xj, yj = pts[:, 0][None, :], pts[:, 1][None, :]
    no_worse = (xj <= xi) & (yj >= yi)
    better = (xj < xi) | (yj > yi)
    dominated = (no_worse & better & ok[None, :]).any(axis=1)
    return ok & ~dominated


def hypervolume(front: np.ndarray, ref: tuple[float, float]) -> float:
    """Exact 2-D area dominated by (cost, benefit) points and bounded by ref = (worst cost, worst benefit).

    The area is the union of the boxes [cost_i, ref_cost] x [ref_benefit, benefit_i]; points
    outside the reference box add nothing. Any point set works (dominated points add nothing).
    """
    pts = np.asarray(front, dtype=float).reshape(-1, 2)
    pts = pts[~np.isnan(pts).any(axis=1)]
    rx, ry = float(ref[0]), float(ref[1])
    pts = pts[(pts[:, 0] < rx) & (pts[:, 1] > ry)]
    if len(pts) == 0:
        return 0.0
    pts = pts[np.argsort(pts[:, 0], kind="stable")]
    # Sweep from the lowest cost rightwards: between consecutive costs the height is the best
    # benefit reached so far.
    area, best = 0.0, ry
    for i, (px, py) in enumerate(pts):
        best = max(best, py)
        nx = pts[i + 1, 0] if i + 1 < len(pts) else rx
        area += (nx - px) * (best - ry)
    return float(area)


def oriented(x: np.ndarray, y: np.ndarray, x_metric: str, y_metric: str) -> np.ndarray:
    """(cost, benefit) columns: a higher-is-better metric negated as a cost; a signed gap
    (bias_gap) by its magnitude, since a smaller gap is better whichever way it points."""

    def cost(values: np.ndarray, name: str) -> np.ndarray:
        entry = metrics.get(name)
        if entry.signed_gap:
            return np.abs(values)
        return -values if entry.higher_is_better else values

    return np.column_stack([cost(x, x_metric), -cost(y, y_metric)])


def pareto_points(
    df: pd.DataFrame, x_metric: str, y_metric: str, split: str = "test", intervals: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Seed-averaged points per (experiment, label, point) with spread and front membership.

    Columns: experiment, label, point, x, x_std, y, y_std, n, on_front; with `intervals`
    (report.intervals.point_intervals) also x_low, x_high, y_low, y_high.
    """
    stats = point_stats(df, split, [x_metric, y_metric])
    cols = [*GROUP, "point", "x", "x_std", "y", "y_std", "n", "on_front"]
    wide = wide_points(stats)
    if wide.empty or x_metric not in wide or y_metric not in wide:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(
        {
            "experiment": wide["experiment"],
            "label": wide["label"],
            "point": wide["point"],
            "x": wide[x_metric],
            "x_std": wide[f"{x_metric}__std"],
            "y": wide[y_metric],
            "y_std": wide[f"{y_metric}__std"],
            "n": wide["n"],
        }
    ).dropna(subset=["x", "y"])
    out["on_front"] = False
    for _, idx in out.groupby(GROUP).groups.items():
        sub = out.loc[idx]
        out.loc[idx, "on_front"] = pareto_front(oriented(sub["x"].to_numpy(), sub["y"].to_numpy(), x_metric, y_metric))
    out = out[cols]
    if intervals is not None:
        for axis, metric in (("x", x_metric), ("y", y_metric)):
            bounds = intervals[intervals["metric"] == metric].drop(columns="metric")
            bounds = bounds.rename(columns={"ci_low": f"{axis}_low", "ci_high": f"{axis}_high"})
            out = out.merge(bounds, on=[*GROUP, "point"], how="left")
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class Reference:
    x: float
    y: float


def reference_point(points: pd.DataFrame, x_metric: str, y_metric: str, margin: float = MARGIN) -> Reference:
    """Worst x and worst y over all points given (one experiment, all methods), pushed out by
    `margin` times the observed range of each axis."""

    def worst(values: pd.Series, metric: str) -> float:
        if metrics.get(metric).signed_gap:  # the largest magnitude is the worst
            values = values.abs()
        lo, hi = float(values.min()), float(values.max())
        return lo - margin * (hi - lo) if higher_is_better(metric) else hi + margin * (hi - lo)

    return Reference(worst(points["x"], x_metric), worst(points["y"], y_metric))


def hypervolume_table(points: pd.DataFrame, x_metric: str, y_metric: str) -> pd.DataFrame:
    """Hypervolume per (experiment, label) against the experiment's reference point.

    Columns: experiment, pair, label, hypervolume, n_points, n_front, ref_x, ref_y.
    """
    pair = f"{x_metric}-{y_metric}"
    rows = []
    for experiment, exp_points in points.groupby("experiment", sort=True):
        ref = reference_point(exp_points, x_metric, y_metric)
        ref_oriented = oriented(np.array([ref.x]), np.array([ref.y]), x_metric, y_metric)[0]
        for label, sub in exp_points.groupby("label", sort=True):
            pts = oriented(sub["x"].to_numpy(), sub["y"].to_numpy(), x_metric, y_metric)
            rows.append(
                {
                    "experiment": experiment,
                    "pair": pair,
                    "label": label,
                    "hypervolume": hypervolume(pts, (ref_oriented[0], ref_oriented[1])),
                    "n_points": len(sub),
                    "n_front": int(sub["on_front"].sum()),
                    "ref_x": ref.x,
                    "ref_y": ref.y,
                }
            )
    return pd.DataFrame(
        rows, columns=["experiment", "pair", "label", "hypervolume", "n_points", "n_front", "ref_x", "ref_y"]
    )


def front_table(points: pd.DataFrame) -> pd.DataFrame:
    """The front points only, sorted by experiment, label and x."""
    front = points[points["on_front"].astype(bool)]
    return front.sort_values([*GROUP, "x", "y"], kind="stable").reset_index(drop=True)
