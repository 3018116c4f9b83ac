"""Reports: Pareto fronts, hypervolume, critical difference, ablation/summary tables, HTML.

A small fixed results folder is written through the real store (Store.record + export); the
numbers the reports compute are checked against independent brute-force computations and
Demsar (2006)'s worked example, and the tables' text against golden files in tests/golden/
(regenerate with FAIRBENCH_UPDATE_GOLDEN=1 after checking a diff by eye).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from fairbench.errors import FairbenchError
from fairbench.report import build_report
from fairbench.report.build import Options
from fairbench.report.cd import (
    critical_difference,
    friedman_statistic,
    iman_davenport,
    nemenyi_cd,
    rank_scores,
    wilcoxon_holm,
)
from fairbench.report.cli import report as report_command
from fairbench.report.declared import declared_tables
from fairbench.report.pareto import hypervolume, hypervolume_table, pareto_front, pareto_points
from fairbench.report.tables import select_points, summary_tables
from fairbench.runner import registered_specs
from fairbench.store import Store, load_report_specs, load_results
from fairbench.table_spec import ReportTable

GOLDEN = Path(__file__).parent / "golden"


def tables_of(*methods: str) -> dict[str, tuple[ReportTable, ...]]:
    """The tables these registered methods declare, as a run records them."""
    return registered_specs(methods, "paper").method_tables


EXPERIMENTS = ["adult/sex", "credit/age", "celeba/male"]
GRIDS = {
    "ERM": ("erm", [{}]),
    "ADT": ("adt", [{"lam": v} for v in (0.1, 1.0, 10.0, 0.01)]),
    "DVGE-D": ("dvge", [{"eta1": a, "eta2": b} for a in (0.1, 1.0) for b in (0.0, 0.4)]),
    "DVGE-N": ("dvge", [{"eta1": a, "eta2": b} for a in (0.1, 1.0) for b in (0.0, 0.4)]),
}
BASE = {"ERM": (0.82, 0.20), "ADT": (0.80, 0.12), "DVGE-D": (0.81, 0.08), "DVGE-N": (0.80, 0.11)}
SEEDS = [0, 1]


def _metrics(e: int, label: str, k: int, seed: int, split: str) -> dict[str, float]:
    """Deterministic, varied numbers: stronger debiasing (k) trades accuracy for a smaller gap."""
    acc0, dp0 = BASE[label]
    if (e, label) in ((2, "DVGE-N"), (1, "ADT")):
        dp0 = 0.045  # the methods' order differs between blocks
    if label == "ADT" and k == 3:
        k, acc0, dp0 = 0, acc0 - 0.03, dp0 + 0.03  # a dominated hyperparameter point
    jitter = 0.004 * (seed - 0.5) * (1 + e) + 0.001 * ((3 * k + 5 * e + label.__len__()) % 4)
    acc = acc0 - 0.015 * k + jitter - 0.01 * e + (0.005 if split == "val" else 0.0)
    dp = dp0 / (1 + 0.6 * k) + 0.5 * abs(jitter) + 0.01 * e + (0.003 if split == "val" else 0.0)
    eo = 0.8 * dp + 0.002 * ((k + seed) % 3)
    return {"acc": round(acc, 5), "dp": round(dp, 5), "eo": round(eo, 5), "dp_perfect": 0.15 + 0.01 * e}


def _ablation_rows(label: str, params: dict, seed: int) -> list[tuple[str, str, float, dict]]:
    """DVGE's sens_acc rows: eta columns (retrained/fixed) and the two reference variants."""
    if label not in ("DVGE-D", "DVGE-N"):
        return []
    shift = 0.0 if label == "DVGE-D" else 0.05
    # eta2 = 0.4 jobs also report sens_acc: the ablation must read only eta2 = 0 rows.
    bogus = 0.5 if params["eta2"] else 0.0
    eta1 = params["eta1"]
    rows = [
        (
            "test",
            "sens_acc",
            0.9 - 0.2 * eta1 + shift + bogus + 0.002 * seed,
            {"sens_classifier": "retrained"},
        ),
        ("test", "sens_acc", 0.85 - 0.3 * eta1 + shift + bogus + 0.002 * seed, {"sens_classifier": "fixed"}),
        ("test", "sens_acc", 0.95 + shift / 2 + 0.001 * seed, {"variant": "no_removal"}),
        ("test", "sens_acc", 0.70 + shift + 0.001 * seed, {"variant": "dims_removed"}),
    ]
    return rows


def write_results(folder: Path, experiments: list[str] = EXPERIMENTS) -> Path:
    """The fixed results folder, written through Store.record and Store.export."""
    store = Store(folder)
    n = 0
    for e, exp in enumerate(experiments):
        for label, (method, grid) in GRIDS.items():
            for k, params in enumerate(grid):
                for seed in SEEDS:
                    n += 1
                    job = {
                        "job_id": f"j{n:04d}",
                        "suite": "toy",
                        "experiment": exp,
                        "dataset": exp.split("/")[0],
                        "protocol": "official",
                        "target": "y",
                        "sensitive": exp.split("/")[1],
                        "method": method,
                        "label": label,
                        "budget": "quick",
                        "seed": seed,
                        "params": params,
                        "options": {},
                        "status": "done",
                        "error": None,
                        "info": {},
                        "started": 1.7e9 + 3 * n,
                        "finished": 1.7e9 + 3 * n + 2.5,
                        "duration": 2.5,
                        "device": "cpu",
                        "host": "testhost",
                        "versions": {"fairbench": "0.1.0", "torch": "2.13"},
                        "git_rev": "abc1234",
                        "log": f"logs/j{n:04d}.log",
                    }
                    rows = [
                        (split, metric, value, {})
                        for split in ("val", "test")
                        for metric, value in _metrics(e, label, k, seed, split).items()
                    ]
                    rows += _ablation_rows(label, params, seed) if e == 0 else []
                    store.record(job, rows)
    # A failed job: in the provenance, never in the results.
    store.record(
        {
            "job_id": "jfail",
            "suite": "toy",
            "experiment": experiments[0],
            "method": "erm",
            "label": "ERM",
            "seed": 9,
            "params": {},
            "status": "failed",
            "error": "boom",
        },
        [],
    )
    store.record_report_specs(registered_specs(["erm", "adt", "dvge"], "quick"))
    store.export()
    store.close()
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return write_results(tmp_path_factory.mktemp("results") / "toy")


@pytest.fixture(scope="module")
def built(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report(results, Options(out=out, formats=("png", "svg")))


# ----------------------------------------------------------------------------- brute force


def brute_front(points: np.ndarray) -> np.ndarray:
    keep = []
    for i, (xi, yi) in enumerate(points):
        dominated = any(xj <= xi and yj >= yi and (xj < xi or yj > yi) for j, (xj, yj) in enumerate(points) if j != i)
        keep.append(not dominated)
    return np.array(keep)


def brute_hypervolume(points: np.ndarray, ref: tuple[float, float]) -> float:
    """Union of boxes by coordinate compression: every grid cell counted once."""
    rx, ry = ref
    boxes = [(x, rx, ry, y) for x, y in points if x < rx and y > ry]
    xs = sorted({b[0] for b in boxes} | {rx})
    ys = sorted({b[3] for b in boxes} | {ry})
    area = 0.0
    for (x0, x1), (y0, y1) in itertools.product(zip(xs[:-1], xs[1:], strict=True), zip(ys[:-1], ys[1:], strict=True)):
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if any(b[0] <= cx <= b[1] and b[2] <= cy <= b[3] for b in boxes):
            area += (x1 - x0) * (y1 - y0)
    return area


# ----------------------------------------------------------------------------- Pareto


def test_pareto_front_and_hypervolume_hand_example():
    pts = np.array([[0.1, 0.8], [0.2, 0.9], [0.3, 0.85], [0.2, 0.9], [np.nan, 1.0]])
    assert pareto_front(pts).tolist() == [True, True, False, True, False]
    # Two boxes: (0.5-0.1)*(0.8-0.5) + (0.5-0.2)*(0.9-0.8).
    assert hypervolume(pts, (0.5, 0.5)) == pytest.approx(0.15)
    assert hypervolume(np.array([[0.6, 0.9]]), (0.5, 0.5)) == 0.0  # outside the reference box
    assert hypervolume(np.empty((0, 2)), (0.5, 0.5)) == 0.0


def test_pareto_front_and_hypervolume_random_against_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(30):
        pts = np.round(rng.uniform(0, 1, size=(rng.integers(1, 25), 2)), 2)  # rounding makes ties
        assert pareto_front(pts).tolist() == brute_front(pts).tolist()
        ref = (float(pts[:, 0].max()), float(pts[:, 1].min()))
        assert hypervolume(pts, ref) == pytest.approx(brute_hypervolume(pts, ref), abs=1e-12)
        assert hypervolume(pts[pareto_front(pts)], ref) == pytest.approx(hypervolume(pts, ref), abs=1e-12)


def test_fronts_and_hypervolumes_of_results(results):
    df = load_results(results)
    points = pareto_points(df, "dp", "acc")
    # Independently: seed means straight from the tidy table.
    test = df[(df["split"] == "test") & df["metric"].isin(["dp", "acc"]) & df["sens_classifier"].isna()]
    params = [c for c in test.columns if c.startswith("param_")]
    means = (
        test.assign(**{c: test[c].fillna(-1) for c in params})
        .groupby(["experiment", "label", *params, "seed", "metric"])["value"]
        .mean()
        .unstack("metric")
        .groupby(level=["experiment", "label", *params])
        .mean()
    )
    assert len(points) == len(means) == 3 * (1 + 4 + 4 + 4)
    assert (~points["on_front"]).sum() >= 3
    assert sorted(points["x"].round(10)) == sorted(means["dp"].round(10))
    for (exp, label), sub in points.groupby(["experiment", "label"]):
        pts = sub[["x", "y"]].to_numpy()
        assert sub["on_front"].tolist() == brute_front(pts).tolist(), (exp, label)
    hv = hypervolume_table(points, "dp", "acc")
    for exp, sub in points.groupby("experiment"):
        span_x, span_y = sub["x"].max() - sub["x"].min(), sub["y"].max() - sub["y"].min()
        ref = (sub["x"].max() + 0.1 * span_x, sub["y"].min() - 0.1 * span_y)
        for label, lab in sub.groupby("label"):
            got = hv[(hv["experiment"] == exp) & (hv["label"] == label)]["hypervolume"].item()
            assert got == pytest.approx(brute_hypervolume(lab[["x", "y"]].to_numpy(), ref), abs=1e-12)
    # Spread is the seed std (ddof=1) of the two seeds.
    erm = points[(points["label"] == "ERM") & (points["experiment"] == "adult/sex")].iloc[0]
    seeds = test[(test["label"] == "ERM") & (test["experiment"] == "adult/sex") & (test["metric"] == "acc")]
    assert erm["y_std"] == pytest.approx(np.std(seeds["value"], ddof=1))
    assert erm["n"] == 2


def test_pareto_orientation_for_higher_is_better_x():
    df = pd.DataFrame(
        {
            "suite": "s",
            "experiment": "e",
            "dataset": "d",
            "protocol": "p",
            "target": "t",
            "sensitive": "g",
            "method": "m",
            "label": "L",
            "budget": "b",
            "seed": 0,
            "split": "test",
            "job_id": ["a", "a", "b", "b"],
            "metric": ["acc", "dp", "acc", "dp"],
            "value": [0.9, 0.1, 0.8, 0.3],
            "param_k": [1, 1, 2, 2],
        }
    )
    # x = acc (maximised), y = dp (minimised): point k=1 dominates k=2.
    pts = pareto_points(df, "acc", "dp")
    assert pts.sort_values("point")["on_front"].tolist() == [True, False]


# ----------------------------------------------------------------------------- critical difference

# Demsar (2006), Table 6: AUC of C4.5 variants on 14 data sets (columns C4.5, +m, +cf, +m+cf).
DEMSAR = np.array(
    [
        [0.763, 0.768, 0.771, 0.798],
        [0.599, 0.591, 0.590, 0.569],
        [0.954, 0.971, 0.968, 0.967],
        [0.628, 0.661, 0.654, 0.657],
        [0.882, 0.888, 0.886, 0.898],
        [0.936, 0.931, 0.916, 0.931],
        [0.661, 0.668, 0.609, 0.685],
        [0.583, 0.583, 0.563, 0.625],
        [0.775, 0.838, 0.866, 0.875],
        [1.000, 1.000, 1.000, 1.000],
        [0.940, 0.962, 0.965, 0.962],
        [0.619, 0.666, 0.614, 0.669],
        [0.972, 0.981, 0.975, 0.975],
        [0.957, 0.978, 0.946, 0.970],
    ]
)
DEMSAR_NAMES = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]


def test_demsar_worked_example():
    scores = pd.DataFrame(DEMSAR, columns=DEMSAR_NAMES)
    # The printed table rounds "voting" to a tie of C4.5+cf and C4.5+m+cf; the paper's ranks
    # (2.893, 1.964) rank C4.5+cf ahead there, i.e. its unrounded AUC was higher.
    assert rank_scores(scores).mean().round(3).tolist() == [3.143, 2.0, 2.929, 1.929]
    scores.loc[12, "C4.5+cf"] = 0.9751
    ranks = rank_scores(scores).mean()
    assert ranks.round(3).tolist() == [3.143, 2.0, 2.893, 1.964]
    chi2 = friedman_statistic(ranks.to_numpy(), 14)
    assert round(chi2, 2) == 9.28
    assert round(iman_davenport(chi2, 14, 4), 2) == 3.69
    assert round(nemenyi_cd(4, 14, 0.05), 2) == 1.25
    assert round(nemenyi_cd(4, 14, 0.10), 2) == 1.12
    result = critical_difference(scores)
    assert result.skipped is None
    assert result.chi2 == pytest.approx(chi2)
    assert result.cd == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 14)), abs=1e-3)
    # Iman-Davenport's p at F(3, 39) = 3.69: below .05 (Demsar: critical value 2.85).
    assert result.ff_p_value < 0.05
    # No Nemenyi difference at .05: the largest gap 3.143 - 1.964 = 1.18 < 1.25.
    assert (result.pvalues.to_numpy() == 1).all()
    assert list(result.avg_ranks.index) == ["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]


def test_wilcoxon_holm_is_holm_adjusted():
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(3)
    scores = pd.DataFrame(rng.normal(size=(12, 3)) + [0, 0.8, 1.6], columns=["a", "b", "c"])
    raw = {p: wilcoxon(scores[p[0]], scores[p[1]]).pvalue for p in [("a", "b"), ("a", "c"), ("b", "c")]}
    order = sorted(raw, key=raw.get)
    expected, running = {}, 0.0
    for i, pair in enumerate(order):
        running = max(running, min(1.0, (3 - i) * raw[pair]))
        expected[pair] = running
    got = wilcoxon_holm(scores)
    for (a, b), p in expected.items():
        assert got.loc[a, b] == pytest.approx(p) and got.loc[b, a] == pytest.approx(p)


def test_cd_too_few_blocks_or_methods_is_skipped():
    few = critical_difference(pd.DataFrame(np.arange(12.0).reshape(3, 4), columns=list("abcd")))
    assert few.skipped and "3 block" in few.skipped
    two = critical_difference(pd.DataFrame(np.arange(20.0).reshape(10, 2), columns=list("ab")))
    assert two.skipped and "at least 3" in two.skipped


def test_cd_of_results_ranks_by_hypervolume(built):
    hv = pd.read_csv(built.out / "hypervolume.csv")
    scores = hv.pivot_table(index=["experiment", "pair"], columns="label", values="hypervolume")
    assert scores.shape == (6, 4)
    # Brute-force ranks: 1 + number of better methods + half the ties, per block.
    expected = {}
    for label in scores.columns:
        r = [1 + (row > row[label]).sum() + 0.5 * ((row == row[label]).sum() - 1) for _, row in scores.iterrows()]
        expected[label] = float(np.mean(r))
    got = pd.read_csv(built.out / "cd.csv").set_index("label")["average_rank"]
    assert got.to_dict() == pytest.approx(expected, abs=1e-5)  # the CSV keeps 6 digits
    stats = json.loads((built.out / "cd.md").read_text().split("```json")[1].split("```")[0])
    k, n, r = 4, 6, np.array(list(expected.values()))
    assert stats["chi2"] == pytest.approx(12 * n / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4))
    assert stats["cd"] == pytest.approx(2.569 * math.sqrt(k * (k + 1) / (6 * n)), abs=1e-3)


# ----------------------------------------------------------------------------- tables


@pytest.mark.parametrize(
    "name",
    [
        "summary.md",
        "summary.tex",
        "hypervolume.md",
        "pareto_fronts.md",
        "cd.csv",
        "ablation_adult_sex_retrained.md",
        "ablation_adult_sex_fixed.tex",
        "ablation_adult_sex_fixed.csv",
    ],
)
def test_golden_tables(built, name, golden):
    golden(GOLDEN / f"report_{name}", (built.out / name).read_text())


@pytest.mark.parametrize("other", ["", "0", "yes"])
def test_golden_files_change_only_with_update_golden_1(tmp_path, monkeypatch, golden, other):
    path = tmp_path / "golden" / "table.md"
    monkeypatch.setenv("FAIRBENCH_UPDATE_GOLDEN", other)
    with pytest.raises(pytest.fail.Exception, match=r"missing; create it with FAIRBENCH_UPDATE_GOLDEN=1 python"):
        golden(path, "new\n")
    assert not path.exists()
    path.parent.mkdir()
    path.write_text("old\n")
    with pytest.raises(AssertionError, match="differs from its golden file"):
        golden(path, "new\n")
    assert path.read_text() == "old\n"
    monkeypatch.setenv("FAIRBENCH_UPDATE_GOLDEN", "1")
    golden(path, "new\n")
    assert path.read_text() == "new\n"


def test_ablation_reads_eta2_zero_and_references(results):
    recorded = load_report_specs(results).method_tables
    tables = {t.by["sens_classifier"]: t for t in declared_tables(load_results(results), recorded)}
    assert set(tables) == {"retrained", "fixed"}
    t = tables["retrained"]
    assert t.columns == ["No removal", "Sens. dims removed", "η1 = 0.1", "η1 = 1"]
    cells = t.cells.set_index(["label", "column"])
    # eta2 = 0 rows only (the 0.4 rows carry +0.5); seeds 0, 1 add 0 and 0.002.
    assert cells.loc[("DVGE-D", "η1 = 0.1"), "mean"] == pytest.approx(0.9 - 0.02 + 0.001)
    assert cells.loc[("DVGE-N", "No removal"), "mean"] == pytest.approx(0.975 + 0.0005)
    assert cells.loc[("DVGE-D", "No removal"), "n"] == 2


def test_selection_rules(results):
    df = load_results(results)
    best = select_points(df, "best-val-acc").set_index(["experiment", "label"])
    val = df[(df["split"] == "val") & (df["metric"] == "acc") & df["sens_classifier"].isna()]
    sub = val[(val["experiment"] == "credit/age") & (val["label"] == "ADT")]
    top_lam = sub.groupby("param_lam")["value"].mean().idxmax()
    assert best.loc[("credit/age", "ADT"), "point"] == f"lam={top_lam:g}"
    assert best.loc[("credit/age", "ERM"), "note"] == "single point"
    floor = select_points(df, "gap-floor", acc_floor=0.795).set_index(["experiment", "label"])
    dp = df[(df["split"] == "val") & (df["metric"] == "dp") & (df["experiment"] == "adult/sex")]
    acc = val[val["experiment"] == "adult/sex"]
    for label in ("ADT", "DVGE-D"):
        keys = [c for c in df.columns if c.startswith("param_") and df.loc[df["label"] == label, c].notna().any()]
        a = acc[acc["label"] == label].groupby(keys)["value"].mean()
        d = dp[dp["label"] == label].groupby(keys)["value"].mean()
        ok = d[a >= 0.795]
        if ok.empty:
            assert floor.loc[("adult/sex", label), "point"] is None
        else:
            assert floor.loc[("adult/sex", label), "val_dp"] == pytest.approx(ok.min())
    # No validation accuracy reaches 0.99: only ERM's single point is chosen, every grid says why not.
    high = select_points(df, "gap-floor", acc_floor=0.99).set_index("label")
    assert high.loc["ERM", "point"].notna().all() and (high.loc["ERM", "note"] == "single point").all()
    grids = high.drop(index="ERM")
    assert len(grids) == 3 * 3 and grids["point"].isna().all()
    assert (grids["note"] == "no point reaches validation accuracy >= 0.99").all()


# ----------------------------------------------------------------------------- CLI and files


def test_cli_writes_everything_and_rejects_bad_input(results, tmp_path):
    runner = CliRunner()
    out = tmp_path / "rep"
    args = [str(results), "--out", str(out), "--format", "png,pdf", "--pairs", "dp:acc,eo:acc"]
    res = runner.invoke(report_command, args)
    assert res.exit_code == 0, res.output
    names = {p.name for p in out.iterdir()}
    for expected in (
        "report.html",
        "summary.md",
        "cd_diagram.png",
        "cd_diagram.pdf",
        "pareto_adult_sex_dp-acc.png",
        "pareto_celeba_male_eo-acc.pdf",
        "hypervolume.csv",
    ):
        assert expected in names
    assert "Friedman chi2" in res.output and "Nemenyi CD" in res.output
    only = runner.invoke(report_command, [str(results), "--out", str(tmp_path / "o2"), "--tables"])
    assert only.exit_code == 0 and {p.name for p in (tmp_path / "o2").iterdir()} == {
        "summary.md",
        "summary.tex",
        "summary.csv",
        "ranking.md",  # two experiments: the methods ranked per metric over them
    }
    for args, message in [
        (["--pairs", "dpp:acc"], "did you mean 'dp'"),
        (["--pairs", "dp"], "form x:y"),
        (["--format", "jpg"], "unknown figure format"),
        (["--selection", "gap-floor"], "needs --acc-floor"),
    ]:
        res = runner.invoke(report_command, [str(results), "--out", str(tmp_path / "bad"), *args])
        assert isinstance(res.exception, FairbenchError), (args, res.output)
        assert message in str(res.exception) and "\n" not in str(res.exception)
    res = runner.invoke(report_command, [str(tmp_path / "nothing")])
    assert isinstance(res.exception, FairbenchError) and "not a results folder" in str(res.exception)


def test_cli_module_is_light_and_agrees_with_store():
    import fairbench.report.cli as cli_module
    from fairbench.store import STORE_FILE

    assert cli_module.STORE_FILE == STORE_FILE
    code = "import sys, fairbench.report.cli; print('matplotlib' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_cli_default_folders_and_too_few_blocks(tmp_path, monkeypatch):
    write_results(tmp_path / "results" / "one", experiments=["adult/sex"])
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(report_command, ["--cd", "--pareto"])
    assert res.exit_code == 0, res.output
    assert "skipped: only 2 block(s)" in res.output
    assert (tmp_path / "results" / "one" / "report" / "pareto_adult_sex_dp-acc.png").exists()
    assert not (tmp_path / "results" / "one" / "report" / "cd_diagram.png").exists()
    res = CliRunner().invoke(report_command, ["--ablation", "results/one"])
    assert res.exit_code == 0, res.output  # this folder has DVGE ablation rows


def test_figures_are_real_images(built):
    pngs = [p for f in built.sections for fig in f.figures for p in fig.paths if p.suffix == ".png"]
    assert len(pngs) == 3 * 2 + 1 + 3  # Pareto per experiment x pair, CD, ADT's lam sweep per experiment
    for path in pngs:
        with Image.open(path) as im:
            assert im.size[0] > 300 and im.size[1] > 150
            assert len(np.unique(np.asarray(im.convert("L")))) > 10  # not blank
    svg = (built.out / "pareto_adult_sex_dp-acc.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg


def test_html_is_self_contained(built):
    page = (built.out / "report.html").read_text()
    srcs = re.findall(r"<img src='([^']*)'", page)
    assert len(srcs) == 10 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for expected in ("toy", "abc1234", "testhost", "torch", "2.13", "boom", "Time per job"):
        assert expected in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(built, tmp_path):
    """Every <img> of the page decodes in a real browser opened on file:// (no server)."""
    page = (built.out / "report.html").read_text()
    probe = (
        "<script>window.addEventListener('load',()=>{const s=[...document.images].map("
        "i=>i.complete&&i.naturalWidth>0?i.naturalWidth:0);document.body.setAttribute('data-probe',s.join(','))})"
        "</script></body>"
    )
    path = tmp_path / "probe.html"
    path.write_text(page.replace("</body>", probe))
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                path.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the probe script did not run"
    widths = [int(w) for w in found.group(1).split(",")]
    assert len(widths) == 10 and all(w > 300 for w in widths), widths


def test_ablation_reads_the_dvge_methods_rows():
    """The dvge method tags its eta rows variant="dvge" and repeats the reference rows per member."""
    rows = []
    for eta1, fixed in ((0.1, 0.8), (0.5, 0.7), (1.0, 0.6)):
        base = {
            "experiment": "e",
            "label": "DVGE-N",
            "method": "dvge",
            "seed": 0,
            "split": "test",
            "metric": "sens_acc",
            "param_eta1": eta1,
            "param_eta2": 0.0,
            "sens_classifier": "fixed",
        }
        rows += [
            {**base, "variant": "dvge", "value": fixed},
            {**base, "variant": "no_removal", "value": 0.82},
            {**base, "variant": "dims_removed", "value": 0.79},
        ]
    (table,) = declared_tables(pd.DataFrame(rows), tables_of("dvge"))
    assert table.columns == ["No removal", "Sens. dims removed", "η1 = 0.1", "η1 = 0.5", "η1 = 1"]
    assert table.text_rows() == [["DVGE-N", "0.820", "0.790", "0.800", "0.700", "0.600"]]


def test_one_seed_shows_n1_and_no_spread(results, tiny_suite, tmp_path, fairbench):
    df = load_results(results)
    one = df[df["seed"] == 0]
    rows = [r for t in summary_tables(one) for r in t.text_rows()]
    assert rows and all(r[2] == "n=1" and not any("±" in cell for cell in r) for r in rows)
    two = [r for t in summary_tables(df) for r in t.text_rows()]
    assert all(r[2] == "n=2" and "±" in r[3] for r in two)
    # the run's console summary is built by the same module
    run = fairbench("run", tiny_suite, "--results", tmp_path / "one", "--set", "seeds=[0]")
    assert run.code == 0 and "every hyperparameter point" in run.err and "lam=10" in run.err
    lines = [line for line in run.err.splitlines() if "n=1" in line]
    assert len(lines) == 3 and not any("±" in line for line in lines)


def test_declared_tables_split_by_a_varying_parameter():
    """A parameter in `table_by` splits only where it varies (DVGE's clip here): one table per
    value, named in the caption and the file stem; the reference rows go with their own jobs."""
    rows = []
    for clip, drop in ((True, 0.0), (False, 0.2)):
        for eta1 in (0.1, 1.0):
            base = {
                "experiment": "adult/sex",
                "label": "DVGE-D",
                "method": "dvge",
                "seed": 0,
                "split": "test",
                "metric": "sens_acc",
                "param_eta1": eta1,
                "param_eta2": 0.0,
                "param_clip": clip,
                "param_focus": "loss",
                "sens_classifier": "fixed",
            }
            rows += [
                {**base, "variant": "dvge", "value": 0.9 - drop * eta1},
                {**base, "variant": "no_removal", "value": 0.9},
                {**base, "variant": "dims_removed", "value": 0.7},
                {**base, "param_eta2": 0.4, "variant": "dvge", "value": 0.1},  # not eta2 = 0
            ]
    other = {"experiment": "adult/sex", "label": "ERM", "method": "erm", "seed": 0, "split": "test"}
    # Rows of a method that does not declare the table never enter it, even with its metric.
    rows += [{**other, "metric": "acc", "value": 0.8}, {**other, "metric": "sens_acc", "variant": "x", "value": 0.5}]
    tables = declared_tables(pd.DataFrame(rows), tables_of("dvge", "erm"))
    assert [(t.by, t.stem) for t in tables] == [
        ({"sens_classifier": "fixed", "param_clip": False}, "ablation_adult_sex_fixed_clip-false"),
        ({"sens_classifier": "fixed", "param_clip": True}, "ablation_adult_sex_fixed_clip-true"),
    ]
    assert tables[0].caption.endswith("adult/sex; mean ± std over seeds, clip: false")
    assert tables[0].header == ["Encoder", "No removal", "Sens. dims removed", "η1 = 0.1", "η1 = 1"]
    assert tables[0].text_rows() == [["DVGE-D", "0.900", "0.700", "0.880", "0.700"]]
    assert tables[1].text_rows() == [["DVGE-D", "0.900", "0.700", "0.900", "0.900"]]


def test_only_the_methods_present_declare_tables():
    from fairbench.methods.dvge import DVGE
    from fairbench.report.declared import declared_specs

    frame = pd.DataFrame({"method": ["erm", "dvge", "dvge", "not_recorded"]})
    assert declared_specs(frame, tables_of("erm", "dvge", "faap")) == list(DVGE.report_tables)
    assert declared_specs(frame[frame["method"] == "erm"], tables_of("erm", "dvge")) == []


def test_faap_declares_table_1_rows_from_tags_and_columns_from_metrics():
    """FAAP's Table 1: a row per deployed kind x input in the paper's order, a column per metric;
    transfer rows (a `surrogates` tag) make their own table; other methods' rows stay out."""
    rows = []
    values = {"acc": (0.92, 0.90), "dp": (0.30, 0.10), "eodds_sum": (0.40, 0.20)}
    for seed, shift in ((0, 0.0), (1, 0.02)):
        base = {"experiment": "celeba/Smiling", "label": "FAAP", "method": "faap", "seed": seed}
        for kind in ("LF", "normal"):  # not in the paper's order
            for metric, (clean, perturbed) in values.items():
                for split in ("val", "test"):
                    tagged = {**base, "split": split, "metric": metric, "deployed": kind}
                    rows += [
                        {**tagged, "input": "clean", "value": clean + shift},
                        {**tagged, "input": "perturbed", "value": perturbed + shift + (split == "val")},
                    ]
            rows.append({**base, "split": "test", "metric": "acc", "value": 0.5})  # the framework's own, untagged
        transfer = {**base, "split": "test", "deployed": "RG", "surrogates": "normal+fair"}
        rows += [{**transfer, "metric": m, "input": "perturbed", "value": v[1]} for m, v in values.items()]
    other = {"experiment": "celeba/Smiling", "label": "ERM", "method": "erm", "seed": 0, "split": "test"}
    rows.append({**other, "metric": "acc", "deployed": "normal", "input": "clean", "value": 0.1})
    white_box, transfer_table = declared_tables(pd.DataFrame(rows), tables_of("faap", "erm"))
    assert (white_box.stem, transfer_table.stem) == ("faap_celeba_Smiling", "faap_transfer_celeba_Smiling_normal_fair")
    assert white_box.caption.startswith("Deployed models before and after FAAP on the test split, celeba/Smiling")
    assert white_box.header == ["Deployed model", "ACC", "DP", "DEO"]
    assert white_box.text_rows() == [
        ["Normal training", "0.930 ± 0.014", "0.310 ± 0.014", "0.410 ± 0.014"],
        ["Normal training+FAAP", "0.910 ± 0.014", "0.110 ± 0.014", "0.210 ± 0.014"],
        ["Unfair training (LF)", "0.930 ± 0.014", "0.310 ± 0.014", "0.410 ± 0.014"],
        ["Unfair training (LF)+FAAP", "0.910 ± 0.014", "0.110 ± 0.014", "0.210 ± 0.014"],
    ]
    assert "trained on normal+fair (black-box transfer)" in transfer_table.caption
    assert transfer_table.text_rows() == [
        ["Unfair training (RG)+FAAP", "0.900 ± 0.000", "0.100 ± 0.000", "0.200 ± 0.000"]
    ]


def test_a_report_table_reads_one_metric_by_a_parameter_or_several_metrics():
    with pytest.raises(ValueError, match="either `metric` and `column_param` or `metrics`"):
        ReportTable(name="t", caption="c", metric="acc", column_param="eta1", metrics={"dp": "DP"})
    with pytest.raises(ValueError, match="either"):
        ReportTable(name="t", caption="c", metric="acc")
    with pytest.raises(ValueError, match="give them together"):
        ReportTable(name="t", caption="c", metrics={"dp": "DP"}, row_tags=("deployed",))


def _gridded_rows() -> list[dict]:
    """GBA at lam 0.1 and 1 for seeds 0-2 (validation prefers 0.1 for seeds 0 and 1, 1 for seed
    2; test would prefer 1 for every seed) and Vanilla at one point."""
    val = {
        (0, 0.1): (0.8, 0.1),
        (0, 1.0): (0.5, 0.1),
        (1, 0.1): (0.7, 0.3),
        (1, 1.0): (0.6, 0.1),
        (2, 0.1): (0.4, 0.3),
        (2, 1.0): (0.9, 0.3),
    }
    rows = [
        {
            "experiment": "e",
            "method": "erm",
            "label": "Vanilla",
            "seed": 0,
            "split": "test",
            "metric": "acc",
            "value": 0.5,
        }
    ]
    for (seed, lam), (acc_mean, gap) in val.items():
        base = {"experiment": "e", "method": "gba", "label": "GBA", "seed": seed, "param_lam": lam}
        rows += [
            {**base, "split": "val", "metric": "acc_mean", "value": acc_mean},
            {**base, "split": "val", "metric": "bias_gap", "value": gap},
            {**base, "split": "test", "metric": "acc", "value": {0.1: 0.6, 1.0: 0.9}[lam] + seed / 100},
        ]
    return rows


def test_a_declared_table_selects_each_seeds_grid_point_on_validation():
    """One row per label: per seed the point with the best validation metric (within the
    validation bounds), then the seed mean; the caption says what was chosen; every point
    with `every_point` (the report's --select all)."""
    rows = pd.DataFrame(_gridded_rows())
    spec = ReportTable(name="t", caption="{experiment}", metrics={"acc": "Acc"}, select="acc_mean")
    (table,) = declared_tables(rows, {}, [spec], ["Vanilla", "GBA"])
    chosen = [0.60, 0.61, 0.92]  # seeds 0 and 1 at lam 0.1, seed 2 at lam 1
    assert table.text_rows() == [["Vanilla", "0.500"], ["GBA", f"{np.mean(chosen):.3f} ± {np.std(chosen, ddof=1):.3f}"]]
    assert table.caption == "e; grid point per seed by the best validation acc_mean: GBA lam=0.1 (2x), lam=1 (1x)"

    bounded = ReportTable(
        name="t", caption="{experiment}", metrics={"acc": "Acc"}, select="acc_mean", subject_to={"bias_gap": 0.2}
    )
    (table,) = declared_tables(rows, {}, [bounded], ["Vanilla", "GBA"])
    assert table.text_rows()[1] == ["GBA", f"{np.mean([0.60, 0.91]):.3f} ± {np.std([0.60, 0.91], ddof=1):.3f}"]
    assert table.caption.endswith(
        "validation acc_mean with validation bias_gap <= 0.2: GBA lam=0.1 (1x), lam=1 (1x); "
        "GBA: no point qualifies for seed 2 (left out)"
    )

    (every,) = declared_tables(rows, {}, [spec], ["Vanilla", "GBA"], every_point=True)
    assert [row[0] for row in every.text_rows()] == ["Vanilla", "GBA (lam=0.1)", "GBA (lam=1)"]
    assert every.text_rows()[2] == ["GBA (lam=1)", "0.910 ± 0.010"]
    with pytest.raises(ValueError, match="give `select`"):
        ReportTable(name="t", caption="c", metrics={"acc": "Acc"}, subject_to={"dp": 0.1})


def test_rankings_order_methods_per_metric_by_their_average_rank_over_experiments() -> None:
    from fairbench.report.tables import SummaryTable, rankings

    values = {  # experiment -> label -> (acc, dp)
        "e1": {"a": (0.90, 0.10), "b": (0.80, 0.02), "c": (0.85, 0.05)},
        "e2": {"a": (0.70, 0.20), "b": (0.75, 0.01), "c": (0.70, 0.30)},
    }
    tables = []
    for exp, by_label in values.items():
        cells = pd.DataFrame(
            [
                {"experiment": exp, "label": label, "point": "-", "metric": m, "mean": v, "std": 0.01, "n": 3}
                for label, (acc, dp) in by_label.items()
                for m, v in (("acc", acc), ("dp", dp))
            ]
        )
        tables.append(SummaryTable(exp, "best-val-acc", cells, pd.DataFrame()))
    acc, dp = rankings(tables)
    # acc, higher is better: a = (1 + 2.5) / 2, b = (3 + 1) / 2, c = (2 + 2.5) / 2
    assert [row[:3] for row in acc.text_rows()] == [["1", "a", "1.75"], ["2", "b", "2.00"], ["3", "c", "2.25"]]
    assert acc.text_rows()[0][3:] == ["2", "0.900 ± 0.010", "0.700 ± 0.010"]
    # dp, lower is better: b first in both
    # a and c tie at 2.5: by name
    assert [row[1] for row in dp.text_rows()] == ["b", "a", "c"] and "lower is better" in dp.caption
    assert rankings(tables[:1]) == []  # one experiment ranks nothing
