"""`fairbench report` reads only the results folder: a run records its methods' declared tables
and defaults and its suite's report settings in the store, so a folder made with a plugin reports
on a machine without it, and a store written before they were recorded says how to record them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fairbench.errors import FairbenchError
from fairbench.registry import METHODS
from fairbench.report import build_report
from fairbench.report.build import Options
from fairbench.store import STORE_FILE, load_report_specs

PLUGIN = """\
from fairbench.methods.erm import ERM
from fairbench.table_spec import ReportTable


class Tabled(ERM):
    name = "tabled"
    description = "ERM that declares a report table"
    budgets = {"paper": {}, "quick": {"epochs": 1}}
    report_tables = (
        ReportTable(name="plugin_table", caption="Plugin table on the {split} split, {experiment}",
                    metrics={"acc": "Accuracy", "dp": "DP"}),
    )
"""

SUITE = """\
name: plugin_tables
seeds: [0]
budget: quick
experiments:
  - {name: syn, dataset: synthetic, target: y, sensitive: s, options: {n: 300}}
methods:
  - {method: tabled, label: Tabled}
  - {method: erm, label: NN, params: {epochs: 1}}
report:
  pareto: [[eo, acc]]
"""


@pytest.fixture
def tabled(plugin_site, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The `tabled` plugin, registered in this process; returns its site folder."""
    site = plugin_site(
        "fairbench-tabled", {"fairbench.methods": {"tabled": "tabled_plugin:Tabled"}}, tabled_plugin=PLUGIN
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(METHODS, "_scanned", False)  # rescan: finds the entry point
    assert "tabled" in METHODS
    yield site
    for names in (METHODS._targets, METHODS._origin, METHODS._loaded):
        names.pop("tabled", None)
    sys.modules.pop("tabled_plugin", None)


def run_with_plugin(tmp_path: Path, fairbench) -> Path:
    """SUITE's results folder, run with the `tabled` plugin registered."""
    suite, out = tmp_path / "suite.yaml", tmp_path / "out"
    suite.write_text(SUITE)
    assert fairbench("run", suite, "--results", out, "--threads", "1").code == 0
    recorded = load_report_specs(out)
    assert recorded.method_tables == {"tabled": METHODS.get("tabled").report_tables, "erm": ()}
    assert recorded.defaults[("tabled", "quick")]["epochs"] == 1 and recorded.pairs == (("eo", "acc"),)
    return out


def check_report(out: Path) -> None:
    """The plugin's table and the suite's metric pair, as `report --ablation --pareto` wrote them."""
    text = (out / "report" / "plugin_table_syn.md").read_text()
    assert text.startswith("**Plugin table on the test split, syn**") and "| Tabled |" in text
    assert "| NN |" not in text  # a method's table reads only the rows of the methods declaring it
    assert (out / "report" / "pareto_syn_eo-acc.png").exists()  # the suite's pairs, not the default dp:acc
    assert not (out / "report" / "pareto_syn_dp-acc.png").exists()


def test_a_plugins_table_reports_once_the_plugin_is_gone(tabled: Path, tmp_path: Path, fairbench) -> None:
    out = run_with_plugin(tmp_path, fairbench)
    sys.path.remove(str(tabled))  # uninstalled: neither registered nor importable
    for names in (METHODS._targets, METHODS._origin, METHODS._loaded):
        names.pop("tabled", None)
    sys.modules.pop("tabled_plugin", None)
    assert "tabled" not in METHODS
    assert fairbench("report", out, "--ablation", "--pareto").code == 0
    check_report(out)


@pytest.mark.slow
def test_a_plugins_table_reports_on_a_machine_without_the_plugin(tabled: Path, tmp_path: Path, fairbench) -> None:
    """As the test above, the report in a fresh interpreter whose path never held the plugin."""
    out = run_with_plugin(tmp_path, fairbench)
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    check = "import importlib.util, sys; sys.exit(importlib.util.find_spec('tabled_plugin') is not None)"
    assert subprocess.run([sys.executable, "-c", check], env=env).returncode == 0
    report = subprocess.run(
        [sys.executable, "-m", "fairbench", "report", str(out), "--ablation", "--pareto"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr
    check_report(out)


def test_a_store_without_records_says_how_to_get_them(tabled: Path, tmp_path: Path, fairbench) -> None:
    out = run_with_plugin(tmp_path, fairbench)
    with sqlite3.connect(out / STORE_FILE) as db:  # as a store written before the records were
        db.execute("DROP TABLE methods")
        db.execute("DELETE FROM meta WHERE key = 'suite_report'")
    with pytest.raises(FairbenchError, match=r"records no report tables or defaults for erm, tabled .* run the suite"):
        build_report(out, Options(parts={"ablation"}, out=tmp_path / "r1"))
    report = build_report(out, Options(out=tmp_path / "r2"))
    (declared,) = [s for s in report.sections if s.title.startswith("Declared tables")]
    assert not declared.tables and "fairbench run SUITE --results" in declared.notes[0]
    rerun = fairbench("run", tmp_path / "suite.yaml", "--results", out, "--threads", "1")
    assert rerun.code == 0 and "2 already done, 0 to run" in rerun.err  # recording reruns nothing
    assert [t.name for t in load_report_specs(out).method_tables["tabled"]] == ["plugin_table"]


def test_a_recorded_table_this_fairbench_cannot_read_is_a_one_line_error(tmp_path: Path) -> None:
    from fairbench.runner import registered_specs
    from fairbench.store import Store

    store = Store(tmp_path)
    store.record_report_specs(registered_specs(["dvge"], "paper"))
    with store.db:  # as recorded by a fairbench whose ReportTable has another field
        store.db.execute("UPDATE methods SET report_tables = ?", ('[{"name": "t", "caption": "c", "colour": "red"}]',))
    store.close()
    with pytest.raises(FairbenchError, match=r"does not read in this fairbench .*unknown key 'colour'.* run its suite"):
        load_report_specs(tmp_path)
