"""The report tables that methods declare (`Method.report_tables`, fairbench/table_spec.py) and
that suites declare (`report: {tables: [...]}`), rendered from the tidy results table: one
`DeclaredTable` per spec x experiment x `table_by` values. Each method's tables come from what
the run recorded in the results store (store.ReportSpecs.method_tables), looked up by the
`method` column; a method's table reads only the rows of the methods that declare it, a suite's
table the rows of all methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairbench import metrics
from fairbench.report.common import fmt_mean_std, latex_table, markdown_table, point_keys, slug, tag_columns
from fairbench.table_spec import ReportTable

KEYS = ["experiment", "label", "column", "order"]


MethodTables = Mapping[str, Sequence[ReportTable]]  # method name -> the tables it declares


def declaring_methods(df: pd.DataFrame, method_tables: MethodTables) -> list[tuple[ReportTable, list[str]]]:
    """Each table spec that a method present in `df` declares (per `method_tables`), with the
    methods present that declare it (methods sharing a table declare an equal spec), in order of
    appearance."""
    out: list[tuple[ReportTable, list[str]]] = []
    for name in dict.fromkeys(df["method"].dropna()) if "method" in df else ():
        for spec in method_tables.get(name, ()):
            found = [methods for known, methods in out if known == spec]
            if found:
                found[0].append(name)
            else:
                out.append((spec, [name]))
    return out


def declared_specs(df: pd.DataFrame, method_tables: MethodTables) -> list[ReportTable]:
    """The table specs of every method present in `df`, in order of appearance."""
    return [spec for spec, _ in declaring_methods(df, method_tables)]


def _column_values(rows: pd.DataFrame, spec: ReportTable) -> pd.Series:
    """The column parameter's value per row: a tag of that name wins over the job parameter."""
    value = pd.Series(np.nan, index=rows.index, dtype=float)
    for col in (f"param_{spec.column_param}", spec.column_param):
        if col in rows:
            found = pd.to_numeric(rows[col], errors="coerce")
            value = found.where(found.notna(), value)
    return value


def _param_columns(rows: pd.DataFrame, spec: ReportTable) -> pd.DataFrame:
    """Rows with `column` and `order` from the references and the column parameter's values."""
    variant = rows[spec.reference_tag] if spec.reference_tag in rows else pd.Series(np.nan, index=rows.index)
    value = _column_values(rows, spec)
    is_ref = variant.isin(list(spec.references)) | (variant.notna() & value.isna())
    refs = list(spec.references)
    extra = sorted(set(variant[is_ref]) - set(refs))
    ref_order = {v: i for i, v in enumerate(refs + extra)}
    rows["column"] = np.where(
        is_ref,
        variant.map(lambda v: spec.references.get(v, v)),
        value.map(lambda v: spec.column_label.format(v) if pd.notna(v) else None),
    )
    rows["order"] = np.where(is_ref, variant.map(ref_order), 100 + value.fillna(0))
    return rows[is_ref | value.notna()]


def _tag_rows(rows: pd.DataFrame, spec: ReportTable) -> pd.DataFrame:
    """Rows labelled by their `row_tags`, `row` ranking them as `row_labels` lists the values
    (unlisted values after, alphabetically)."""
    if not set(spec.row_tags) <= set(rows):
        return rows.iloc[:0]
    rows = rows.dropna(subset=list(spec.row_tags)).copy()
    texts, key = {}, {}
    for tag in spec.row_tags:
        labels = spec.row_labels.get(tag, {})
        texts[tag] = rows[tag].map(lambda v, labels=labels: labels.get(v, str(v)))
        key[f"{tag}_position"] = rows[tag].map(
            lambda v, listed=list(labels): listed.index(v) if v in listed else len(listed)
        )
        key[f"{tag}_value"] = rows[tag].astype(str)
    rows["label"] = [spec.row_label.format(**r) for r in pd.DataFrame(texts).to_dict("records")]
    rows["row"] = pd.DataFrame(key).groupby(list(key)).ngroup()
    return rows


def _metric_columns(rows: pd.DataFrame, spec: ReportTable) -> pd.DataFrame:
    """Rows with `column` and `order` from their metric (`metrics`), and one more column per tag
    value for the metrics of `columns_by_tag`."""
    rows["column"] = rows["metric"].map(spec.metrics)
    rows["order"] = rows["metric"].map({m: float(i) for i, m in enumerate(spec.metrics)})
    for tag in {t for t in spec.columns_by_tag.values() if t in rows}:
        tagged = rows[tag].notna()
        splits = rows["metric"].map(lambda m, tag=tag: spec.columns_by_tag.get(m) == tag)
        rows = rows[~tagged | splits]  # other metrics' per-tag rows are not columns of the table
        tagged = rows[tag].notna()
        values = {v: i for i, v in enumerate(dict.fromkeys(rows.loc[tagged, tag]))}
        rows.loc[tagged, "column"] = rows.loc[tagged, "column"] + " (" + rows.loc[tagged, tag].astype(str) + ")"
        rows.loc[tagged, "order"] += (1 + rows.loc[tagged, tag].map(values)) / (len(values) + 1)
    return rows


def _where(rows: pd.DataFrame, spec: ReportTable) -> pd.DataFrame:
    for col, wanted in spec.where.items():
        if col in rows:
            rows = rows[rows[col].isna() if wanted is None else rows[col] == wanted]
    return rows


def _grid_points(rows: pd.DataFrame, spec: ReportTable) -> pd.Series:
    """Each row's grid point: its parameters other than those the table lays out itself
    (`column_param`, the `table_by` ones)."""
    laid_out = [c for c in (f"param_{spec.column_param}", *spec.table_by) if c in rows]
    return point_keys(rows.drop(columns=laid_out))


def _best_per_seed(candidates: pd.DataFrame, spec: ReportTable) -> pd.DataFrame:
    """experiment, label, seed, point: the validation-best point per seed among those within
    the `subject_to` bounds (`candidates`: the untagged validation rows)."""
    keys = ["experiment", "label", "seed", "point"]
    wide = candidates.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean").reset_index()
    wide = wide.reindex(columns=[*keys, *spec.selection_metrics])
    for name, bound in spec.subject_to.items():
        wide = wide[wide[name] >= bound if metrics.higher_is_better(name) else wide[name] <= bound]
    wide = wide.dropna(subset=[spec.select])
    ascending = [not metrics.higher_is_better(spec.select), True]
    ranked = wide.sort_values([spec.select, "point"], ascending=ascending, kind="stable")
    return ranked.groupby(["experiment", "label", "seed"], sort=False).head(1)[keys]


def _selection_notes(chosen: pd.DataFrame, grid: pd.DataFrame, spec: ReportTable) -> dict[str, str]:
    """The caption's account per experiment: which point was chosen for how many seeds, and the
    seeds of `grid` with no point within the bounds (left out)."""
    bounds = ", ".join(f"{m} {'>=' if metrics.higher_is_better(m) else '<='} {b:g}" for m, b in spec.subject_to.items())
    rule = f"the best validation {spec.select}" + (f" with validation {bounds}" if bounds else "")
    notes = {}
    for experiment, sub in chosen.groupby("experiment", sort=False):
        counts = sub.groupby(["label", "point"]).size()
        per_label = [
            f"{label} " + ", ".join(f"{point} ({n}x)" for (_, point), n in group.items())
            for label, group in counts.groupby(level=0)
        ]
        notes[str(experiment)] = f"grid point per seed by {rule}: " + "; ".join(per_label)
    seeds = ["experiment", "label", "seed"]
    missing = grid[seeds].drop_duplicates().merge(chosen[seeds], how="left", indicator=True)
    for (experiment, label), sub in missing[missing["_merge"] == "left_only"].groupby(seeds[:2], sort=False):
        left_out = ", ".join(str(seed) for seed in sorted(sub["seed"]))
        notes[str(experiment)] = notes.get(str(experiment), f"grid point per seed by {rule}") + (
            f"; {label}: no point qualifies for seed {left_out} (left out)"
        )
    return notes


def choose_points(
    df: pd.DataFrame, spec: ReportTable, every_point: bool = False
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The rows of `spec` (its `where` applied) at the chosen grid point of each (experiment,
    label, seed), and the caption's note per experiment. A label at a single point keeps all its
    rows; with `every_point` or no `select`, every point is kept, its key in `shown_point`."""
    tags = tag_columns(df)
    rows = _where(df, spec)
    rows = rows.assign(label=rows["label"].fillna(rows["method"]), point=_grid_points(rows, spec))
    gridded = rows.groupby(["experiment", "label"])["point"].transform("nunique") > 1
    if not gridded.any():
        return rows, {}
    if every_point or not spec.select:
        rows["shown_point"] = rows["point"].where(gridded)
        return rows, {str(e): "every grid point is a row" for e in rows.loc[gridded, "experiment"].unique()}
    grid = rows[gridded]
    untagged = grid[tags].isna().all(axis=1) if tags else pd.Series(True, index=grid.index)
    candidates = grid[untagged & (grid["split"] == "val") & grid["metric"].isin(spec.selection_metrics)]
    chosen = _best_per_seed(candidates, spec)
    kept = grid.merge(chosen, on=["experiment", "label", "seed", "point"], how="inner")
    return pd.concat([rows[~gridded], kept], ignore_index=True), _selection_notes(chosen, grid, spec)


def table_cells(df: pd.DataFrame, spec: ReportTable, label_order: Sequence[str] = ()) -> pd.DataFrame:
    """Long table of cells: experiment, the present `table_by` columns, row, label, column,
    order, mean, std, n (`row` and `order` rank the rows and columns). `df`: rows as
    `choose_points` leaves them (a `shown_point` is appended to its row's label)."""
    rows = _where(df[df["metric"].isin(spec.metric_names) & (df["split"] == spec.split)], spec).copy()
    by = [c for c in spec.table_by if c in rows and (_named(spec, c) or rows[c].nunique() > 1)]
    columns = ["experiment", *by, "row", "label", "column", "order", "mean", "std", "n"]
    if spec.row_tags:
        rows = _tag_rows(rows, spec)
    else:
        rows["label"] = rows["label"].fillna(rows["method"])
        position = {label: i for i, label in enumerate(label_order)}
        rows["row"] = rows["label"].map(lambda label: position.get(label, len(position)))
    if "shown_point" in rows:
        shown = rows["shown_point"]
        rows["label"] = rows["label"].where(shown.isna(), rows["label"] + " (" + shown.astype(str) + ")")
    if spec.metrics:
        rows = _metric_columns(rows, spec)
    elif not rows.empty:
        rows = _param_columns(rows, spec)
    if rows.empty:
        return pd.DataFrame(columns=columns)
    for col in by:
        # Rows without a value in a table_by column belong to every table of their experiment.
        named = sorted(rows[col].dropna().unique(), key=str)
        if named:
            blank = rows[rows[col].isna()]
            rows = pd.concat([rows[rows[col].notna()], *[blank.assign(**{col: v}) for v in named]])
    keys = ["experiment", *by, "row", "label", "column", "order"]
    per_seed = rows.groupby([*keys, "seed"], dropna=False)["value"].mean().reset_index()
    cells = (
        per_seed.groupby(keys, dropna=False)["value"]
        .agg(mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, n="count")
        .reset_index()
    )
    return cells.sort_values(["experiment", *by, "row", "label", "order"]).reset_index(drop=True)[columns]


def _short(col: str) -> str:
    return col.removeprefix("param_")


def _named(spec: ReportTable, col: str) -> bool:
    return "{" + _short(col) + "}" in spec.caption


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool | np.bool_) else str(value)


@dataclass
class DeclaredTable:
    """One spec x experiment x `table_by` values: rows = labels (or tag values), columns =
    references and values (or metrics)."""

    spec: ReportTable
    experiment: str
    by: dict[str, object]
    cells: pd.DataFrame
    selection: str = ""  # which grid point the rows are at, and why (caption)

    @property
    def columns(self) -> list[str]:
        order = self.cells.drop_duplicates("column").sort_values("order")
        return list(order["column"])

    @property
    def header(self) -> list[str]:
        return [self.spec.row_header, *self.columns]

    def text_rows(self) -> list[list[str]]:
        out = []
        for label, sub in self.cells.groupby("label", sort=False):  # cells come sorted by row, label
            by_col = {r.column: fmt_mean_std(r.mean, r.std, r.n) for r in sub.itertuples()}
            out.append([str(label), *[by_col.get(c, "-") for c in self.columns]])
        return out

    @property
    def caption(self) -> str:
        values = {_short(k): "-" for k in self.spec.table_by}  # a named column absent from the results
        values |= {_short(k): self.spec.by_labels.get(k, {}).get(_text(v), _text(v)) for k, v in self.by.items()}
        text = self.spec.caption.format(split=self.spec.split, experiment=self.experiment, **values)
        text += "".join(f", {_short(k)}: {values[_short(k)]}" for k in self.by if not _named(self.spec, k))
        return text + (f"; {self.selection}" if self.selection else "")

    @property
    def stem(self) -> str:
        parts = [_text(v) if k == _short(k) else f"{_short(k)}-{_text(v)}" for k, v in self.by.items()]
        return "_".join(slug(p) for p in [self.spec.name, self.experiment, *parts])

    def markdown(self) -> str:
        return f"**{self.caption}**\n\n" + markdown_table(self.header, self.text_rows())

    def latex(self) -> str:
        return latex_table(self.header, self.text_rows(), caption=self.caption)

    def csv_frame(self) -> pd.DataFrame:
        return self.cells.drop(columns=["row", "order"])


def declared_tables(
    df: pd.DataFrame,
    method_tables: MethodTables,
    suite_specs: Sequence[ReportTable] = (),
    label_order: Sequence[str] = (),
    every_point: bool = False,
) -> list[DeclaredTable]:
    """Every table the methods present in `df` declare (per `method_tables`), each read from the rows of the methods
    that declare it, then the suite's `suite_specs`, read from every method's rows (a suite's
    table replaces a method's of the same name: GRAD's table with the NN row); may be empty.
    Rows labelled by method come in `label_order` (the suite's), others after, alphabetically.
    A label run at several grid points is read at the point its table selects (`choose_points`),
    or, with `every_point`, at every point."""
    out = []
    named = {spec.name for spec in suite_specs}
    sources = [
        (spec, df[df["method"].isin(methods)])
        for spec, methods in declaring_methods(df, method_tables)
        if spec.name not in named
    ]
    for spec, rows in [*sources, *((spec, df) for spec in suite_specs)]:
        chosen, notes = choose_points(rows, spec, every_point)
        cells = table_cells(chosen, spec, label_order)
        by = [c for c in spec.table_by if c in cells]
        for key, sub in cells.groupby(["experiment", *by], sort=True):
            values = dict(zip(by, key[1:], strict=True))
            note = notes.get(str(key[0]), "")
            out.append(DeclaredTable(spec, str(key[0]), values, sub.reset_index(drop=True), note))
    return out
