"""Tables a suite declares under `report: {tables: [...]}`: checked when the suite loads, rendered
by `fairbench report --ablation` from the rows of every method of the run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fairbench.report.declared import declared_tables
from fairbench.table_spec import ReportTable, table_from_mapping

SUITE = """\
name: tables
seeds: [0, 1]
budget: quick
experiments:
  - name: syn
    dataset: synthetic
    target: y
    sensitive: s
    options: {n: 400}
methods:
  - {method: erm, label: Vanilla, params: {epochs: 1}}
  - {method: adt, label: Adversarial, params: {arch: grad, epochs: 1}}
report:
  tables:
    - name: paper
      caption: "Paper table on the {split} split, {experiment}"
      metrics: {acc: Accuracy, dp: DP}
"""


def test_suite_table_reads_every_method(tmp_path: Path, fairbench) -> None:
    suite = tmp_path / "tables.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    assert fairbench("run", suite, "--results", out, "--threads", "1").code == 0
    assert fairbench("report", out, "--ablation").code == 0
    text = (out / "report" / "paper_syn.md").read_text()
    assert text.startswith("**Paper table on the test split, syn**")
    assert "| Label | Accuracy | DP |" in text
    results = pd.read_csv(out / "results.csv")
    for label in ("Vanilla", "Adversarial"):
        acc = results[(results.label == label) & (results.metric == "acc") & (results.split == "test")]
        mean = acc.groupby("seed")["value"].mean().mean()
        assert f"| {label} | {mean:.3f} ± " in text


def test_suite_tables_are_checked_when_the_suite_loads(tmp_path: Path, fairbench) -> None:
    cases = {
        "metrics: {acc: Accuracy, dp: DP}": "metrics: {acc: Accuracy, dpp: DP}",
        "      caption:": "      captoin:",
        "DP}\n": "DP}\n      select: acc_meen\n",
        "      metrics:": "      subject_to: {dp: 0.1}\n      metrics:",
    }
    for (old, new), message in zip(
        cases.items(),
        [
            "tables.yaml:17: report.tables[0]: unknown metric 'dpp' (did you mean 'dp'?)",
            "tables.yaml:16: report.tables[0]: unknown key 'captoin' (did you mean 'caption'?)",
            "tables.yaml:18: report.tables[0]: unknown metric 'acc_meen' (did you mean 'acc_mean'?)",
            "report.tables[0]: report table 'paper': `subject_to` bounds the grid points `select` chooses from",
        ],
        strict=True,
    ):
        suite = tmp_path / "tables.yaml"
        suite.write_text(SUITE.replace(old, new))
        result = fairbench("validate", suite)
        assert result.code == 2 and message in result.err and "Traceback" not in result.err


def test_table_from_mapping_needs_name_and_caption_and_one_kind_of_columns() -> None:
    spec = table_from_mapping({"name": "t", "caption": "c", "metrics": {"acc": "A"}, "table_by": ["x"]})
    assert spec == ReportTable("t", "c", metrics={"acc": "A"}, table_by=("x",))
    for entry, reason in (
        ({"caption": "c", "metrics": {"acc": "A"}}, "missing required key 'name'"),
        ({"name": "t", "caption": "c"}, "give either `metric` and `column_param` or `metrics`"),
        (["name"], "a table is a mapping"),
    ):
        try:
            table_from_mapping(entry)
        except ValueError as error:
            assert reason in str(error)
        else:
            raise AssertionError(f"{entry} was accepted")


def test_suite_table_and_method_table_side_by_side() -> None:
    """A suite's table reads every method's rows; a method's table only its own."""
    rows = [
        {"experiment": "e", "label": lab, "method": m, "seed": 0, "split": "test", "metric": "acc", "value": v}
        for lab, m, v in (("Vanilla", "erm", 0.8), ("Adversarial", "adt", 0.7))
    ]
    spec = ReportTable("paper", "{experiment}", metrics={"acc": "Accuracy"})
    (table,) = declared_tables(pd.DataFrame(rows), {"erm": (), "adt": ()}, [spec])
    assert table.text_rows() == [["Adversarial", "0.700"], ["Vanilla", "0.800"]]


def test_the_suites_report_settings_are_checked_when_the_suite_loads(tmp_path: Path, fairbench) -> None:
    """What the report reads of a suite is checked once, here, rather than skipped by the report."""
    cases = {
        "  pareto: [[dp, acc], [eoo, acc]]": "tables.yaml:14: report.pareto.1.0: unknown metric 'eoo' (did you mean",
        "  sweep: [lamb]": "tables.yaml:14: report.sweep: no method of this suite has a parameter 'lamb' (did you "
        "mean 'lam'?)",
        "  sweep_metrics: [acc, dpp]": "tables.yaml:14: report.sweep_metrics.1: unknown metric 'dpp'",
        "  ablation: true": "tables.yaml:14: unknown key 'report.ablation'",
    }
    for line, message in cases.items():
        suite = tmp_path / "tables.yaml"
        suite.write_text(SUITE.replace("report:\n", f"report:\n{line}\n"))
        result = fairbench("validate", suite)
        assert result.code == 2 and message in result.err and "Traceback" not in result.err, result.err
    suite.write_text(SUITE.replace("report:\n", "report:\n  pareto: [[dp, acc], [eo, acc]]\n  sweep: [lam]\n"))
    assert fairbench("validate", suite).code == 0
