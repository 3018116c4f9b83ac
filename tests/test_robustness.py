"""Nothing lost, nothing escapes: every bad input of tests/bad_inputs is one line before anything
is written, "done" means predictions and metrics are both on disk, a damaged store, predictions
file or cached artifact is detected (never used), planted pickles run nothing, and a full disk
is one line with the folder intact. bench/probe_robustness.py reruns all of it as a new user would."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fairbench import predictions
from fairbench.artifacts import MARKER, ArtifactCache
from fairbench.data.catalog import import_files
from fairbench.data.cifar10s import read_batch
from fairbench.errors import FairbenchError
from fairbench.plan import expand
from fairbench.runner import preflight, run_suite
from fairbench.store import STORE_FILE, Store, check_folder, load_jobs
from fairbench.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent
BAD_INPUTS = sorted((ROOT / "tests" / "bad_inputs").glob("*.yaml"))


def expected_message(path: Path) -> str:
    """The part of the error a bad input must give, from its first line (`# expect: ...`)."""
    return path.read_bytes().split(b"\n")[0].decode().removeprefix("# expect: ")


@pytest.mark.parametrize("path", BAD_INPUTS, ids=lambda p: p.stem)
def test_bad_input_is_one_line_before_anything_runs(path: Path) -> None:
    """One line per problem (a file with several gets several, each naming the file)."""
    with pytest.raises(FairbenchError) as caught:
        suite, _ = load_suite(path)
        expand(suite)
        preflight(suite, None)
    message = str(caught.value)
    lines = message.splitlines()
    assert lines and all(line.strip() for line in lines)
    assert len(lines) == 1 or all(line.startswith(str(path)) for line in lines), message
    assert expected_message(path).lower() in message.lower()


def test_a_large_suite_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: big\nreport:\n" + "".join(f"  k{i}: {i}\n" for i in range(120_000)))
    with pytest.raises(FairbenchError, match="at most 1000000 bytes"):
        load_suite(big)


def test_dataset_options_are_checked_wherever_a_dataset_opens(fairbench) -> None:
    result = fairbench("data", "describe", "synthetic", "--target", "y", "--sensitive", "s", "--option", "n=-3")
    assert result.code == 2 and "option n: -3 is out of range" in result.err and "Traceback" not in result.err


def test_a_default_written_out_is_the_same_job(tiny_suite: Path) -> None:
    """Job ids hash the options without their defaults: `{}` and `{n: 4000}` are one job, and a
    suite that writes no default keeps its ids."""
    implicit = expand(load_suite(tiny_suite, ["experiments.0.options={}"])[0])
    explicit = expand(load_suite(tiny_suite, ["experiments.0.options={n: 4000, bias: 1}"])[0])
    assert [j.job_id for j in implicit] == [j.job_id for j in explicit]
    assert explicit[0].options == {}
    other = expand(load_suite(tiny_suite)[0])  # n: 600
    assert other[0].options == {"n": 600} and other[0].job_id != implicit[0].job_id


def test_results_folder_that_cannot_be_made_is_one_line(tiny_suite: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    suite, _ = load_suite(tiny_suite, ["seeds=[0]"])
    with pytest.raises(FairbenchError, match="cannot write there"):
        run_suite(suite, blocker / "results")


@pytest.fixture
def finished(tmp_path: Path, tiny_suite: Path) -> tuple[Path, Path]:
    """A results folder with the tiny suite's one ERM job done."""
    results = tmp_path / "results"
    suite, _ = load_suite(tiny_suite, ["seeds=[0]", "methods=[{method: erm, params: {epochs: 1}}]"])
    assert run_suite(suite, results)["failed"] == 0
    return results, tiny_suite


def _only_job(results: Path) -> tuple[str, float]:
    job = load_jobs(results).iloc[0]
    return job.job_id, job.finished


def test_a_done_job_without_readable_predictions_runs_again(finished: tuple[Path, Path]) -> None:
    """The row says done but the predictions file is gone (a crash or a full disk between the
    two writes): the rerun runs the job again instead of trusting the row."""
    results, suite_file = finished
    job_id, before = _only_job(results)
    suite, _ = load_suite(suite_file, ["seeds=[0]", "methods=[{method: erm, params: {epochs: 1}}]"])
    for damage in (lambda p: p.unlink(), lambda p: p.write_bytes(p.read_bytes()[:100])):
        damage(predictions.path(results, job_id))
        assert run_suite(suite, results)["ran"] == 1
        job_id, after = _only_job(results)
        assert after != before and predictions.intact(results, job_id, after)
        before = after
    assert run_suite(suite, results)["ran"] == 0


def test_damaged_predictions_are_one_line_errors(finished: tuple[Path, Path]) -> None:
    results, _ = finished
    job_id, stamp = _only_job(results)
    good = predictions.path(results, job_id).read_bytes()
    rng = np.random.default_rng(0)
    for _ in range(150):
        data = bytearray(good)
        start = int(rng.integers(0, len(data)))
        data[start : start + int(rng.integers(1, 64))] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()[
            : len(data[start : start + 64])
        ]
        predictions.path(results, job_id).write_bytes(bytes(data[: int(rng.integers(len(data) // 2, len(data) + 1))]))
        try:
            predictions.load(results, job_id, stamp)
        except FairbenchError as error:
            assert "\n" not in str(error)


def test_a_damaged_store_is_reported_as_damaged(finished: tuple[Path, Path]) -> None:
    results, _ = finished
    path = results / STORE_FILE
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    data[page + 8 : page + 400] = b"\xa5" * 392  # a b-tree page's header and cell pointers
    path.write_bytes(bytes(data))
    with pytest.raises(FairbenchError, match="is damaged .*move the folder away"):
        check_folder(results)


def test_a_store_cut_short_at_creation_is_taken_as_new(tmp_path: Path) -> None:
    """A full disk while the store is created leaves an empty file: the next run uses it."""
    (tmp_path / STORE_FILE).write_bytes(b"")
    check_folder(tmp_path)
    store = Store(tmp_path)
    assert store.done_ids() == set()
    store.close()
    check_folder(tmp_path)


def test_a_failed_force_rerun_keeps_the_log_of_the_kept_result(finished: tuple[Path, Path], monkeypatch) -> None:
    results, suite_file = finished
    job_id, _ = _only_job(results)
    log = results / "logs" / f"{job_id}.log"
    original = log.read_text()
    from fairbench.methods.erm import ERM

    def fail(self, data, ctx):
        ctx.log.info("this attempt fails")
        raise RuntimeError("on purpose")

    monkeypatch.setattr(ERM, "run", fail)
    suite, _ = load_suite(suite_file, ["seeds=[0]", "methods=[{method: erm, params: {epochs: 1}}]"])
    assert run_suite(suite, results, force=True)["failed"] == 1
    assert log.read_text() == original
    assert "this attempt fails" in (results / "logs" / f"{job_id}.failed.log").read_text()


def _build(value: float):
    def build(folder: Path) -> None:
        np.save(folder / "mean.npy", np.full(1000, value, dtype=np.float32))
        (folder / "summary.json").write_text('{"acc": 0.5}')

    return build


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f.joinpath("mean.npy").write_bytes(f.joinpath("mean.npy").read_bytes()[:-2048] + b"\0" * 2048),
        lambda f: f.joinpath("mean.npy").write_bytes(f.joinpath("mean.npy").read_bytes()[:200]),
        lambda f: f.joinpath("summary.json").write_text(""),
        lambda f: f.joinpath("mean.npy").unlink(),
        lambda f: f.joinpath(MARKER).write_text(""),  # a marker of an older fairbench: no checksums
    ],
    ids=["overwritten", "truncated", "emptied", "deleted", "unrecorded"],
)
def test_a_damaged_artifact_is_rebuilt_with_a_warning(tmp_path: Path, caplog, damage) -> None:
    cache = ArtifactCache(tmp_path)
    key = {"version": 1, "what": "test"}
    folder, built = cache.get("encoder", key, _build(1.0))
    assert built and cache.get("encoder", key, _build(2.0)) == (folder, False)
    damage(folder)
    with caplog.at_level(logging.WARNING, logger="fairbench.artifacts"):
        again, built = cache.get("encoder", key, _build(1.0))
    assert built and again == folder
    assert [r.getMessage() for r in caplog.records if f"encoder/{folder.name}" in r.getMessage()]
    assert np.array_equal(np.load(folder / "mean.npy"), np.full(1000, 1.0, dtype=np.float32))


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_planted_cifar_batch_runs_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    planted = tmp_path / "data_batch_1"
    planted.write_bytes(pickle.dumps({b"data": _Payload(), b"labels": [0]}, protocol=2))
    with pytest.raises(FairbenchError, match="damaged or not a CIFAR-10 batch"):
        read_batch(planted)
    assert not (tmp_path / "PWNED").exists()
    genuine = tmp_path / "genuine"
    genuine.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, protocol=2))
    assert read_batch(genuine)[1].tolist() == [1, 2]


def test_import_refuses_links_out_of_the_folder(tmp_path: Path) -> None:
    copy = tmp_path / "mine"
    copy.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text("x")
    (copy / "Claims.csv").symlink_to(secret)
    with pytest.raises(FairbenchError, match="outside .*--follow-links"):
        import_files("heritage", copy, tmp_path / "data")
    with pytest.raises(FairbenchError, match="lacks"):  # allowed through, then checked as usual
        import_files("heritage", copy, tmp_path / "data", follow_links=True)


FULL_DISK_SUITE = """\
name: full
seeds: [0, 1, 2]
budget: quick
experiments:
  - {dataset: synthetic, target: y, sensitive: s, options: {n: 600}}
methods:
  - {method: erm, params: {epochs: 1}}
"""


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_one_line_and_the_folder_stays_usable(tmp_path: Path) -> None:
    """Results on a tmpfs with too little room: exit 2 with one line (or a finished run); after
    the disk grows, the same command finishes every job and rescore reads every one."""
    suite = tmp_path / "full.yaml"
    suite.write_text(FULL_DISK_SUITE)
    mount = tmp_path / "disk"
    mount.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FAIRBENCH_CACHE": str(tmp_path / "cache")}
    run = [sys.executable, "-m", "fairbench", "run", str(suite), "--results", str(mount / "r")]
    outcomes = []
    try:
        for size_kb in (16, 64, 160):
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)], check=True)
            first = subprocess.run(run, env=env, capture_output=True, text=True)
            assert "Traceback" not in first.stderr, first.stderr
            assert first.returncode == 0 or (first.returncode == 2 and "no space left" in first.stderr), first.stderr
            outcomes.append(first.returncode)
            subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
            second = subprocess.run(run, env=env, capture_output=True, text=True)
            assert second.returncode == 0, second.stderr
            rescore = subprocess.run(
                [sys.executable, "-m", "fairbench", "rescore", str(mount / "r")],
                env=env,
                capture_output=True,
                text=True,
            )
            assert rescore.returncode == 0 and "rescored 3 finished jobs" in rescore.stdout, rescore.stderr
            subprocess.run(["umount", str(mount)], check=True)
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    assert 2 in outcomes


def test_ctrl_c_says_finished_jobs_are_saved(fairbench, tiny_suite: Path, tmp_path: Path, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("fairbench.runner.run_suite", interrupted)
    result = fairbench("run", tiny_suite, "--results", tmp_path / "out")
    assert result.code == 130 and "interrupted; finished jobs are saved" in result.err, result.err


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_ctrl_c_with_two_workers_prints_no_traceback(sleepy, tmp_path: Path) -> None:
    command = [*sleepy.command, str(tmp_path / "out"), "--workers", "2"]
    run = subprocess.Popen(command, env=sleepy.env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    sleeper = sleepy.wait_pid(run)
    os.killpg(run.pid, signal.SIGINT)  # as Ctrl-C does: the driver and its workers
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "finished jobs are saved" in err and "Traceback" not in err, err
    assert not _alive(sleeper)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_workers_end_when_their_driver_is_killed(sleepy, tmp_path: Path) -> None:
    run = subprocess.Popen(
        [*sleepy.command, str(tmp_path / "out"), "--workers", "2"],
        env=sleepy.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sleeper = sleepy.wait_pid(run)  # a worker, sleeping for two minutes
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.time() + 10
    while _alive(sleeper) and time.time() < deadline:
        time.sleep(0.1)
    alive = _alive(sleeper)
    if alive:
        os.kill(sleeper, signal.SIGKILL)
    assert not alive, "the orphaned worker kept running its job"


def test_a_planted_sensitive_classifier_runs_nothing(tmp_path: Path, monkeypatch) -> None:
    """Whoever can write the cache and its checksums still cannot run code through torch.load."""
    import torch

    from fairbench.artifacts import write_marker
    from fairbench.encoders.base import Latents
    from fairbench.methods.families.latent.recipe import Recipe
    from fairbench.methods.families.latent.sensitive import sensitive_classifier
    from tests.contexts import run_context, synthetic_task

    data = synthetic_task()
    codes = np.random.default_rng(0).normal(size=(len(data.y), 4)).astype(np.float32)
    latents = Latents(codes, codes, codes, tmp_path / "encoder" / "codes", False, {}, {})
    recipe = Recipe(epochs=1, lr=1e-3, beta1=0.5, beta2=0.9, batch_size=64, width=8, precision="float32")
    ctx = run_context(tmp_path / "cache")
    folder = sensitive_classifier(data, latents, "mean", recipe, ctx).folder
    torch.save(_Payload(), folder / "classifier.pt")
    write_marker(folder)
    monkeypatch.chdir(tmp_path)
    loader = torch.load  # torch before 2.6, which the project supports, unpickles anything by default
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: loader(*args, **{"weights_only": False, **kwargs}))
    with pytest.raises(pickle.UnpicklingError):
        sensitive_classifier(data, latents, "mean", recipe, ctx)
    assert not (tmp_path / "PWNED").exists()
