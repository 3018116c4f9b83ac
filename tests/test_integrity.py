"""The store keeps what it has and holds nothing stale: a failed --force rerun keeps the good
result, bad metric tags fail their job, one run per results folder, a dead worker fails only
its own job, job identity (label out, versions in), split seeds, CUDA determinism flags."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairbench.artifacts import ArtifactCache
from fairbench.errors import FairbenchError
from fairbench.methods.base import HParam, Method, MetricRow, Outcome
from fairbench.plan import expand
from fairbench.registry import DATASETS, METHODS
from fairbench.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent
ONE_JOB = ["--set", "seeds=[0]", "--set", "methods=[{method: flaky}]"]


def _constant(data) -> dict[str, np.ndarray]:
    return {split: np.full(len(data.splits[split]), 0.5) for split in ("val", "test")}


class Flaky(Method):
    name = "flaky"
    description = "fails while `failing` is set (tests)"
    hparams = {"unused": HParam(0, "nothing")}
    budgets = {"paper": {}, "quick": {}}
    failing = False

    def run(self, data, ctx):
        if Flaky.failing:
            raise RuntimeError("flaky on purpose")
        return Outcome(_constant(data))


class Tagger(Method):
    name = "tagger"
    description = "reports a metric whose tag collides with a table column (tests)"
    hparams = {"tag": HParam("label", "the tag's name")}
    budgets = {"paper": {}, "quick": {}}

    def run(self, data, ctx):
        return Outcome(_constant(data), metrics=[MetricRow("test", "extra", 1.0, {self.params["tag"]: "x"})])


@pytest.fixture
def plugins():
    for cls in (Flaky, Tagger):
        METHODS.register(cls.name, cls)
    yield
    for cls in (Flaky, Tagger):
        METHODS._targets.pop(cls.name), METHODS._loaded.pop(cls.name)
    Flaky.failing = False


def _jobs(folder: Path) -> list[tuple]:
    with sqlite3.connect(folder / "fairbench.sqlite") as db:
        return db.execute("SELECT status, error, last_error FROM jobs").fetchall()


def test_failed_force_rerun_keeps_the_good_result(tiny_suite: Path, tmp_path: Path, fairbench, plugins) -> None:
    out = tmp_path / "out"
    assert fairbench("run", tiny_suite, "--results", out, *ONE_JOB).code == 0
    before = pd.read_parquet(out / "results.parquet")
    Flaky.failing = True
    rerun = fairbench("run", tiny_suite, "--results", out, *ONE_JOB, "--force")
    assert rerun.code == 1 and "flaky on purpose" in rerun.err and "kept the earlier result" in rerun.err
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), before)
    [(status, error, last_error)] = _jobs(out)
    assert status == "done" and error is None and "RuntimeError: flaky on purpose" in last_error
    Flaky.failing = False
    assert fairbench("run", tiny_suite, "--results", out, *ONE_JOB, "--force").code == 0
    assert _jobs(out) == [("done", None, None)]


@pytest.mark.parametrize("tag", ["label", "seed", "value", "split_seed", "param_lr"])
def test_metric_tag_named_like_a_column_fails_its_job(tag: str, tiny_suite, tmp_path, fairbench, plugins) -> None:
    out = tmp_path / "out"
    methods = f"methods=[{{method: tagger, params: {{tag: {tag}}}}}, {{method: flaky}}]"
    result = fairbench("run", tiny_suite, "--results", out, "--set", "seeds=[0]", "--set", methods)
    assert result.code == 1, result.err
    assert f"method 'tagger' tags metric 'extra' with '{tag}', a column of the results table" in result.err
    assert set(pd.read_csv(out / "results.csv")["method"]) == {"flaky"}
    assert fairbench("report", out, "--tables").code == 0


def test_second_run_on_a_busy_folder_exits_2_at_once(sleepy, tmp_path: Path) -> None:
    command, env, marker = sleepy
    out = tmp_path / "out"
    first = subprocess.Popen([*command, str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sleepy.wait_pid(first)
        second = subprocess.run([*command, str(out)], env=env, capture_output=True, text=True, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert str(out) in lines[0] and f"pid {first.pid}" in lines[0]
    resumed = subprocess.run([*command, str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr


def test_kill_9_of_a_worker_fails_only_its_job(sleepy, tmp_path: Path) -> None:
    command, env, marker = sleepy
    out = tmp_path / "out"
    run = subprocess.Popen(
        [*command, str(out), "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    os.kill(sleepy.wait_pid(run), signal.SIGKILL)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 1, err
    with sqlite3.connect(out / "fairbench.sqlite") as db:
        rows = db.execute("SELECT seed, status, error FROM jobs ORDER BY seed").fetchall()
    assert [status for _, status, _ in rows] == ["done", "failed", "done", "done", "done", "done"]
    assert "worker process died (killed by signal 9" in rows[1][2] and "1 of 6 jobs failed" in err
    resumed = subprocess.run([*command, str(out), "--workers", "2"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0 and "5 already done, 1 to run" in resumed.stderr, resumed.stderr


def test_label_is_not_part_of_a_jobs_identity(tiny_suite: Path) -> None:
    ids = [j.job_id for j in expand(load_suite(tiny_suite)[0])]
    relabelled = expand(load_suite(tiny_suite, ["methods.1.label=Renamed"])[0])
    assert [j.job_id for j in relabelled] == ids and relabelled[-1].label == "Renamed"


def test_entries_differing_only_by_label_are_an_error(tiny_suite: Path, tmp_path: Path) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text(
        "include: tiny.yaml\nmethods:\n  - {method: erm, label: A}\n  - {method: adt, label: B}\n"
        "  - {method: erm, label: C}\n"
    )
    with pytest.raises(FairbenchError, match=r"twice\.yaml:5: methods 'A' and 'C' are the same jobs"):
        load_suite(twice)
    different = "methods=[{method: erm, label: A}, {method: erm, label: C, params: {epochs: 3}}]"
    assert len(expand(load_suite(tiny_suite, [different])[0])) == 4


def test_method_and_dataset_versions_are_part_of_the_identity(tiny_suite: Path, monkeypatch) -> None:
    suite = load_suite(tiny_suite)[0]
    before = [j.job_id for j in expand(suite)]
    monkeypatch.setattr(METHODS.get("erm"), "version", 2)
    bumped = [j.job_id for j in expand(suite)]
    assert [a == b for a, b in zip(before, bumped)] == [j.method != "erm" for j in expand(suite)]
    monkeypatch.setattr(DATASETS.get("synthetic"), "version", 2)
    assert not set(bumped) & {j.job_id for j in expand(suite)}


def test_artifact_keys_carry_a_version(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    with pytest.raises(ValueError, match="'version'"):
        cache.get("thing", {"seed": 0}, lambda folder: None)
    one = cache.path("thing", {"version": 1, "seed": 0})
    assert one != cache.path("thing", {"version": 2, "seed": 0})


def test_resume_notes_jobs_of_another_git_revision(tiny_suite: Path, tmp_path: Path, fairbench) -> None:
    out = tmp_path / "out"
    assert fairbench("run", tiny_suite, "--results", out).code == 0
    with sqlite3.connect(out / "fairbench.sqlite") as db:
        db.execute("UPDATE jobs SET git_rev = 'abc1234' WHERE seed = 0")
    again = fairbench("run", tiny_suite, "--results", out)
    assert again.code == 0 and "3 of 6 finished jobs were produced by another git revision (abc1234)" in again.err
    assert "another git revision" not in fairbench("run", tiny_suite, "--results", tmp_path / "fresh").err


def test_split_seed_fixes_the_data_across_model_seeds(tiny_suite: Path, tmp_path: Path, fairbench) -> None:
    erm = ["--set", "methods=[{method: erm, params: {epochs: 1}}]", "--set", "seeds=[0, 1]"]
    assert fairbench("run", tiny_suite, "--results", tmp_path / "fixed", *erm, "--set", "split_seed=3").code == 0
    assert fairbench("run", tiny_suite, "--results", tmp_path / "follows", *erm).code == 0
    fixed, follows = (pd.read_parquet(tmp_path / name / "results.parquet") for name in ("fixed", "follows"))
    assert set(fixed["split_seed"]) == {3} and (follows["split_seed"] == follows["seed"]).all()

    def perfect(table: pd.DataFrame) -> pd.Series:
        return table[(table["metric"] == "dp_perfect") & (table["split"] == "test")].set_index("seed")["value"]

    assert perfect(fixed).nunique() == 1 and perfect(follows).nunique() == 2
    base = load_suite(tiny_suite)[0]
    other = load_suite(tiny_suite, ["split_seed=4"])[0]
    assert not {j.job_id for j in expand(base)} & {j.job_id for j in expand(other)}
    assert [j.split_seed for j in expand(base)] == [j.seed for j in expand(base)]


def test_cuda_device_sets_deterministic_flags() -> None:
    probe = (
        "import os, torch\n"
        "from fairbench.execution.worker import init_worker\n"
        "init_worker(1, {device!r})\n"
        "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
        " torch.backends.cudnn.deterministic,"
        " torch.backends.cudnn.benchmark, os.environ.get('CUBLAS_WORKSPACE_CONFIG'))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("CUBLAS_WORKSPACE_CONFIG", None)

    def flags(device: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe.format(device=device)], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    assert flags("cuda:3") == "True True True False :4096:8"
    assert flags("cpu") == "False False False False None"
