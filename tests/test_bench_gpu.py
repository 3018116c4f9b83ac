"""bench/bench_gpu.py, the script a lent GPU's minutes go to, at --small sizes on the CPU: it runs
every part, and the rates it saves price every workload any shipped suite's jobs declare (a
workload named one way in a method's `work` and another in the benchmark would leave a GPU run
with no estimate)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from conftest import ROOT

from fairbench.execution.estimates import RateEstimator, load_rates
from fairbench.plan import expand
from fairbench.registry import DATASETS
from fairbench.runner import plan_units
from fairbench.suite import load_suite


def test_the_benchmark_measures_every_workload_the_suites_declare(tmp_path: Path) -> None:
    rates_file = tmp_path / "rates.json"
    small = ["--device", "cpu", "--small", "--precisions", "fp32", "--encoder-members", "2", "--shared-jobs", "2"]
    command = [sys.executable, str(ROOT / "bench" / "bench_gpu.py"), *small, "--save-rates", str(rates_file)]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "resnet18 32x32 images/s, 2 jobs" in ran.stdout
    rates = load_rates(rates_file)
    stacked = {name.removesuffix(" stacked") for name in rates.rates if name.endswith(" stacked")}
    assert stacked == set(rates.members) and set(rates.members.values()) == {2, 5, 10, 20}
    # priced as a GPU would run them: stacked
    on_gpu = replace(rates, device="cuda")
    for path in sorted((ROOT / "suites").glob("*.yaml")):
        jobs = expand(load_suite(path, ())[0])
        estimate = RateEstimator(on_gpu, plan_units(jobs, "auto", "cuda"))
        unpriced = [job for job in jobs if estimate(job) is None]
        assert not [why for why in estimate.missing if "(no rate)" in why], path.name
        # every job on images; a table's width is its encoding's, which its dataset cannot declare unread
        assert {DATASETS.get(job.dataset).kind for job in unpriced} <= {"tabular"}, estimate.missing
