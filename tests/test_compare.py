"""`fairbench compare RESULTS_A RESULTS_B`: B - A per shared point and metric, a paired bootstrap
interval, one verdict line per metric, and which paired jobs ran other code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fairbench import predictions
from fairbench.compare import compare
from fairbench.store import load_jobs, load_results

ERM_ONLY = "methods=[{method: erm, params: {epochs: 2}}]"


@pytest.fixture
def baseline(tiny_suite: Path, tmp_path: Path, fairbench) -> Path:
    """A results folder of ERM on two seeds."""
    results = tmp_path / "a"
    assert fairbench("run", tiny_suite, "--results", results, "--set", ERM_ONLY).code == 0
    return results


def test_a_run_that_flips_every_prediction_is_worse_in_accuracy_and_equal_in_dp(
    baseline: Path, tmp_path: Path, fairbench
) -> None:
    changed = tmp_path / "b"
    shutil.copytree(baseline, changed)
    for job in load_jobs(changed).itertuples():  # B: the same jobs predicting the opposite class
        kept = predictions.load(changed, job.job_id)
        for part in kept.values():
            part.scores = 1.0 - part.scores
        predictions.save(changed, job.job_id, kept, job.finished)
    assert fairbench("rescore", changed).code == 0

    result = compare(baseline, changed, names=["acc", "dp"], reps=200)
    rows = result.rows.set_index("metric")
    assert rows.loc["acc", "diff"] == pytest.approx(1 - 2 * rows.loc["acc", "mean_a"])
    assert rows.loc["acc", "ci_high"] < 0 and rows.loc["acc", "verdict"] == "B worse"
    assert rows.loc["dp", "diff"] == pytest.approx(0.0, abs=1e-12)  # |gap| of flipped predictions is the same
    assert rows.loc["dp", "verdict"] == "no clear difference" and rows.loc["acc", "seeds"] == 2

    shown = fairbench("compare", baseline, changed, "--metrics", "acc,dp", "--bootstrap", "200")
    assert shown.code == 0, shown.err
    assert "acc: 1 B worse (of 1 shared points)" in shown.out
    assert "dp: 1 no clear difference (of 1 shared points)" in shown.out
    assert "2 of 2 paired jobs: A at" in shown.out and "(same code revision)" in shown.out


def test_folders_without_a_shared_point_are_a_one_line_error(
    baseline: Path, tiny_suite: Path, tmp_path: Path, fairbench
) -> None:
    other = tmp_path / "c"
    assert fairbench("run", tiny_suite, "--results", other, "--set", ERM_ONLY, "--set", "seeds=[5]").code == 0
    result = fairbench("compare", baseline, other)
    assert result.code == 2 and "share no experiment, label, grid point and seed" in result.err


def test_two_labels_of_one_folder_a_baseline_against_every_grid_point(
    tiny_suite: Path, tmp_path: Path, fairbench
) -> None:
    results = tmp_path / "both"
    assert fairbench("run", tiny_suite, "--results", results).code == 0
    result = compare(results, results, names=["acc"], reps=100, labels=("erm", "ADT"))
    rows = result.rows.set_index("point")
    assert sorted(rows.index) == ["lam=1", "lam=10"] and set(rows["label"]) == {"ADT vs erm"}
    table = load_results(results)
    test_acc = table[(table["split"] == "test") & (table["metric"] == "acc")]
    erm = test_acc[test_acc["method"] == "erm"]["value"].mean()
    adt = test_acc[(test_acc["method"] == "adt") & (test_acc["param_lam"] == 10.0)]["value"].mean()
    assert rows.loc["lam=10", "diff"] == pytest.approx(adt - erm) and rows.loc["lam=10", "seeds"] == 2
    shown = fairbench("compare", results, "--labels", "erm,ADT", "--metrics", "acc", "--bootstrap", "100")
    assert shown.code == 0 and "acc:" in shown.out and "(of 2 shared points)" in shown.out
    typo = fairbench("compare", results, "--labels", "erm,ADTT")
    assert typo.code == 2 and "no label 'ADTT' in these results (did you mean 'ADT'?)" in typo.err
