"""DVGE ablation tables (paper Tables 1, 2, 5, 6): how well the sensitive attribute can still be
predicted from the perturbed code z'.

Exactly what is read from the tidy table (rows of other metrics are ignored):
- rows with `metric == "sens_acc"` and `split == "test"`;
- tag column `sens_classifier` ("retrained" | "fixed"): one table per experiment x value.
  Missing column: one table, classifier "-". A row with an empty value there (typically a
  reference row, which does not depend on the classifier protocol) goes into every table of
  its experiment;
- tag column `variant` ("no_removal" | "dims_removed"): the reference columns "No removal" and
  "Sens. dims removed"; other values without an eta1 become columns of their own, after those two;
- rows with another `variant` (the dvge method tags its own rows "dvge") or none, and an eta1:
  the eta1 columns, eta1 taken from a tag column `eta1` where present, else from `param_eta1`;
  rows with neither a variant nor an eta1 are ignored;
- where `param_eta2` exists and some eta rows have eta2 == 0 (the paper's ablation setting),
  only those are used;
- rows: the method `label` (e.g. DVGE-D, DVGE-N). Cells: mean +/- std over seeds (repeated
  rows of one seed, e.g. the reference row reported by every eta job, are averaged first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairbench.report.common import fmt_mean_std, latex_table, markdown_table

REFERENCE_COLUMNS = {"no_removal": "No removal", "dims_removed": "Sens. dims removed"}
CELL_COLUMNS = ["experiment", "sens_classifier", "label", "column", "order", "mean", "std", "n"]


def _eta_label(eta: float) -> str:
    return f"η1 = {eta:g}"


def ablation_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Long table of ablation cells: experiment, sens_classifier, label, column, order, mean, std, n."""
    rows = df[(df["metric"] == "sens_acc") & (df["split"] == "test")].copy()
    if rows.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    rows["label"] = rows["label"].fillna(rows["method"])
    variant = rows["variant"] if "variant" in rows else pd.Series(np.nan, index=rows.index)
    eta = pd.Series(np.nan, index=rows.index, dtype=float)
    for col in ("param_eta1", "eta1"):  # a tag `eta1` wins over the job's parameter
        if col in rows:
            value = pd.to_numeric(rows[col], errors="coerce")
            eta = value.where(value.notna(), eta)
    is_ref = variant.isin(list(REFERENCE_COLUMNS)) | (variant.notna() & eta.isna())
    is_eta = ~is_ref & eta.notna()
    if "param_eta2" in rows:
        eta2 = pd.to_numeric(rows["param_eta2"], errors="coerce")
        if (is_eta & (eta2 == 0)).any():
            is_eta &= eta2 == 0
    refs = list(REFERENCE_COLUMNS)
    extra = sorted(set(variant[is_ref]) - set(refs))
    ref_order = {v: i for i, v in enumerate(refs + extra)}
    rows["column"] = np.where(
        is_ref,
        variant.map(lambda v: REFERENCE_COLUMNS.get(v, v)),
        eta.map(lambda e: _eta_label(e) if pd.notna(e) else None),
    )
    rows["order"] = np.where(is_ref, variant.map(ref_order), 100 + eta.fillna(0))
    rows = rows[is_ref | is_eta]
    if rows.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)

    classifiers = (
        rows["sens_classifier"] if "sens_classifier" in rows else pd.Series(np.nan, index=rows.index)
    )
    rows["sens_classifier"] = classifiers
    named = sorted(classifiers.dropna().unique()) or ["-"]
    # Rows without a classifier protocol belong to every table of their experiment.
    expanded = [rows[rows["sens_classifier"] == c] for c in named]
    blank = rows[rows["sens_classifier"].isna()]
    expanded += [blank.assign(sens_classifier=c) for c in named]
    rows = pd.concat(expanded, ignore_index=True)

    keys = ["experiment", "sens_classifier", "label", "column", "order"]
    per_seed = rows.groupby([*keys, "seed"], dropna=False)["value"].mean().reset_index()
    cells = (
        per_seed.groupby(keys, dropna=False)["value"]
        .agg(mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, n="count")
        .reset_index()
    )
    return cells.sort_values(["experiment", "sens_classifier", "label", "order"]).reset_index(drop=True)[
        CELL_COLUMNS
    ]


@dataclass
class AblationTable:
    """One experiment x sensitive-classifier protocol: rows = labels, columns = variants and eta1."""

    experiment: str
    sens_classifier: str
    cells: pd.DataFrame

    @property
    def columns(self) -> list[str]:
        order = self.cells.drop_duplicates("column").sort_values("order")
        return list(order["column"])

    def text_rows(self) -> list[list[str]]:
        out = []
        for label, sub in self.cells.groupby("label", sort=True):
            by_col = {r.column: fmt_mean_std(r.mean, r.std, r.n) for r in sub.itertuples()}
            out.append([str(label), *[by_col.get(c, "-") for c in self.columns]])
        return out

    @property
    def caption(self) -> str:
        return (
            f"Sensitive-attribute accuracy on the test split ({self.sens_classifier} classifier), "
            f"{self.experiment}; mean ± std over seeds"
        )

    def markdown(self) -> str:
        return f"**{self.caption}**\n\n" + markdown_table(["Encoder", *self.columns], self.text_rows())

    def latex(self) -> str:
        return latex_table(["Encoder", *self.columns], self.text_rows(), caption=self.caption)

    def csv_frame(self) -> pd.DataFrame:
        return self.cells.drop(columns="order")


def ablation_tables(df: pd.DataFrame) -> list[AblationTable]:
    """One AblationTable per experiment x sens_classifier found in the results (may be empty)."""
    cells = ablation_cells(df)
    return [
        AblationTable(str(exp), str(clf), sub.reset_index(drop=True))
        for (exp, clf), sub in cells.groupby(["experiment", "sens_classifier"], sort=True)
    ]
