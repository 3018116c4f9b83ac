"""The lazy registry and the worked plugin example, installed for real and run through a suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fairbench.errors import FairbenchError
from fairbench.registry import DATASETS, METHODS, Registry

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fairbench-reweighing"


def test_unknown_names_suggest() -> None:
    with pytest.raises(FairbenchError, match=r"unknown method 'grad_prd' \(did you mean 'grad_pred'\?\)"):
        METHODS.get("grad_prd")
    with pytest.raises(FairbenchError, match="did you mean 'south_german_credit'"):
        DATASETS.get("south_german")


def test_lazy_and_broken_targets() -> None:
    registry = Registry("thing", "fairbench.no_such_group", {"broken": "fairbench.no_such_module:X"})
    assert registry.names() == ["broken"]  # listing imports nothing
    with pytest.raises(FairbenchError, match="thing 'broken' .* failed to load"):
        registry.get("broken")


def test_every_builtin_declares_its_contract() -> None:
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert cls.name == name and cls.description and cls.hparams
        for budget in cls.budgets:
            assert set(cls.budgets[budget]) <= set(cls.hparams), (name, budget)
        assert set(cls.defaults_from) <= set(cls.hparams), name  # where defaults come from: own parameters
        assert set(cls.defaults_from.values()) <= {"paper", "released code", "our choice"}, name
        for table in cls.report_tables:  # the parameters a declared table reads are the method's own
            params = [c.removeprefix("param_") for c in (*table.table_by, *table.where) if c.startswith("param_")]
            assert {table.column_param, *params} - {""} <= set(cls.hparams), (name, table.name)
    for name in DATASETS.names():
        cls = DATASETS.get(name)
        assert cls.name == name and cls.description and cls.protocols and cls().column_names()


def test_plugin_named_like_a_builtin_is_an_error(plugin_site, monkeypatch: pytest.MonkeyPatch) -> None:
    site = plugin_site("fairbench-shadow", {"fairbench.methods": {"erm": "fairbench_shadow:ERM"}})
    monkeypatch.syspath_prepend(str(site))
    registry = Registry("method", "fairbench.methods", {"erm": "fairbench.methods.erm:ERM"})
    message = (
        "plugin (fairbench-shadow) registers method 'erm' (entry point fairbench.methods: fairbench_shadow:ERM), "
        "which is already the built-in method 'erm' (fairbench.methods.erm:ERM); rename it"
    )
    for use in (registry.names, lambda: registry.get("erm"), lambda: "x" in registry):
        with pytest.raises(FairbenchError, match=re.escape(message)):
            use()
    # the real command: one line, exit 2
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    listing = subprocess.run(
        [sys.executable, "-m", "fairbench", "ls", "methods"], env=env, capture_output=True, text=True
    )
    assert listing.returncode == 2 and len(listing.stderr.strip().splitlines()) == 1, listing.stderr
    assert "fairbench-shadow" in listing.stderr and "built-in method 'erm'" in listing.stderr


def test_two_plugins_with_one_name_is_an_error(plugin_site, monkeypatch: pytest.MonkeyPatch) -> None:
    for dist in ("fairbench-one", "fairbench-two"):
        site = plugin_site(dist, {"fairbench.datasets": {"toy": f"{dist.replace('-', '_')}:Toy"}})
        monkeypatch.syspath_prepend(str(site))
    registry = Registry("dataset", "fairbench.datasets", {})
    with pytest.raises(
        FairbenchError,
        match=r"plugin \(fairbench-(one|two)\) registers dataset 'toy' .* already the "
        r"plugin \(fairbench-(one|two)\) dataset 'toy'",
    ):
        registry.names()


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
    )
    return target


def test_plugin_installs_lists_and_runs(installed_plugin: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": f"{installed_plugin}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "COLUMNS": "200",
    }

    def fairbench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "fairbench", *args], env=env, capture_output=True, text=True, cwd=tmp_path
        )

    listing = fairbench("ls", "methods")
    assert (
        listing.returncode == 0 and "reweighing" in listing.stdout and "plugin (fairbench-reweighing)" in listing.stdout
    )
    documented = fairbench("ls", "methods", "reweighing").stdout
    assert "Faisal Kamiran, Toon Calders, *Data preprocessing techniques" in documented
    assert "| `strength` | float | `1.0` |  | paper |" in documented
    run = fairbench("run", str(EXAMPLE / "suite.yaml"), "--results", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    import pandas as pd

    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(table["method"]) == {"erm", "reweighing"}
    test_dp = table[(table.metric == "dp") & (table.split == "test")].set_index("param_strength")["value"]
    assert test_dp[1.0] < test_dp[0.0]  # reweighing closes the demographic-parity gap
