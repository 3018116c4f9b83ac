"""Shared fixtures: an isolated artifact cache, the real-data folder, and an in-process CLI."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's cache or the network from a test."""
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "artifact-cache"))
    monkeypatch.setenv("FAIRBENCH_OFFLINE", "1")


@pytest.fixture
def real_data() -> Path:
    """The real data folder from $FAIRBENCH_DATA (CI points it at ../shared/data)."""
    folder = os.environ.get("FAIRBENCH_DATA")
    if not folder or not Path(folder).is_dir():
        pytest.skip("real data absent: set FAIRBENCH_DATA to a folder laid out like ../shared/data")
    return Path(folder)


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
