"""Try to break every promise the README makes about bad input, damage and faults, as a new user
would: the `fairbench` command in subprocesses, a private cache and results under a temporary
folder. Prints one line per attempt and the counts: tried, handled (the promise held) and lost.

    python bench/probe_robustness.py            # everything (a few minutes on 2 cores)
    python bench/probe_robustness.py --only inputs,corruption

Parts: `inputs` (tests/bad_inputs plus generated ones: each must exit 2 with one line and write
nothing), `corruption` (damaged store, predictions and cached artifacts: detected or redone,
never used), `disk` (results on a small tmpfs, root only: one line, then a rerun finishes),
`faults` (Ctrl-C with two workers, kill -9 of the driver: its workers end too), `security`
(a planted CIFAR pickle, links out of an imported folder).
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SUITE = """\
name: probe
seeds: [0, 1]
budget: quick
experiments:
  - {dataset: synthetic, target: y, sensitive: s, options: {n: 600}}
methods:
  - {method: erm, params: {epochs: 1}}
  - {method: adt, params: {epochs: 1, arch: grad}}
"""
SLOW_SUITE = """\
name: slow
seeds: [0, 1, 2, 3, 4, 5, 6, 7]
budget: quick
experiments:
  - {dataset: synthetic, target: y, sensitive: s, options: {n: 20000}}
methods:
  - {method: erm, params: {epochs: 40}}
"""


class Probe:
    """Runs `fairbench` as a user would and counts the promises that held."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "FAIRBENCH_CACHE": str(work / "cache"),
            "FAIRBENCH_DATA": str(work / "data"),
            "COLUMNS": "200",
        }
        self.tried = 0
        self.lost: list[str] = []

    def fairbench(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "fairbench", *map(str, args)]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, cwd=cwd or self.work)

    def check(self, name: str, held: bool, detail: str = "") -> None:
        self.tried += 1
        if not held:
            self.lost.append(name)
        print(f"{'handled' if held else 'LOST   '} {name}{': ' + detail if detail and not held else ''}", flush=True)

    def one_line(self, name: str, result: subprocess.CompletedProcess, expect: str = "") -> None:
        """Held when the command exited 2 with one line on stderr (containing `expect`)."""
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        held = result.returncode == 2 and len(lines) == 1 and expect.lower() in result.stderr.lower()
        self.check(name, held, f"exit {result.returncode}: {result.stderr.strip()[-300:]}")

    def finished_folder(self, name: str) -> Path:
        """A results folder of SUITE's 4 jobs, all done (built once, copied)."""
        reference = self.work / "reference"
        if not reference.exists():
            (self.work / "probe.yaml").write_text(SUITE)
            result = self.fairbench("run", "probe.yaml", "--results", reference)
            assert result.returncode == 0, result.stderr
        target = self.work / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(reference, target)
        return target


def probe_inputs(probe: Probe) -> None:
    corpus = sorted((ROOT / "tests" / "bad_inputs").glob("*.yaml"))
    for path in corpus:
        expect = path.read_bytes().split(b"\n")[0].decode().removeprefix("# expect: ")
        results = probe.work / "inputs" / path.stem
        result = probe.fairbench("run", path, "--results", results)
        probe.one_line(f"input {path.name}", result, expect)
        if results.exists():
            probe.check(f"input {path.name} wrote nothing", False, f"{results} was created")
    generated = probe.work / "generated"
    generated.mkdir(exist_ok=True)
    big = generated / "big_keys.yaml"
    with big.open("w") as handle:  # 1.4 million keys, about 25 MB
        handle.write("name: big\nreport:\n")
        handle.writelines(f"  key_{i}: {i}\n" for i in range(1_400_000))
    started = time.time()
    probe.one_line("input 1.4 million keys (refused in under 10 s)", probe.fairbench("validate", big), "bytes")
    if time.time() - started > 10:
        probe.check("input 1.4 million keys took under 10 s", False, f"{time.time() - started:.0f} s")
    for i in range(12):  # each file includes the next twice: 4096 includes if nothing stops it
        (generated / f"diamond_{i}.yaml").write_text(f"include: [diamond_{i + 1}.yaml, diamond_{i + 1}.yaml]\n")
    (generated / "diamond_12.yaml").write_text(SUITE)
    probe.one_line("input include diamond", probe.fairbench("validate", generated / "diamond_0.yaml"), "includes")
    (probe.work / "probe.yaml").write_text(SUITE)
    commands: list[tuple[str, list[str], str]] = [
        (
            "data describe --option n=-3",
            ["data", "describe", "synthetic", "--target", "y", "--sensitive", "s", "--option", "n=-3"],
            "range",
        ),
        (
            "data describe --option n=lots",
            ["data", "describe", "synthetic", "--target", "y", "--sensitive", "s", "--option", "n=lots"],
            "expected int",
        ),
        (
            "data describe --option bias=.nan",
            ["data", "describe", "synthetic", "--target", "y", "--sensitive", "s", "--option", "bias=.nan"],
            "finite",
        ),
        ("run --results /proc/x", ["run", "probe.yaml", "--results", "/proc/x"], "cannot write"),
        ("run --set seeds=[true]", ["run", "probe.yaml", "--set", "seeds=[true]"], "seeds"),
        ("run --set name=../../x", ["run", "probe.yaml", "--set", "name=../../x"], "name"),
        ("run --set methods.0.params.lr=-1", ["run", "probe.yaml", "--set", "methods.0.params.lr=-1"], "range"),
        ("run --device bogus", ["run", "probe.yaml", "--device", "bogus"], "--device"),
        ("rescore of a folder without results", ["rescore", str(probe.work)], "not a results folder"),
    ]
    for name, args, expect in commands:
        probe.one_line(name, probe.fairbench(*args), expect)
    probe.check("nothing written under results/ by the name cases", not (probe.work / "results").exists())


def _damage_page(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[4096 + 8 : 4096 + 400] = b"\xa5" * 392
    path.write_bytes(bytes(data))


def probe_corruption(probe: Probe) -> None:
    store_damages: dict[str, Callable[[Path], None]] = {
        "store page overwritten": _damage_page,
        "store truncated to half": lambda p: (_damage_page(p), p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])),
        "store overwritten with text": lambda p: p.write_text("not a database\n" * 100),
    }
    for name, damage in store_damages.items():
        for command in ("run", "report", "rescore"):
            folder = probe.finished_folder("damaged")
            damage(folder / "fairbench.sqlite")
            args = {
                "run": ["run", "probe.yaml", "--results", folder],
                "report": ["report", folder],
                "rescore": ["rescore", folder],
            }[command]
            probe.one_line(f"corruption {name}: {command}", probe.fairbench(*args), "damaged")
    folder = probe.finished_folder("empty_store")
    (folder / "fairbench.sqlite").write_bytes(b"")
    for extra in folder.glob("fairbench.sqlite-*"):
        extra.unlink()
    result = probe.fairbench("run", "probe.yaml", "--results", folder)
    probe.check("corruption empty store: run starts afresh", result.returncode == 0, result.stderr[-300:])

    rng = np.random.default_rng(0)
    for trial in range(12):
        folder = probe.finished_folder("predictions")
        files = sorted((folder / "predictions").glob("*.npz"))
        target = files[trial % len(files)]
        data = bytearray(target.read_bytes())
        kind = trial % 3
        if kind == 0:
            start = int(rng.integers(0, len(data) - 64))
            data[start : start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        elif kind == 1:
            data = data[: int(rng.integers(0, len(data)))]
        target.write_bytes(bytes(data)) if kind != 2 else target.unlink()
        rescore = probe.fairbench("rescore", folder)
        clean = rescore.returncode == 0 or (rescore.returncode == 2 and len(rescore.stderr.strip().splitlines()) == 1)
        probe.check(
            f"corruption predictions #{trial} ({('bytes', 'truncated', 'deleted')[kind]}): rescore",
            clean and "Traceback" not in rescore.stderr,
            rescore.stderr[-300:],
        )
        run = probe.fairbench("run", "probe.yaml", "--results", folder)
        rescore = probe.fairbench("rescore", folder)
        probe.check(
            f"corruption predictions #{trial}: run redoes it, then rescore reads every job",
            run.returncode == 0 and rescore.returncode == 0 and "rescored 4 finished jobs" in rescore.stdout,
            (run.stderr + rescore.stderr)[-300:],
        )

    from fairbench.artifacts import ArtifactCache

    def build(folder: Path) -> None:
        np.save(folder / "mean.npy", np.arange(4096, dtype=np.float32))
        np.save(folder / "focus_loss.npy", np.ones(4096, dtype=np.float32))
        (folder / "summary.json").write_text('{"val_acc": 0.5}')

    artifact_damages: dict[str, Callable[[Path], None]] = {
        "2 KB overwritten in mean.npy": lambda f: _overwrite(f / "mean.npy", 2048),
        "2 KB overwritten in focus_loss.npy": lambda f: _overwrite(f / "focus_loss.npy", 2048),
        "mean.npy truncated": lambda f: (f / "mean.npy").write_bytes((f / "mean.npy").read_bytes()[:300]),
        "summary.json emptied": lambda f: (f / "summary.json").write_text(""),
        "files deleted under a done marker": lambda f: [(f / n).unlink() for n in ("mean.npy", "summary.json")],
        "marker without checksums": lambda f: (f / "done").write_text(""),
    }
    for name, damage in artifact_damages.items():
        cache = ArtifactCache(probe.work / f"artifacts_{len(name)}")
        folder, _ = cache.get("encoder", {"version": 1}, build)
        damage(folder)
        again, rebuilt = cache.get("encoder", {"version": 1}, build)
        intact = np.array_equal(np.load(again / "mean.npy"), np.arange(4096, dtype=np.float32))
        probe.check(f"corruption artifact {name}: rebuilt", rebuilt and intact)


def _overwrite(path: Path, size: int) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + size] = os.urandom(size)
    path.write_bytes(bytes(data))


def probe_disk(probe: Probe) -> None:
    if os.geteuid() != 0:
        print("disk: skipped (mounting a tmpfs needs root)")
        return
    (probe.work / "probe.yaml").write_text(SUITE)
    mount = probe.work / "disk"
    mount.mkdir(exist_ok=True)
    for size_kb in (8, 16, 32, 48, 64, 96, 130, 150, 200, 300):
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)], check=True)
        try:
            first = probe.fairbench("run", "probe.yaml", "--results", mount / "r")
            lines = [line for line in first.stderr.splitlines() if line.strip()]
            clean = first.returncode == 0 or (
                first.returncode == 2
                and "no space left" in first.stderr
                and len(lines) <= 3
                and "Traceback" not in first.stderr
            )
            probe.check(
                f"disk {size_kb} KB: exit 0, or exit 2 'no space left' (exit {first.returncode})",
                clean,
                first.stderr[-400:],
            )
            subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
            second = probe.fairbench("run", "probe.yaml", "--results", mount / "r")
            rescore = probe.fairbench("rescore", mount / "r")
            probe.check(
                f"disk {size_kb} KB: after freeing space the rerun finishes and rescore reads every job",
                second.returncode == 0 and "rescored 4 finished jobs" in rescore.stdout,
                (second.stderr + rescore.stderr)[-400:],
            )
        finally:
            subprocess.run(["umount", str(mount)], check=True)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_slow(probe: Probe, name: str) -> tuple[subprocess.Popen, Path]:
    (probe.work / "slow.yaml").write_text(SLOW_SUITE)
    results = probe.work / name
    command = [sys.executable, "-m", "fairbench", "run", "slow.yaml", "--workers", "2", "--results", str(results)]
    process = subprocess.Popen(
        command,
        env=probe.env,
        cwd=probe.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((results / "logs").glob("*.log"))) < 2:
        time.sleep(0.2)
    time.sleep(1.0)
    return process, results


def probe_faults(probe: Probe) -> None:
    process, _ = _start_slow(probe, "interrupted")
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    _, err = process.communicate(timeout=120)
    held = process.returncode == 130 and "finished jobs are saved" in err and "Traceback" not in err
    probe.check("Ctrl-C with 2 workers: exit 130, 'interrupted; finished jobs are saved'", held, err[-400:])
    process, _ = _start_slow(probe, "killed")
    workers = _children(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    probe.check(
        f"kill -9 of the driver: its {len(workers)} worker processes end within 10 s",
        bool(workers) and not any(_alive(pid) for pid in workers),
    )
    for pid in workers:  # leave nothing behind whatever happened
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


class _Payload:
    def __reduce__(self):  # what a planted pickle would run
        return (os.system, (f"touch {Path(tempfile.gettempdir()) / 'fairbench-probe-pwned'}",))


def probe_security(probe: Probe) -> None:
    pwned = Path(tempfile.gettempdir()) / "fairbench-probe-pwned"
    pwned.unlink(missing_ok=True)
    folder = probe.work / "data" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"):
        (folder / name).write_bytes(pickle.dumps({b"data": _Payload(), b"labels": [0]}, protocol=2))
    result = probe.fairbench("data", "describe", "cifar10s", "--target", "label == 0", "--sensitive", "grey")
    probe.check(
        "security: planted CIFAR batches run nothing",
        not pwned.exists() and "Traceback" not in result.stderr,
        result.stderr[-300:],
    )
    copy = probe.work / "import_me"
    copy.mkdir(exist_ok=True)
    outside = probe.work / "outside.csv"
    outside.write_text("secret")
    link = copy / "Claims.csv"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    probe.one_line(
        "security: data import through a link out of the folder",
        probe.fairbench("data", "import", "heritage", copy),
        "--follow-links",
    )


PARTS = {
    "inputs": probe_inputs,
    "corruption": probe_corruption,
    "disk": probe_disk,
    "faults": probe_faults,
    "security": probe_security,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fairbench-probe-"))
    probe = Probe(work)
    try:
        for part in args.only.split(","):
            print(f"== {part}", flush=True)
            PARTS[part](probe)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"tried {probe.tried}, handled {probe.tried - len(probe.lost)}, lost {len(probe.lost)}")
    for name in probe.lost:
        print(f"  lost: {name}")


if __name__ == "__main__":
    main()
