"""What a method declares about the report tables it feeds (`Method.report_tables`), and what
a suite declares under `report: {tables: [...]}` for tables over all its methods (a paper's
comparison table, which belongs to no single method).

A plain data spec below both the methods and the report (no pandas, no registry): methods import
it at registration time; `fairbench run` records each method's and the suite's tables in the
results store (fairbench/store.py), and the report renders them from there alone
(fairbench/report/declared.py), so it knows no method by name and needs no plugin installed.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from fairbench.errors import did_you_mean


@dataclass(frozen=True)
class ReportTable:
    """One family of tables read from a method's tagged metric rows.

    Rows of the tidy results table with the split and the metric(s) read are kept; a table is
    drawn per experiment and per value of each `table_by` column (a tag, or `param_<name>` for a
    job parameter) that the caption names or that takes more than one value. A row with no value
    in a `table_by` column (e.g. a reference that does not depend on it) goes into every table
    of its experiment. `where` keeps only rows whose column equals the value (None: rows with
    no value there), where that column exists. Cells are mean ± std over seeds (repeated rows
    of one seed are averaged first).

    Table rows are the method labels, or with `row_tags` one row per combination of those tags'
    values (rows lacking one are left out), labelled `row_label` formatted with each tag's text
    (`row_labels[tag][value]`, else the value) and ordered as `row_labels` lists the values.
    Columns are either (with `metric` and `column_param`), in order:
    - `references`: rows whose `reference_tag` has one of these values, headed by the mapped
      text; other `reference_tag` values on rows without a `column_param` value become further
      columns after them;
    - one column per value of `column_param` (a tag of that name wins over `param_<name>`),
      headed `column_label.format(value)`; rows with neither a reference nor a value are ignored;
    or (with `metrics`, metric -> header) one column per metric, in that order; with
    `columns_by_tag` (metric -> tag) that metric's rows tagged with a value of the tag get a column
    each after the metric's own, headed "header (value)", values in order of appearance (GRAD
    Table 2's discrimination per protected attribute); other metrics' rows with that tag are
    left out.

    A label run at several grid points (its parameters other than `column_param` and the
    `table_by` ones) gets one row: per seed, the point with the best validation `select` metric
    (by its orientation; ties by the point's name) among those within every validation bound of
    `subject_to` (metric -> bound: an upper bound for a lower-is-better metric, a lower bound
    otherwise); then cells average over seeds as above. Without `select`, or with the report's
    `--select all`, every point is a row of its own, "label (point)". The caption says which
    point was chosen how often. Selection never reads the test split.

    The caption is `caption` formatted with `split`, `experiment` and the `table_by` values
    (`param_` dropped; "-" where absent; `by_labels[column][value]` where given), followed by
    ", name: value" for each other column that splits. Files:
    `<name>_<experiment>_<values>.{md,tex,csv}`, a tag's value as is, a parameter's as
    `<param>-<value>`.
    """

    name: str
    caption: str
    metric: str = ""
    column_param: str = ""
    column_label: str = "{:g}"
    metrics: dict[str, str] = field(default_factory=dict)
    split: str = "test"
    row_header: str = "Label"
    row_tags: tuple[str, ...] = ()
    row_label: str = ""
    row_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    reference_tag: str = "variant"
    references: dict[str, str] = field(default_factory=dict)
    table_by: tuple[str, ...] = ()
    by_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    where: dict[str, Any] = field(default_factory=dict)
    columns_by_tag: dict[str, str] = field(default_factory=dict)
    select: str = ""
    subject_to: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if bool(self.metrics) == bool(self.metric and self.column_param):
            raise ValueError(
                f"report table {self.name!r}: give either `metric` and `column_param` or `metrics`, not both or neither"
            )
        if self.metrics and (self.metric or self.column_param or self.references):
            raise ValueError(
                f"report table {self.name!r}: `metrics` names the columns; "
                "drop `metric`, `column_param` and `references`"
            )
        if not set(self.columns_by_tag) <= set(self.metrics):
            raise ValueError(f"report table {self.name!r}: `columns_by_tag` names metrics that `metrics` lacks")
        if bool(self.row_tags) != bool(self.row_label) or not set(self.row_labels) <= set(self.row_tags):
            raise ValueError(
                f"report table {self.name!r}: `row_label` and `row_labels` format the `row_tags`; give them together"
            )
        if self.subject_to and not self.select:
            raise ValueError(
                f"report table {self.name!r}: `subject_to` bounds the grid points `select` chooses from; give `select`"
            )
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.subject_to.values()):
            raise ValueError(
                f"report table {self.name!r}: `subject_to` maps a metric to a number (its validation bound)"
            )

    @property
    def selection_metrics(self) -> tuple[str, ...]:
        """The validation metrics the grid-point selection reads."""
        return (self.select, *self.subject_to) if self.select else ()

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics the table reads."""
        return tuple(self.metrics) or (self.metric,)


def table_from_mapping(entry: Any) -> ReportTable:
    """A ReportTable from one entry of a suite's `report: {tables: [...]}`: a mapping of the
    same fields (lists for tuples). Raises ValueError with a one-line reason."""
    if not isinstance(entry, dict):
        raise ValueError("a table is a mapping of ReportTable fields (name, caption, metrics, ...)")
    known = {f.name: f for f in fields(ReportTable)}
    for key in entry:
        if key not in known:
            raise ValueError(f"unknown key '{key}'{did_you_mean(str(key), known)}")
    for name, spec in known.items():
        if name not in entry and spec.default is MISSING and spec.default_factory is MISSING:
            raise ValueError(f"missing required key '{name}'")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in entry.items()}
    return ReportTable(**values)


def table_to_mapping(spec: ReportTable) -> dict[str, Any]:
    """The fields of `spec` as plain JSON-ready values (tuples as lists): the inverse of
    `table_from_mapping`, used to record a table in the results store."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(spec).items()}
