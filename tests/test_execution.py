"""Executors: GPU slots on injected fake devices (no GPU here), and Ray and SLURM (submitit)
giving the local executor's table; a Ray worker killed mid-job loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fairbench.errors import FairbenchError
from fairbench.execution import Execution
from fairbench.execution.devices import parse_devices, resolve_device
from fairbench.execution.local import slots, threads_per_worker
from fairbench.registry import EXECUTORS, METHODS
from fairbench.runner import run_suite
from fairbench.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent

# A plugin method (found in spawned workers through its entry point) that records when and
# where each job ran and the worker's torch threads, and asks for one artifact shared by all.
SLOTTED = """\
import json, os, time
from pathlib import Path
import numpy as np
import torch
from fairbench.methods.base import HParam, Method, Outcome

class Slotted(Method):
    name = "slotted"
    description = "records its slot (tests)"
    hparams = {"unused": HParam(0, "nothing")}
    budgets = {"paper": {}, "quick": {}}

    def run(self, data, ctx):
        log = Path(os.environ["SLOTTED_LOG"])
        started = time.time()

        def build(folder):
            with open(log.with_suffix(".builds"), "a") as out:
                out.write(f"{os.getpid()}\\n")
            time.sleep(1.0)  # long enough for other jobs to ask for it meanwhile

        folder, _ = ctx.cache.get("slotted", {"version": 1, "test": str(log)}, build)  # one per test
        time.sleep(1.0)
        record = {"seed": ctx.seed, "device": ctx.device, "pid": os.getpid(), "threads": torch.get_num_threads(),
                  "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "artifact": str(folder), "started": started,
                  "finished": time.time()}
        with open(log, "a") as out:
            out.write(json.dumps(record) + "\\n")
        return Outcome({s: np.full(len(data.splits[s]), 0.5) for s in ("val", "test")})
"""

SLOTTED_SUITE = """\
name: slotted
seeds: [0, 1, 2, 3, 4, 5, 6, 7]
budget: quick
experiments:
  - {dataset: synthetic, target: y, sensitive: s, options: {n: 300}}
methods:
  - method: slotted
"""


@pytest.fixture
def slotted(plugin_site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The slotted plugin, registered here and findable by spawned workers; returns its log."""
    site = plugin_site("slotted", {"fairbench.methods": {"slotted": "slotted_plugin:Slotted"}}, slotted_plugin=SLOTTED)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("SLOTTED_LOG", str(tmp_path / "slotted.jsonl"))
    monkeypatch.setattr(METHODS, "_scanned", False)  # rescan: finds the entry point, as the workers do
    assert "slotted" in METHODS
    yield tmp_path / "slotted.jsonl"
    for names in (METHODS._targets, METHODS._origin, METHODS._loaded):
        names.pop("slotted", None)
    sys.modules.pop("slotted_plugin", None)


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in events:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def test_device_slots_hold_at_most_k_jobs_and_artifacts_are_built_once(slotted: Path, tmp_path: Path) -> None:
    suite_file = tmp_path / "slotted.yaml"
    suite_file.write_text(SLOTTED_SUITE)
    fake = ("cuda:0", "cuda:1")  # injected: init_worker sets the CUDA flags, the plugin never touches a GPU
    execution = Execution(devices=fake, jobs_per_device=2)
    outcome = run_suite(load_suite(suite_file)[0], tmp_path / "out", execution=execution)
    assert outcome["failed"] == 0 and outcome["ran"] == 8
    records = [json.loads(line) for line in slotted.read_text().splitlines()]
    assert sorted(r["seed"] for r in records) == list(range(8))  # every job ran, once
    assert {r["device"] for r in records} == set(fake)
    for device in fake:
        spans = [(r["started"], r["finished"]) for r in records if r["device"] == device]
        assert _most_at_once(spans) <= 2, f"more than 2 jobs at once on {device}"
    assert len({r["pid"] for r in records}) <= 4
    assert {r["threads"] for r in records} == {max(1, (os.cpu_count() or 1) // 4)}
    assert len(slotted.with_suffix(".builds").read_text().splitlines()) == 1  # built once, reused by the rest
    assert len({r["artifact"] for r in records}) == 1


def test_slots_and_threads_follow_devices_and_jobs_per_device() -> None:
    execution = Execution(devices=parse_devices("all", visible=4), jobs_per_device=2)
    assert slots(execution) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1", "cuda:2", "cuda:2", "cuda:3", "cuda:3"]
    assert threads_per_worker(execution, cpus=16) == 2 and threads_per_worker(execution, cpus=4) == 1
    assert threads_per_worker(Execution(devices=("cuda:1",), threads=3), cpus=16) == 3
    assert slots(Execution(workers=3, device="cpu")) == ["cpu"] * 3
    assert parse_devices("1,3", visible=4) == ("cuda:1", "cuda:3")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"devices": ("cuda:0",), "workers": 2}, "--devices and --workers"),
        ({"devices": ("cuda:0",), "device": "cpu"}, "--devices and --device"),
        ({"jobs_per_device": 2}, "--jobs-per-device needs --devices"),
        ({"executor": "ray", "devices": ("cuda:0",)}, "--devices is for the local executor"),
        ({"address": "ray://head:10001"}, "add --executor ray"),
        ({"executor": "slurm", "jobs_per_device": 2}, "execution.slurm.gpus"),
        ({"executor": "slurm", "address": "ray://head:10001"}, "add --executor ray"),
        ({"device": "gpu"}, "--device 'gpu': use auto, cpu, cuda or cuda:<index>"),
        ({"executor": "rya"}, r"unknown executor 'rya' \(did you mean 'ray'\?\)"),
    ],
)
def test_conflicting_execution_options_are_an_error(options: dict, message: str) -> None:
    with pytest.raises(FairbenchError, match=message):
        Execution(**options)


def test_device_strings_resolve_to_one_concrete_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # as on a machine with 2 GPUs
    assert [resolve_device("cuda", i) for i in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert resolve_device("auto") == "cuda:0" and resolve_device("cuda:3") == "cuda:3"
    assert slots(Execution(workers=3, device="auto")) == ["cuda:0", "cuda:1", "cuda:0"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu", 5) == "cpu"
    with pytest.raises(FairbenchError, match="--device cuda: no CUDA device is visible"):
        resolve_device("cuda")


@pytest.mark.parametrize(("spec", "message"), [("all", "no CUDA device"), ("0,4", "no index 4"), ("0,x", "indices")])
def test_bad_devices_are_an_error(spec: str, message: str) -> None:
    with pytest.raises(FairbenchError, match=message):
        parse_devices(spec, visible=0 if spec == "all" else 4)


def _table(folder: Path) -> pd.DataFrame:
    table = pd.read_parquet(folder / "results.parquet")
    return table.sort_values(["job_id", "split", "metric"]).reset_index(drop=True)


def test_ray_gives_the_local_table(tiny_suite: Path, tmp_path: Path, fairbench) -> None:
    pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')
    assert fairbench("run", tiny_suite, "--results", tmp_path / "local").code == 0
    ray = fairbench("run", tiny_suite, "--results", tmp_path / "ray", "--executor", "ray", "--workers", "2")
    assert ray.code == 0, ray.err
    pd.testing.assert_frame_equal(_table(tmp_path / "ray"), _table(tmp_path / "local"))
    logs = sorted((tmp_path / "ray" / "logs").glob("*.log"))  # sent back by the workers, written here
    assert len(logs) == 6 and all("done in" in log.read_text() for log in logs)


def test_a_killed_ray_worker_loses_nothing(sleepy, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')
    command = [*sleepy.command, str(tmp_path / "out"), "--executor", "ray", "--workers", "2", "--retries", "1"]
    run = subprocess.Popen(command, env=sleepy.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    os.kill(sleepy.wait_pid(run), signal.SIGKILL)  # Ray reruns its job: the rerun does not sleep
    _, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert sorted(table["seed"].unique()) == list(range(6))
    resumed = subprocess.run(command, env=sleepy.env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0 and "6 already done, 0 to run" in resumed.stderr, resumed.stderr


@pytest.mark.parametrize("cluster", ["debug", pytest.param("local", marks=pytest.mark.slow)])
def test_slurm_through_submitit_gives_the_local_table(cluster: str, tiny_suite: Path, tmp_path: Path, fairbench):
    pytest.importorskip("submitit", reason='submitit is not installed (pip install -e ".[slurm]")')
    assert fairbench("run", tiny_suite, "--results", tmp_path / "local").code == 0
    slurm = ["--executor", "slurm", "--set", f"execution.slurm.cluster={cluster}"]
    first = fairbench("run", tiny_suite, "--results", tmp_path / "slurm", *slurm, "--set", "seeds=[0]")
    assert first.code == 0, first.err
    resumed = fairbench("run", tiny_suite, "--results", tmp_path / "slurm", *slurm)  # the store is the driver's
    assert resumed.code == 0 and "3 already done, 3 to run" in resumed.err, resumed.err
    pd.testing.assert_frame_equal(_table(tmp_path / "slurm"), _table(tmp_path / "local"))
    assert len(list((tmp_path / "slurm" / "logs").glob("*.log"))) == 6


@pytest.mark.parametrize(("executor", "module"), [("ray", "ray"), ("slurm", "submitit")])
def test_a_missing_executor_package_is_one_line(executor, module, tiny_suite, tmp_path, fairbench, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    result = fairbench("run", tiny_suite, "--results", tmp_path / "out", "--executor", executor)
    assert result.code == 2 and f'pip install -e ".[{executor}]"' in result.err, result.err
    assert "Traceback" not in result.err


# Ray trusts `--num-gpus`: a head node with 2 made-up GPUs lets the GPU path (a 1/K GPU share per
# task, CUDA_VISIBLE_DEVICES set by Ray) run here, with no GPU; torch then finds none and the
# job runs on the CPU. Slow (a head node of its own, ~45 s on a loaded 2-core machine).
@pytest.mark.slow
def test_ray_shares_each_fake_gpu_between_k_jobs(slotted: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')
    suite_file = tmp_path / "slotted.yaml"
    suite_file.write_text(SLOTTED_SUITE)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway head node: no token to hand around
    port = 6400 + os.getpid() % 1000
    head = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-gpus=2",
            "--num-cpus=4",
            "--include-dashboard=false",
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        execution = Execution(executor="ray", address=f"127.0.0.1:{port}", device="cuda", jobs_per_device=2)
        outcome = run_suite(load_suite(suite_file)[0], tmp_path / "out", execution=execution)  # waits for the head
    finally:
        head.terminate()
        head.wait(timeout=60)
    assert outcome["failed"] == 0 and outcome["ran"] == 8
    records = [json.loads(line) for line in slotted.read_text().splitlines()]
    assert sorted(r["seed"] for r in records) == list(range(8))
    gpus = {r["gpu"] for r in records}
    assert gpus <= {"0", "1"} and gpus, gpus
    for gpu in gpus:
        assert _most_at_once([(r["started"], r["finished"]) for r in records if r["gpu"] == gpu]) <= 2
    assert len(slotted.with_suffix(".builds").read_text().splitlines()) == 1


def test_the_slurm_section_is_checked_like_the_rest(tiny_suite: Path) -> None:
    suite = load_suite(tiny_suite, ["execution.slurm.partition=gpu", "execution.slurm.time=120"])[0]
    assert suite.execution.slurm.partition == "gpu" and suite.execution.slurm.time == 120
    with pytest.raises(FairbenchError, match=r"unknown key 'execution\.slurm\.partiton' \(did you mean 'partition'"):
        load_suite(tiny_suite, ["execution.slurm.partiton=gpu"])


# A launcher from a plugin package (found through its entry point, as an installed one would be):
# every unit in the driver process, through the same call a cluster's worker makes.
INLINE = """\
from fairbench.errors import FairbenchError
from fairbench.execution.worker import run_unit_detached

class Inline:
    description = "every unit in the driver, one after another (tests)"

    def check(self, execution):
        if execution.workers is not None:
            raise FairbenchError("--workers: the inline executor runs one unit at a time; leave it out")

    def describe(self, execution):
        return "the inline launcher"

    def planning_device(self, execution):
        return "cpu"

    def execute(self, units, settings, execution, on_result, console):
        for unit in units:
            for result in run_unit_detached(unit, settings, 1, "cpu"):
                on_result(result)
"""


@pytest.fixture
def inline_executor(plugin_site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inline launcher, registered through the entry-point group fairbench.executors."""
    site = plugin_site("inline", {"fairbench.executors": {"inline": "inline_launcher:Inline"}}, inline_launcher=INLINE)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(EXECUTORS, "_scanned", False)  # rescan: finds the entry point
    yield
    for names in (EXECUTORS._targets, EXECUTORS._origin, EXECUTORS._loaded):
        names.pop("inline", None)
    sys.modules.pop("inline_launcher", None)


def test_a_plugin_executor_runs_a_suite(inline_executor, tiny_suite: Path, tmp_path: Path, fairbench) -> None:
    one_seed = ("--set", "seeds=[0]")
    assert fairbench("run", tiny_suite, "--results", tmp_path / "local", *one_seed).code == 0
    inline = fairbench("run", tiny_suite, "--results", tmp_path / "inline", "--executor", "inline", *one_seed)
    assert inline.code == 0 and "3 to run with the inline launcher" in inline.err, inline.err
    pd.testing.assert_frame_equal(_table(tmp_path / "inline"), _table(tmp_path / "local"))
    logs = sorted((tmp_path / "inline" / "logs").glob("*.log"))  # returned as text, written by the driver
    assert len(logs) == 3 and all("done in" in log.read_text() for log in logs)
    refused = fairbench("run", tiny_suite, "--results", tmp_path / "x", "--executor", "inline", "--workers", "2")
    assert refused.code == 2 and "the inline executor runs one unit at a time" in refused.err
    listed = fairbench("ls", "executors")
    assert "inline" in listed.out and "plugin (inline)" in listed.out and "slurm" in listed.out


def test_auto_takes_the_cpu_for_tabular_suites_and_the_gpu_for_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--device auto` never makes a GPU machine slower on tabular suites: their tiny MLPs run on
    the CPU; image suites get the (here: pretended) GPU."""
    import torch

    from fairbench.runner import auto_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    root = Path(__file__).resolve().parent.parent / "suites"
    tabular, _ = load_suite(root / "quickstart.yaml")
    images, _ = load_suite(root / "gba_cmnist-quick.yaml")
    assert auto_device(tabular, Execution()).planning_device() == "cpu"
    assert auto_device(images, Execution()).planning_device() == "cuda:0"
    assert auto_device(tabular, Execution(device="cuda")).device == "cuda"  # asked for: kept
