"""The `fairbench` command's entry point says so when PyPI's `fairbench` (another project) is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _launch(pythonpath: list[Path], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    command = [sys.executable, "-c", "from fairbench_suite import main; main()", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_a_shadowing_fairbench_package_is_named_in_one_line_with_exit_2(tmp_path: Path) -> None:
    other = tmp_path / "site" / "fairbench"  # laid out like PyPI's fairbench 0.9.6: v1, v2, no cli
    (other / "v1").mkdir(parents=True)
    (other / "v1" / "__init__.py").write_text("")
    (other / "__init__.py").write_text("from fairbench import v1\n")
    done = _launch([tmp_path / "site", ROOT], tmp_path, "ls", "methods")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"imported from {other / '__init__.py'} is not fairbench-suite's" in done.stderr
    assert "pip uninstall fairbench" in done.stderr


def test_the_entry_point_runs_the_cli_when_fairbench_is_ours(tmp_path: Path) -> None:
    done = _launch([ROOT], tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert "fairbench, version" in done.stdout
