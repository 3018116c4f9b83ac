"""Shared fixtures: an isolated artifact cache, the real-data folder, golden files and an in-process CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's cache or the network from a test."""
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "artifact-cache"))
    monkeypatch.setenv("FAIRBENCH_OFFLINE", "1")


def real_data_folder(*needed: str) -> Path:
    """The real data folder holding every path in `needed`, or skip saying how to provide it.

    $FAIRBENCH_DATA if set, else ../shared/data beside the repository (where every developer
    and CI run has it), so a plain `python -m pytest` runs the real-data tests.
    """
    folder = Path(os.environ.get("FAIRBENCH_DATA") or SHARED_DATA)
    absent = [path for path in needed if not (folder / path).exists()]
    if absent:
        pytest.skip(
            f"real data absent: set FAIRBENCH_DATA to a folder holding {', '.join(absent)} "
            f"(as ../shared/data does; {folder} lacks it)"
        )
    return folder


@pytest.fixture
def float64() -> Iterator[None]:
    """torch's default dtype float64 for the test: stacked-equals-solo checks, where float32's
    rounding of batched kernels would hide a mistake (see tests/test_members.py)."""
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.fixture
def real_data() -> Callable[..., Path]:
    """`real_data("uci_adult/")` returns the real data folder, or skips the test saying what is needed."""
    return real_data_folder


@pytest.fixture
def golden() -> Callable[[Path, str], None]:
    """`golden(path, text)`: compare with a golden file (see `check_golden`)."""
    return check_golden


def check_golden(path: Path, text: str) -> None:
    """Compare `text` with the golden file `path`; FAIRBENCH_UPDATE_GOLDEN=1 (and only that)
    rewrites it, after you have checked the diff by eye."""
    if os.environ.get("FAIRBENCH_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not path.exists():
        pytest.fail(
            f"golden file {path} is missing; create it with FAIRBENCH_UPDATE_GOLDEN=1 python -m pytest "
            f"{Path(os.environ.get('PYTEST_CURRENT_TEST', 'tests').split('::')[0])} and check it by eye"
        )
    assert text == path.read_text(), f"{path.name} differs from its golden file (see the diff above)"


@pytest.fixture
def plugin_site(tmp_path: Path) -> Callable[..., Path]:
    """`plugin_site(dist, {group: {name: "module:attr"}}, **modules)` installs a distribution
    into a fresh folder the way pip leaves it (`<dist>.dist-info/` with METADATA and
    entry_points.txt, plus the given top-level modules' source); returns the folder, to put
    on sys.path or PYTHONPATH."""

    def install(dist: str, entry_points: dict[str, dict[str, str]], **modules: str) -> Path:
        site = tmp_path / "site" / dist
        info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        groups = [
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in names.items()) for group, names in entry_points.items()
        ]
        (info / "entry_points.txt").write_text("\n".join(groups))
        for module, source in modules.items():
            (site / f"{module}.py").write_text(source)
        return site

    return install


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def fairbench(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `fairbench ARGS...` in this process through the real entry point (exit codes included)."""
    from fairbench.cli import main

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["fairbench", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


TINY_SUITE = """\
name: tiny
seeds: [0, 1]
budget: quick
experiments:
  - dataset: synthetic
    target: y
    sensitive: s
    options: {n: 600}
methods:
  - method: erm
    params: {epochs: 2}
  - method: adt
    label: ADT
    params: {arch: grad, epochs: 2}
    grid: {lam: [1.0, 10.0]}
"""


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SUITE)
    return path


SLOW_SUITE = """\
name: slow
seeds: [0, 1, 2, 3, 4, 5]
budget: quick
experiments:
  - {dataset: synthetic, target: y, sensitive: s, options: {n: 600}}
methods:
  - method: sleepy
"""

# A real plugin (found through its entry point, as an installed package would be): the job of
# seed 1 writes its worker's pid and sleeps on its first attempt; every other job takes a second,
# so that jobs are still waiting when the sleeper's worker is killed.
SLEEPY_PLUGIN = """\
import os, time
from pathlib import Path
import numpy as np
from fairbench.methods.base import HParam, Method, Outcome

class Sleepy(Method):
    name = "sleepy"
    description = "sleeps on seed 1 (tests)"
    hparams = {"unused": HParam(0, "nothing")}
    budgets = {"paper": {}, "quick": {}}

    def run(self, data, ctx):
        marker = Path(os.environ["SLEEPY_PID"])
        if ctx.seed == 1 and not marker.exists():
            marker.write_text(str(os.getpid()))
            time.sleep(120)
        time.sleep(1.0)
        return Outcome({s: np.full(len(data.splits[s]), 0.5) for s in ("val", "test")})
"""


class SleepyRun(NamedTuple):
    """`fairbench run` of a 6-job suite of the sleepy plugin, in a subprocess: the command (add
    the results folder), its environment, and the file the sleeper writes its pid to."""

    command: list[str]
    env: dict[str, str]
    marker: Path

    def wait_pid(self, process: subprocess.Popen) -> int:
        """The sleeping job's process id, once it has started."""
        deadline = time.time() + 120
        while not (self.marker.exists() and self.marker.read_text()) and time.time() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the run ended before the sleeping job started: {process.communicate()[1]}")
            time.sleep(0.05)
        assert self.marker.exists(), "the sleeping job never started"
        return int(self.marker.read_text())


@pytest.fixture
def sleepy(tmp_path: Path, plugin_site: Callable[..., Path]) -> SleepyRun:
    site = plugin_site("sleepy", {"fairbench.methods": {"sleepy": "sleepy_plugin:Sleepy"}}, sleepy_plugin=SLEEPY_PLUGIN)
    suite = tmp_path / "slow.yaml"
    suite.write_text(SLOW_SUITE)
    marker = tmp_path / "sleepy.pid"
    env = {
        **os.environ,
        "SLEEPY_PID": str(marker),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(site), os.environ.get("PYTHONPATH", "")]),
    }
    return SleepyRun([sys.executable, "-m", "fairbench", "run", str(suite), "--results"], env, marker)
