"""GBA's suites (tests/test_suite.py validates every shipped suite): the CIFAR-10S, CelebA and
Colored MNIST ones run end to end (erm and adt, a tiny budget) on generated files in the official
formats, down to the declared table and the critical-difference diagram over multiclass runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from image_fixtures import make_celeba, make_cifar10, make_mnist

SUITES = Path(__file__).resolve().parent.parent / "suites"
TABLE = ["acc_aligned", "acc_conflicting", "acc_mean", "bias_gap"]


def _small_methods(suite: str, extra: list[dict] = ()) -> str:
    """The suite's own erm and adt entries (labels, backbones) with a tiny budget and no lambda
    sweep (the fixtures' validation splits are too small to choose on), as a --set value."""
    spec = yaml.safe_load((SUITES / f"{suite}.yaml").read_text())
    chosen = [m for m in spec["methods"] if m["method"] in ("erm", "adt")] + list(extra)
    for entry in chosen:
        entry["params"] = {**entry.get("params", {}), "epochs": 1, "batch_size": 16}
        entry.pop("grid", None)
    return "methods=" + yaml.safe_dump(chosen, default_flow_style=True, width=10**6).strip()


def _run(fairbench, suite: str, data: Path, out: Path, sets: list[str]) -> pd.DataFrame:
    args = [item for value in ["budget=quick", "seeds=[0]", *sets] for item in ("--set", value)]
    assert fairbench("validate", SUITES / f"{suite}.yaml", *args).code == 0
    result = fairbench("run", SUITES / f"{suite}.yaml", "--results", out, "--data-dir", data, *args)
    assert result.code == 0, result.err
    return pd.read_csv(out / "results.csv")


@pytest.mark.parametrize("suite", ["gba_cifar10s", "gba_celeba"])
def test_gba_image_suites_run_end_to_end_on_generated_files(suite: str, tmp_path: Path, fairbench) -> None:
    data = tmp_path / "data"
    if suite == "gba_cifar10s":
        make_cifar10(data, per_batch=40, n_test=50)
        sets, columns = [], TABLE
    else:
        make_celeba(data)
        sets = [f"experiments.{i}.options={{size: 32}}" for i in range(2)]
        columns = [*TABLE, "acc_unbiased"]
    out = tmp_path / "out"
    table = _run(fairbench, suite, data, out, [_small_methods(suite), *sets])
    test = table[table["split"] == "test"]
    labels = {"gba_cifar10s": {"Baseline", "Adversarial"}, "gba_celeba": {"Vanilla", "Adversarial"}}[suite]
    for experiment, rows in test.groupby("experiment"):
        assert set(rows["label"]) == labels
        for label, own in rows.groupby("label"):
            assert set(columns) <= set(own["metric"]), (experiment, label)
    assert fairbench("report", out, "--ablation").code == 0
    for experiment in set(test["experiment"]):
        text = (out / "report" / f"gba_{experiment}.md").read_text()
        assert "| Aligned | Conflicting | Mean | Bias gap" in text
        assert all(f"| {label} |" in text for label in labels)


def test_cd_diagram_over_multiclass_colored_mnist_runs(tmp_path: Path, fairbench) -> None:
    """Two skews x three metric pairs = six blocks; three methods on a 10-class target."""
    data = tmp_path / "data"
    make_mnist(data, n_train=600, n_test=200)
    third = {"method": "adt", "label": "Adversarial-0.1", "params": {"arch": "mlp3", "lam": 0.1}}
    out = tmp_path / "out"
    table = _run(fairbench, "gba_cmnist", data, out, [_small_methods("gba_cmnist", [third])])
    assert set(table["label"]) == {"Vanilla", "Adversarial", "Adversarial-0.1"}
    assert "dp" not in set(table["metric"])  # 10 classes: binary-only gaps are omitted
    result = fairbench("report", out, "--cd")
    assert result.code == 0, result.err
    ranks = pd.read_csv(out / "report" / "cd.csv")
    assert set(ranks["label"]) == {"Vanilla", "Adversarial", "Adversarial-0.1"}
    assert (out / "report" / "cd_diagram.png").exists()
    assert '"n_blocks": 6' in (out / "report" / "cd.md").read_text()
