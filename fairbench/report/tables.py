"""Summary tables, the one place they are built (the report's files and page, and the console
summary at the end of `fairbench run`): per experiment x method label, mean +/- std over seeds of
every test metric at one hyperparameter point chosen on the validation split (never on test), or
at every point; optionally with bootstrap confidence intervals (report/intervals.py).

Selection rules (per experiment x label, on seed-averaged validation metrics):
- `best-val-acc`: the point with the highest validation accuracy (ties: lower validation dp,
  then the point's name);
- `gap-floor`: among points whose validation accuracy is >= the floor, the lowest validation
  dp (ties: higher accuracy, then name). A label with no such point is listed with a note.
- `all`: every point (no selection; the run's console summary).
A label with a single point needs no selection (it has nothing to choose from).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from fairbench import metrics
from fairbench.report.choices import SELECTION_RULES
from fairbench.report.common import (
    GROUP,
    fmt_mean_std,
    latex_table,
    markdown_table,
    point_keys,
    point_stats,
    untagged,
    wide_points,
)

RULES = SELECTION_RULES
METRIC_ORDER = [
    "acc",
    "dp",
    "eo",
    "eo_joint",
    "eodds_sum",
    "eodds_max",
    "dp_intersectional",
    "eo_intersectional",
    "acc_worst_group",
    "ece",
    "ece_group0",
    "ece_group1",
    "ece_gap",
    "discrimination",
    "discrimination_score",
    "consistency",
    "delta",
    "acc_aligned",
    "acc_conflicting",
    "acc_mean",
    "bias_gap",
    "acc_unbiased",
    "acc_worst_bias",
    "dp_perfect",
]


def select_points(df: pd.DataFrame, rule: str = "best-val-acc", acc_floor: float | None = None) -> pd.DataFrame:
    """The chosen point per (experiment, label): columns experiment, label, point, val_acc, val_dp, note.

    `point` is None (and `note` says why) where nothing could be chosen.
    """
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose one of {', '.join(RULES)}")
    if rule == "gap-floor" and acc_floor is None:
        raise ValueError("the gap-floor rule needs an accuracy floor")
    rows = untagged(df)
    rows = rows.assign(point=point_keys(rows), label=rows["label"].fillna(rows["method"]))
    all_points = rows[[*GROUP, "point"]].drop_duplicates()
    val = wide_points(point_stats(df, "val", ["acc", "dp"]))
    val = val.reindex(columns=[*GROUP, "point", "acc", "dp"])
    if rule == "all":
        every = all_points.merge(val, on=[*GROUP, "point"], how="left").sort_values([*GROUP, "point"])
        every = every.rename(columns={"acc": "val_acc", "dp": "val_dp"}).assign(note="")
        return every.reset_index(drop=True)[[*GROUP, "point", "val_acc", "val_dp", "note"]]
    out = []
    for (exp, label), pts in all_points.groupby(GROUP, sort=True):
        cand = pts.merge(val, on=[*GROUP, "point"], how="left")
        chosen, note = None, ""
        if len(cand) == 1:
            chosen, note = cand.iloc[0], "single point"
        elif cand["acc"].isna().all():
            note = "no validation accuracy to select with"
        elif rule == "best-val-acc":
            chosen = (
                cand.dropna(subset=["acc"])
                .sort_values(["acc", "dp", "point"], ascending=[False, True, True], na_position="last")
                .iloc[0]
            )
        else:
            ok = cand[(cand["acc"] >= acc_floor) & cand["dp"].notna()]
            if ok.empty:
                note = f"no point reaches validation accuracy >= {acc_floor:g}"
            else:
                chosen = ok.sort_values(["dp", "acc", "point"], ascending=[True, False, True]).iloc[0]
        out.append(
            {
                "experiment": exp,
                "label": label,
                "point": None if chosen is None else chosen["point"],
                "val_acc": None if chosen is None else chosen["acc"],
                "val_dp": None if chosen is None else chosen["dp"],
                "note": note,
            }
        )
    return pd.DataFrame(out, columns=[*GROUP, "point", "val_acc", "val_dp", "note"])


# The metrics printed on the console; the files and the HTML page carry all of them.
CONSOLE_METRICS = ["acc", "dp", "eo", "discrimination", "consistency", "sens_acc", "acc_conflicting"]


def _metric_order(metrics: list[str]) -> list[str]:
    known = [m for m in METRIC_ORDER if m in metrics]
    return known + sorted(m for m in metrics if m not in METRIC_ORDER)


@dataclass
class SummaryTable:
    """One experiment's summary: `cells` (label, point, metric, mean, std, n, and ci_low, ci_high
    when intervals were computed at `level`) and `selection`."""

    experiment: str
    rule: str
    cells: pd.DataFrame
    selection: pd.DataFrame
    level: float | None = None

    @property
    def metrics(self) -> list[str]:
        return _metric_order(sorted(self.cells["metric"].unique()))

    @property
    def header(self) -> list[str]:
        return self.header_for(self.metrics)

    def header_for(self, metrics: list[str]) -> list[str]:
        return ["Method", "Point" if self.rule == "all" else "Selected point", "Seeds", *metrics]

    def text_rows(self, metrics: list[str] | None = None) -> list[list[str]]:
        """Rows of the table, with every metric or only `metrics`."""
        metrics = self.metrics if metrics is None else metrics
        rows = []
        for sel in self.selection.itertuples():
            sub = self.cells[(self.cells["label"] == sel.label) & (self.cells["point"] == sel.point)]
            if sel.point is None or sub.empty:
                rows.append([str(sel.label), f"({sel.note})", "n=0", *["-" for _ in metrics]])
                continue
            by_metric = {
                r.metric: fmt_mean_std(r.mean, r.std, r.n, interval=(r.ci_low, r.ci_high) if self.level else None)
                for r in sub.itertuples()
            }
            seeds = f"n={int(sub['n'].max())}"
            rows.append([str(sel.label), str(sel.point), seeds, *[by_metric.get(m, "-") for m in metrics]])
        return rows

    @property
    def caption(self) -> str:
        at = "at every hyperparameter point" if self.rule == "all" else f"at the point chosen by {self.rule}"
        ci = f", [{self.level:.0%} bootstrap interval]" if self.level else ""
        return f"{self.experiment}: test metrics (mean ± std over seeds{ci}) {at}"

    def markdown(self) -> str:
        return f"**{self.caption}**\n\n" + markdown_table(self.header, self.text_rows())

    def latex(self) -> str:
        return latex_table(self.header, self.text_rows(), caption=self.caption)


def summary_tables(
    df: pd.DataFrame,
    rule: str = "best-val-acc",
    acc_floor: float | None = None,
    intervals: pd.DataFrame | None = None,
    level: float | None = None,
) -> list[SummaryTable]:
    """Summary tables, one per experiment, at the points chosen by `rule`; with `intervals`
    (report.intervals.point_intervals at `level`), every cell carries its interval."""
    selection = select_points(df, rule, acc_floor)
    test = point_stats(df, "test")
    if intervals is not None:
        test = test.merge(intervals, on=[*GROUP, "point", "metric"], how="left")
    rule_name = rule if rule != "gap-floor" else f"gap-floor (val acc >= {acc_floor:g})"
    tables = []
    for exp, sel in selection.groupby("experiment", sort=True):
        chosen = sel.dropna(subset=["point"])[[*GROUP, "point"]]
        cells = test.merge(chosen, on=[*GROUP, "point"], how="inner")
        tables.append(
            SummaryTable(
                str(exp),
                rule_name,
                cells.reset_index(drop=True),
                sel.reset_index(drop=True),
                level if intervals is not None else None,
            )
        )
    return tables


def summary_csv(tables: list[SummaryTable]) -> pd.DataFrame:
    """All summary cells in one tidy frame: experiment, label, point, metric, mean, std, n (and
    ci_low, ci_high with intervals)."""
    columns = [*GROUP, "point", "metric", "mean", "std", "n"]
    frames = [t.cells[columns + [c for c in ("ci_low", "ci_high") if c in t.cells]] for t in tables]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# The metrics the ranking tables order methods by, when the results have them.
RANKED_METRICS = ("acc", "acc_worst_group", "dp", "eo", "eodds_max", "dp_intersectional", "ece_gap")


@dataclass
class Ranking:
    """Methods ordered by their average rank on one metric over the experiments (1 = best; ties
    share the average rank), beside each experiment's value at the selected point."""

    metric: str
    experiments: list[str]
    rows: pd.DataFrame  # label, average_rank, ranked (experiments), and one cell per experiment
    level: float | None

    @property
    def header(self) -> list[str]:
        return ["Rank", "Method", "Average rank", "Experiments", *self.experiments]

    def text_rows(self) -> list[list[str]]:
        return [
            [
                str(i + 1),
                str(r["label"]),
                f"{r['average_rank']:.2f}",
                str(r["ranked"]),
                *[r[e] for e in self.experiments],
            ]
            for i, (_, r) in enumerate(self.rows.iterrows())
        ]

    @property
    def caption(self) -> str:
        ci = f" [{self.level:.0%} bootstrap interval]" if self.level else ""
        better = "higher" if metrics.higher_is_better(self.metric) else "lower"
        return f"Ranking by {self.metric} ({better} is better): average rank over experiments, test mean ± std{ci}"


def rankings(tables: list[SummaryTable], names: tuple[str, ...] = RANKED_METRICS) -> list[Ranking]:
    """One ranking per metric of `names` present, from the summary tables' selected points; a
    method missing from an experiment is ranked over the experiments it has."""
    cells = summary_csv(tables)
    if cells.empty:
        return []
    level = next((t.level for t in tables if t.level), None)
    out = []
    for name in names:
        sub = cells[cells["metric"] == name]
        if sub["experiment"].nunique() < 2:
            continue
        wide = sub.pivot_table(index="label", columns="experiment", values="mean", aggfunc="first")
        ranks = wide.rank(axis=0, ascending=not metrics.higher_is_better(name), method="average")
        frame = pd.DataFrame(
            {
                "label": wide.index,
                "average_rank": ranks.mean(axis=1).to_numpy(),
                "ranked": wide.notna().sum(axis=1).to_numpy(),
            }
        )
        for r in sub.itertuples():
            interval = (r.ci_low, r.ci_high) if level and hasattr(r, "ci_low") else None
            frame.loc[frame["label"] == r.label, r.experiment] = fmt_mean_std(r.mean, r.std, r.n, interval=interval)
        experiments = sorted(sub["experiment"].unique())
        frame[experiments] = frame[experiments].fillna("-")
        out.append(Ranking(name, experiments, frame.sort_values(["average_rank", "label"], kind="stable"), level))
    return out
