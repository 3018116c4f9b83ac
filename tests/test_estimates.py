"""Time estimates before anything ran: a benchmark's rates file, the work methods declare on a
task's shape, shared encoders counted once, stacked and precision-specific rates, and the dry run
that prints them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fairbench.data.base import TaskShape, open_dataset
from fairbench.errors import FairbenchError
from fairbench.execution.estimates import PlanEstimator, RateEstimator, Rates, load_rates
from fairbench.plan import expand
from fairbench.registry import METHODS
from fairbench.suite import load_suite

RATES = {
    "encoder:factor_vae@3x64x64": 100.0,
    "latent_mlp:1000": 50.0,
    "latent_mlp:1000 stacked": 400.0,
    "latent_mlp:1000 stacked bf16": 800.0,
    "train:mlp3@3x28x28": 9000.0,
    "train:mlp3@3x28x28 bf16": 18000.0,
}

CELEBA_SUITE = """\
name: estimates
seeds: [0, 1]
experiments:
  - {dataset: celeba, protocol: dvge, target: Attractive, sensitive: Male}
methods:
  - method: dvge
    params: {encoder: {name: factor_vae}, encoder_iters: 1000, epochs: 2, sens_epochs: 3}
    grid: {eta1: [0.1, 1.0]}
  - method: removal
    params: {encoder: {name: factor_vae}, encoder_iters: 1000, epochs: 2}
  - method: ffvae
    params: {encoder_iters: 1000, epochs: 2}
"""


def _jobs(tmp_path: Path, text: str) -> list:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return expand(load_suite(path, ())[0])


def test_rates_file_round_trip_merges_per_device_and_rejects_what_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    Rates("H200", "cuda", {"a": 1.0, "b": 2.0, "b stacked": 8.0}, {"b": 10}).save(path)
    Rates("H200", "cuda", {"b": 3.0}).save(path)  # a partial run refreshes b, keeps a and b's stack
    assert load_rates(path).rates == {"a": 1.0, "b": 3.0, "b stacked": 8.0} and load_rates(path).members == {"b": 10}
    Rates("EPYC", "cpu", {"c": 4.0}).save(path)  # another device replaces them
    assert load_rates(path).rates == {"c": 4.0} and load_rates(path).device == "cpu" and not load_rates(path).members
    broken = (
        "{",
        json.dumps({"machine": "m", "device": "cpu", "rates": {"a": -1}}),
        json.dumps({"rates": {}}),
        json.dumps({"machine": "m", "device": "cpu", "rates": {"a": 1}, "members": {"a": 1}}),
    )
    for text in broken:
        path.write_text(text)
        with pytest.raises(FairbenchError, match=r"is not one bench/bench_gpu.py wrote.*--save-rates"):
            load_rates(path)
    with pytest.raises(FairbenchError, match="not found; write one with"):
        load_rates(tmp_path / "absent.json")


def test_image_datasets_declare_their_training_rows_without_reading_data() -> None:
    assert open_dataset("celeba", None, {}).shape("dvge") == TaskShape(162_000, (3, 64, 64))
    assert open_dataset("celeba", None, {"size": 128}).shape("official") == TaskShape(162_770, (3, 128, 128))
    assert open_dataset("colored_mnist", None, {}).shape("lff") == TaskShape(54_000, (3, 28, 28))
    assert open_dataset("cifar10s", None, {"val_fraction": 0.2}).shape("wang") == TaskShape(40_000, (3, 32, 32))
    assert open_dataset("lfw", None, {"size": 32}).shape("faap") == TaskShape(6000, (3, 32, 32))
    assert open_dataset("adult", None, {}).shape("official") is None  # a table's width is the encoding's


def test_trained_methods_declare_their_passes_over_the_training_rows() -> None:
    shape = TaskShape(1000, (3, 28, 28))

    def work(method: str, **params: object) -> list:
        cls = METHODS.get(method)
        return cls(cls.resolve({"arch": "mlp3", "epochs": 7, **params}, "paper")).work(shape)

    assert [(w.workload, w.amount) for w in work("erm")] == [("train:mlp3@3x28x28", 7000)]
    assert work("lff")[0].amount == 14000  # the biased and the debiased network
    assert work("jtt", id_epochs=2)[0].amount == 9000  # identification, then retraining
    # REPAIR: its minimax, then ERM on the rows kept (every row: an upper bound), stacked only
    # where the kept sets have one size
    assert [(w.workload, w.amount, w.stackable) for w in work("repair", repair_epochs=3)] == [
        ("repair:minimax", 3000, True),
        ("train:mlp3@3x28x28", 7000, False),
    ]
    assert work("repair", resample="reweight")[1].stackable
    # FAAP: each deployed model on its share of the rows (cached: shared); G with one attacked
    # model, then each further attacked model on its own
    faap = METHODS.get("faap")
    deployed, *surrogates, g, further = faap(faap.resolve({"size": 32, "surrogates": ["fair", "RG"]}, "paper")).work(
        shape
    )
    assert (deployed.workload, deployed.amount) == ("deployed@3x32x32", 30 * 500) and '"normal"' in deployed.shared
    assert [w.shared for w in surrogates] == [
        s.replace('"normal"', f'"{k}"') for k in ("fair", "RG") for s in [deployed.shared]
    ]
    assert (g.workload, g.amount) == ("faap@3x32x32", 10 * 500)
    assert (further.workload, further.amount) == ("faap+attacked@3x32x32", 10 * 500)
    assert [w.workload for w in faap(faap.resolve({"size": 32}, "paper")).work(shape)] == [
        "deployed@3x32x32",
        "faap@3x32x32",
    ]
    assert METHODS.get("erm")(METHODS.get("erm").resolve({}, "paper")).work(TaskShape(10)) is None  # a table
    assert METHODS.get("lfr")(METHODS.get("lfr").resolve({}, "paper")).work(shape) is None


def test_rates_price_declared_work_counting_a_shared_encoder_once_per_experiment_and_seed(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, CELEBA_SUITE)
    estimate = RateEstimator(Rates("m", "cuda", RATES))
    steps = 162_000 // 64 + 1  # minibatches per epoch of d and g
    encoder, g, d = 1000 / 100.0, 2 * steps / 50.0, 3 * steps / 50.0
    dvge = [job for job in jobs if job.method == "dvge"]
    assert estimate(dvge[0]) == pytest.approx(encoder + g + d)  # seed 0 trains the encoder and d
    assert estimate(dvge[1]) == pytest.approx(encoder + g + d)  # seed 1: its own
    assert estimate(dvge[2]) == pytest.approx(g)  # eta1 = 1.0, seed 0: both cached by now
    assert estimate(dvge[0]) == pytest.approx(encoder + g + d)  # an answer does not change when asked again
    removal = next(job for job in jobs if job.method == "removal")
    assert estimate(removal) == pytest.approx(g)  # the same encoder as DVGE's
    ffvae = next(job for job in jobs if job.method == "ffvae")
    assert estimate(ffvae) is None and estimate.missing == {"workload encoder:ffvae@3x64x64 (no rate)"}
    stacked = RateEstimator(Rates("m", "cuda", RATES), units=[dvge])
    assert stacked(dvge[0]) == pytest.approx(encoder + 2 * steps / 400.0 + d)  # g at the stacked rate
    assert stacked(dvge[2]) == pytest.approx(2 * steps / 400.0)
    # encoders trained in a stack: at the stacked encoder rate (per member) where there is one
    with_encoders = Rates("m", "cuda", {**RATES, "encoder:factor_vae@3x64x64 stacked": 400.0})
    stacked_encoders = RateEstimator(with_encoders, units=[dvge])
    assert stacked_encoders(dvge[0]) == pytest.approx(1000 / 400.0 + 2 * steps / 400.0 + d)
    bf16 = [replace(job, precision="bf16") for job in dvge]
    stacked_bf16 = RateEstimator(Rates("m", "cuda", RATES), units=[bf16])
    stacked_bf16(bf16[0])
    assert stacked_bf16(bf16[2]) == pytest.approx(2 * steps / 800.0)  # the stacked bf16 rate


def test_a_stack_is_priced_between_one_member_alone_and_the_measured_stack(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, CELEBA_SUITE)
    dvge = [job for job in jobs if job.method == "dvge"]  # 2 etas x 2 seeds: 4 g's on 2 encoders
    steps = 162_000 // 64 + 1
    d = 3 * steps / 50.0
    rates = {**RATES, "encoder:factor_vae@3x64x64 stacked": 400.0}
    # one encoder alone: 0.01 s an iteration; 16 stacked: 0.04 s, so 2 stacked take 0.012 s (0.006 each);
    # one g alone: 0.02 s a step; 10 stacked: 0.025 s, so 4 stacked take 0.02 + 3 * 0.005 / 9 s
    measured = Rates("m", "cuda", rates, {"encoder:factor_vae@3x64x64": 16, "latent_mlp:1000": 10})
    estimate = RateEstimator(measured, units=[dvge])
    g = 2 * steps * (0.02 + 3 * 0.005 / 9) / 4
    assert estimate(dvge[0]) == pytest.approx(1000 * 0.006 + g + d)
    assert estimate(dvge[2]) == pytest.approx(g)
    # a stack as large as the measured one or larger: the measured stack's rate per member
    larger = RateEstimator(replace(measured, members={"latent_mlp:1000": 3}), units=[dvge])
    larger(dvge[0])
    assert larger(dvge[2]) == pytest.approx(2 * steps / 400.0)
    # a unit of one job trains alone, whatever the rates file says of stacks
    alone = RateEstimator(measured, units=[[job] for job in dvge])
    alone(dvge[0])
    assert alone(dvge[2]) == pytest.approx(2 * steps / 50.0)


def test_a_precision_rate_prices_its_jobs_and_fp32_prices_the_rest(tmp_path: Path) -> None:
    text = """\
name: cmnist
seeds: [0]
experiments: [{dataset: colored_mnist, target: digit, sensitive: color}]
methods: [{method: erm, params: {arch: mlp3, epochs: 2}}]
"""
    for precision, rate in (("bf16", 18000.0), ("tf32", 9000.0)):
        (job,) = _jobs(tmp_path, f"{text}precision: {precision}\n")
        assert RateEstimator(Rates("m", "cuda", RATES))(job) == pytest.approx(2 * 54_000 / rate)


def test_history_wins_over_rates(tmp_path: Path, tiny_suite: Path, fairbench) -> None:
    out = tmp_path / "out"
    assert fairbench("run", tiny_suite, "--results", out, "--set", "seeds=[0]").code == 0
    job = expand(load_suite(tiny_suite, ())[0])[0]
    estimate = PlanEstimator(out, Rates("m", "cpu", RATES))
    assert estimate(job) is not None and not estimate.from_rates


def test_dry_run_prices_a_suite_from_a_rates_file(tmp_path: Path, fairbench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    suite = tmp_path / "suite.yaml"
    suite.write_text(CELEBA_SUITE)
    rates = tmp_path / "rates.json"
    Rates("H200 (test)", "cuda", RATES).save(rates)
    dry = fairbench("run", suite, "--results", tmp_path / "out", "--dry-run", "--rates", rates)
    assert dry.code == 0, dry.err
    text = " ".join(dry.out.split())
    # the plan stacks as it would on the rates' GPU: each method's seeds (and DVGE's etas) are one unit
    assert "8 jobs in 3 work units" in text
    assert "6 jobs from the rates of H200 (test) (cuda)" in text
    assert "no estimate for ffvae" in text and "encoder:ffvae@3x64x64 (no rate)" in text
    rates.write_text("not json")
    bad = fairbench("run", suite, "--results", tmp_path / "out", "--dry-run", "--rates", rates)
    assert bad.code == 2 and len(bad.err.strip().splitlines()) == 1 and "--save-rates" in bad.err
    alone = fairbench("run", suite, "--results", tmp_path / "out", "--rates", rates)
    assert alone.code == 2 and "add --dry-run" in alone.err and not (tmp_path / "out").exists()
