"""What a method declares about the report tables it feeds (`Method.report_tables`).

A light module (no pandas): methods import it at registration time. The report finds the
methods present in a results table through the METHODS registry and renders every table they
declare (fairbench/report/declared.py); it knows no method by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ReportTable:
    """One family of tables read from a method's tagged metric rows.

    Rows of the tidy results table with `metric` and `split` are read; a table is drawn per
    experiment and per value of each `table_by` column (a tag, or `param_<name>` for a job
    parameter) that the caption names or that takes more than one value. A row with no value
    in a `table_by` column (e.g. a reference that does not depend on it) goes into every table
    of its experiment. Table rows are the method labels;
    columns are, in order:
    - `references`: rows whose `reference_tag` has one of these values, headed by the mapped
      text; other `reference_tag` values on rows without a `column_param` value become further
      columns after them;
    - one column per value of `column_param` (a tag of that name wins over `param_<name>`),
      headed `column_label.format(value)`; rows with neither a reference nor a value are ignored.
    `where` keeps only rows whose column equals the value, where that column exists. Cells are
    mean ± std over seeds (repeated rows of one seed are averaged first).

    The caption is `caption` formatted with `split`, `experiment` and the `table_by` values
    (`param_` dropped; "-" where absent), followed by ", name: value" for each other column
    that splits. Files:
    `<name>_<experiment>_<values>.{md,tex,csv}`, a tag's value as is, a parameter's as
    `<param>-<value>`.
    """

    name: str
    metric: str
    caption: str
    column_param: str
    column_label: str = "{:g}"
    split: str = "test"
    row_header: str = "Label"
    reference_tag: str = "variant"
    references: dict[str, str] = field(default_factory=dict)
    table_by: tuple[str, ...] = ()
    where: dict[str, Any] = field(default_factory=dict)
