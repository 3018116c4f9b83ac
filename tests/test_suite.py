"""Suite parsing, overrides, includes, grid expansion, and every bad input's one-line error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from fairbench.errors import FairbenchError
from fairbench.plan import expand, group_units
from fairbench.runner import plan_units
from fairbench.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((ROOT / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_validate(path: Path) -> None:
    suite, _ = load_suite(path)
    assert expand(suite)
    # `fairbench ls suites` shows the file's own description (an include's is not read)
    assert (yaml.safe_load(path.read_text()) or {}).get("description"), f"{path.name} has no description"


def test_quickstart_time_agrees_with_readme() -> None:
    """The time the suite states is the one the README states (measured: see the README)."""
    description = yaml.safe_load((ROOT / "suites" / "quickstart.yaml").read_text())["description"]
    stated = re.search(r"about \d+ (?:seconds|minutes?)", description)
    assert stated, description
    assert f"quickstart runs offline in {stated.group()}" in " ".join((ROOT / "README.md").read_text().split())


def test_grid_expansion_counts_and_resolution(tiny_suite: Path) -> None:
    suite, _ = load_suite(tiny_suite)
    jobs = expand(suite)
    assert len(jobs) == 2 * (1 + 2)  # seeds x (erm + 2 lam points)
    adt = [j for j in jobs if j.method == "adt"]
    assert sorted({j.params["lam"] for j in adt}) == [1.0, 10.0]
    # quick budget sets epochs 20, the suite's params override it, defaults fill the rest
    assert all(j.params["epochs"] == 2 for j in jobs)
    assert adt[0].params["batch_size"] == 64 and adt[0].params["arch"] == "grad"
    assert len({j.job_id for j in jobs}) == len(jobs)
    assert [j.job_id for j in expand(load_suite(tiny_suite)[0])] == [j.job_id for j in jobs]


def test_overrides_and_include(tmp_path: Path, tiny_suite: Path) -> None:
    suite, _ = load_suite(tiny_suite, ["seeds=[3]", "methods.1.grid.lam=[5.0]"])
    assert suite.seeds == [3] and suite.methods[1].grid == {"lam": [5.0]}
    child = tmp_path / "child.yaml"
    child.write_text("include: tiny.yaml\nname: child\nseeds: [7]\n")
    merged, _ = load_suite(child)
    assert merged.name == "child" and merged.seeds == [7] and len(merged.methods) == 2


def test_job_id_ignores_suite_name_but_not_params(tiny_suite: Path, tmp_path: Path) -> None:
    a = {j.job_id for j in expand(load_suite(tiny_suite)[0])}
    b = {j.job_id for j in expand(load_suite(tiny_suite, ["name=other"])[0])}
    c = {j.job_id for j in expand(load_suite(tiny_suite, ["methods.0.params.epochs=3"])[0])}
    assert a == b and a != c


def test_units_stack_seeds_and_grid_points_of_small_networks_only(tiny_suite: Path) -> None:
    jobs = expand(load_suite(tiny_suite)[0])
    units = group_units(jobs, stack=True)
    # erm's 2 seeds; adt's 2 lams x 2 seeds
    assert [(unit[0].method, len(unit)) for unit in units] == [("erm", 2), ("adt", 4)]
    assert {(j.seed, j.params["lam"]) for j in units[1]} == {(0, 1.0), (1, 1.0), (0, 10.0), (1, 10.0)}
    assert all(len(unit) == 1 for unit in group_units(jobs, stack=False))
    # a large network trains alone; so do members that differ in a parameter that is not stackable
    resnet = expand(load_suite(tiny_suite, ["methods.0.params.arch=resnet18", "methods.1.grid.batch_size=[32, 64]"])[0])
    assert [len(unit) for unit in group_units(resnet, stack=True)] == [1, 1, 4, 4]


DVGE_GRID = """\
name: grid
budget: quick
experiments:
  - {dataset: synthetic, target: y, sensitive: s}
methods:
  - method: dvge
    grid: {eta1: [0.1, 0.5, 1.0]}
"""


@pytest.mark.parametrize(
    ("line", "mode"), [("", "auto"), ("stack: on", "on"), ("stack: off", "off"), ("stack: true", "on")]
)
def test_stack_modes_and_older_booleans(tmp_path: Path, line: str, mode: str) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(DVGE_GRID + line + "\n")
    assert load_suite(path)[0].stack == mode


def test_auto_trains_a_grid_one_by_one_on_a_cpu_unless_forced(tmp_path: Path, fairbench) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(DVGE_GRID)
    jobs = expand(load_suite(path)[0])
    assert [len(u) for u in plan_units(jobs, "auto", "cpu")] == [1, 1, 1]
    assert [len(u) for u in plan_units(jobs, "on", "cpu")] == [3]
    plans = {
        flags: fairbench("run", path, "--dry-run", "--device", "cpu", *flags).out
        for flags in [(), ("--stack", "on"), ("--stack", "off"), ("--no-stack",), ("--stack", "on", "--no-stack")]
    }
    units = {flags: out.split(" work units")[0].split()[-1] for flags, out in plans.items()}
    assert units == {
        (): "3",
        ("--stack", "on"): "1",
        ("--stack", "off"): "3",
        ("--no-stack",): "3",
        ("--stack", "on", "--no-stack"): "3",
    }


BAD = {
    "malformed_yaml": ("name: x\nseeds: [0\n", "malformed YAML"),
    "unknown_key": ("name: x\nseedz: [0]\n", "unknown key 'seedz' (did you mean 'seeds'?)"),
    "wrong_type": ("name: x\nseeds: zero\n", "seeds"),
    "unknown_method": ("methods:\n  - method: emr\n", "unknown method 'emr' (did you mean 'erm'?)"),
    "unknown_dataset": (
        "experiments:\n  - {dataset: adultt, target: income, sensitive: sex == 'Male'}\n",
        "unknown dataset 'adultt' (did you mean 'adult'?)",
    ),
    "unknown_column": (
        "experiments:\n  - {dataset: synthetic, target: y, sensitive: proxxy > 0}\n",
        "unknown column 'proxxy' in 'proxxy > 0' (did you mean 'proxy'?)",
    ),
    "grid_unknown_param": (
        "methods:\n  - method: adt\n    grid: {lamb: [1.0]}\n",
        "method 'adt' has no parameter 'lamb' (did you mean 'lam'?)",
    ),
    "empty_grid": ("methods:\n  - method: adt\n    grid: {lam: []}\n", "grid 'lam' is empty"),
    "bad_expression": (
        "experiments:\n  - {dataset: synthetic, target: y, sensitive: 's >'}\n",
        "cannot parse expression 's >'",
    ),
    "unknown_protocol": (
        "experiments:\n  - {dataset: synthetic, protocol: offical, target: y, sensitive: s}\n",
        "no protocol 'offical'",
    ),
    "unknown_budget": ("budget: quik\n", "no method of this suite has a budget 'quik' (did you mean 'quick'?)"),
    "bad_param_type": ("methods:\n  - method: adt\n    params: {epochs: many}\n", "expected int"),
    "bad_stack_mode": ("stack: sometimes\n", "stack: Input should be 'auto', 'on' or 'off'"),
}
BASE = """\
name: bad
experiments:
  - {dataset: synthetic, target: y, sensitive: s, options: {n: 300}}
methods:
  - method: erm
"""


def _bad_suite(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    try:
        override = yaml.safe_load(text)
    except yaml.YAMLError:
        path.write_text(text)
        return path
    data = yaml.safe_load(BASE)
    data.update(override)
    # Keep the offending text on its own lines so line numbers are meaningful.
    rest = {k: v for k, v in data.items() if k not in override}
    path.write_text(yaml.safe_dump(rest, sort_keys=False) + text)
    return path


def test_run_help_lists_every_exit_code(fairbench) -> None:
    result = fairbench("run", "--help")
    assert result.code == 0
    codes = re.findall(r"^\s+([0-9])\s+\S", result.out, flags=re.MULTILINE)
    assert codes == ["0", "1", "2"], result.out
    assert "bad input" in result.out


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_exit_2_nothing_written(case: str, tmp_path: Path, fairbench, monkeypatch) -> None:
    text, expected = BAD[case]
    path = _bad_suite(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    for command in (["validate", path], ["run", path, "--results", tmp_path / "out"]):
        result = fairbench(*command)
        assert result.code == 2, result
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.err, result.err
        assert expected in lines[0], lines[0]
        assert lines[0].startswith(f"error: {path}"), lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


def test_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(BASE + "    grid: {lam: [1.0]}\n")
    with pytest.raises(FairbenchError, match=r"s\.yaml:6: .*no parameter 'lam'"):
        load_suite(path)


def test_empty_group_missing_files_and_incompatible_store(tmp_path: Path, fairbench, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty.yaml"
    empty.write_text(BASE.replace("sensitive: s,", "sensitive: s == 5,"))
    result = fairbench("run", empty, "--results", tmp_path / "out")
    assert result.code == 2 and "selects an empty group" in result.err and not (tmp_path / "out").exists()

    adult = tmp_path / "adult.yaml"
    adult.write_text(
        BASE.replace(
            "{dataset: synthetic, target: y, sensitive: s, options: {n: 300}}",
            "{dataset: adult, target: income, sensitive: sex == 'Male'}",
        )
    )
    result = fairbench("run", adult, "--results", tmp_path / "out", "--data-dir", tmp_path / "nodata")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "nodata/uci_adult/adult.data is missing" in result.err and "fairbench data fetch adult" in result.err
    assert not (tmp_path / "out").exists()

    import sqlite3

    (tmp_path / "old").mkdir()
    with sqlite3.connect(tmp_path / "old" / "fairbench.sqlite") as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('format', '999')")
    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    result = fairbench("run", good, "--results", tmp_path / "old")
    assert result.code == 2 and "store format 999" in result.err and len(list((tmp_path / "old").iterdir())) == 1


def test_set_errors(tiny_suite: Path) -> None:
    with pytest.raises(FairbenchError, match="expected KEY=VALUE"):
        load_suite(tiny_suite, ["seeds"])
    with pytest.raises(FairbenchError, match=r"--set seeds=\[-1, x\]"):
        load_suite(tiny_suite, ["seeds=[-1, x]"])


def test_a_suite_with_three_mistakes_reports_all_three_lines_at_once(tmp_path: Path, fairbench) -> None:
    path = tmp_path / "three.yaml"
    path.write_text(
        "name: three\nexperiments:\n  - {dataset: synthetic, target: y, sensitive: proxxy > 0}\n"
        "methods:\n  - method: emr\n  - method: adt\n    grid: {lamb: [1.0]}\n"
    )
    result = fairbench("validate", path)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert [line.split(": ", 2)[1] for line in lines] == [f"{path}:3", f"{path}:5", f"{path}:7"], lines
    listing = "the columns: x0, x1, x2, x3, x4, proxy, s, grade, y"
    assert f"unknown column 'proxxy' in 'proxxy > 0' (did you mean 'proxy'?); {listing}" in lines[0]
    assert "`fairbench data describe synthetic --columns` lists them" in lines[0]
    assert "unknown method 'emr'" in lines[1] and "no parameter 'lamb'" in lines[2]


def test_schema_mistakes_are_reported_together_too(tmp_path: Path, fairbench) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text(BASE + "seedz: [0]\nstack: sometimes\n")
    lines = fairbench("validate", path).err.strip().splitlines()
    assert len(lines) == 2, lines
    assert sorted(line.split(": ", 2)[2][:12] for line in lines) == ["stack: Input", "unknown key "], lines


def test_data_describe_columns_lists_types_and_examples(fairbench) -> None:
    listed = fairbench("data", "describe", "synthetic", "--columns", "--json")
    assert listed.code == 0, listed.err
    rows = {row["column"]: row for row in json.loads(listed.out)}
    assert set(rows) >= {"y", "s", "proxy"}
    assert rows["y"]["distinct"] == 2 and rows["y"]["type"].startswith("int")
    bare = fairbench("data", "describe", "synthetic")
    assert bare.code == 2 and "--columns" in bare.err
