"""k-class targets, class-valued and several sensitive attributes, and the bias attribute: the
contract of issue 9 section 1 and issue 11 part 2, against hand counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from contexts import run_context

from fairbench import metrics
from fairbench.data.base import aligned_flags, build_task, encode, open_dataset
from fairbench.errors import FairbenchError
from fairbench.execution.worker import metric_rows
from fairbench.methods.base import Outcome
from fairbench.methods.grad_pred import GradPred
from fairbench.predictions import SplitPredictions, from_outcome


def test_class_metrics_against_a_hand_count() -> None:
    # 3 classes, 3 bias values; class c is skewed to bias value c, so aligned = (bias == y).
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    bias = np.array([0, 0, 1, 1, 1, 2, 2, 0, 2])
    yh = np.array([0, 1, 0, 1, 0, 1, 2, 2, 0])
    p = np.eye(3)[yh] * 0.8 + 0.2 / 3  # rows sum to 1, argmax = yh
    given = metrics.inputs(y, p, np.zeros(9, dtype=int), bias=bias, aligned=bias == y)
    values = metrics.evaluate_inputs(given)
    # aligned rows 0,1,3,4,6,8: correct 0,3,6 -> 3/6; conflicting rows 2,5,7: correct 2,5,7 -> 3/3
    assert values["acc"] == pytest.approx(6 / 9)
    assert values["acc_aligned"] == pytest.approx(3 / 6)
    assert values["acc_conflicting"] == pytest.approx(1.0)
    assert values["acc_mean"] == pytest.approx(0.75)
    assert values["bias_gap"] == pytest.approx(-0.5)
    # (y, bias) cells: (0,0) 1/2, (0,1) 1/1, (1,1) 1/2, (1,2) 1/1, (2,2) 1/2, (2,0) 1/1 -> mean 0.75
    assert values["acc_unbiased"] == pytest.approx(0.75)
    # the binary-only gaps are left out, not computed on class labels
    assert not {"dp", "eo", "discrimination", "delta", "eodds_sum"} & set(values)


def test_hard_predictions_for_both_shapes() -> None:
    assert metrics.hard(np.array([0.2, 0.5, 0.7])).tolist() == [0, 1, 1]
    assert metrics.hard(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])).tolist() == [1, 0]


def test_encode_class_columns_and_expressions() -> None:
    frame = pd.DataFrame({"digit": [7, 3, 9, 3], "flag": [0, 1, 1, 0], "age": [20.5, 30.0, 41.0, 18.0]})
    codes, k = encode(frame, "digit", "t")
    assert codes.tolist() == [1, 0, 2, 0] and k == 3  # index among the sorted distinct values 3, 7, 9
    assert encode(frame, "flag", "t")[0].tolist() == [0, 1, 1, 0] and encode(frame, "flag", "t")[1] == 2
    assert encode(frame, "age > 25", "t")[0].tolist() == [0, 1, 1, 0]
    with pytest.raises(FairbenchError, match="column 'age' is neither binary nor a class column"):
        encode(frame, "age", "t")


def test_aligned_is_the_class_majority_bias_on_train() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    bias = np.array([1, 1, 0, 0, 0, 1, 0, 1])
    train = np.arange(6)  # class 0 skewed to bias 1 (2 of 3), class 1 to bias 0 (2 of 3)
    assert aligned_flags(y, bias, train).tolist() == [True, True, False, True, True, False, False, False]


def test_several_sensitive_attributes_are_scored_each_and_averaged() -> None:
    y = np.array([1, 0, 1, 1, 0, 0])
    p = np.array([0.9, 0.2, 0.6, 0.4, 0.7, 0.1], dtype=np.float32)
    a = np.array([1, 1, 1, 0, 0, 0])
    b = np.array([1, 0, 1, 0, 1, 0])
    part = SplitPredictions(np.arange(6), p, y, np.column_stack([a, b]), attributes=("a", "b"))
    rows = {(m, t.get("attribute")): v for m, v, t in part.evaluate()}
    # hard predictions 1,0,1,0,1,0: a=1 rows predict 1,0,1 and a=0 rows 0,1,0; b=1 rows 1,1,1, b=0 rows 0,0,0
    disc_a = abs(2 / 3 - 1 / 3)
    disc_b = 1.0
    assert rows[("discrimination", "a")] == pytest.approx(disc_a, abs=1e-6)
    assert rows[("discrimination", "b")] == pytest.approx(disc_b, abs=1e-6)
    assert rows[("discrimination", None)] == pytest.approx((disc_a + disc_b) / 2, abs=1e-6)
    accuracy = 4 / 6  # hard predictions 1,0,1,0,1,0
    assert rows[("acc", None)] == pytest.approx(accuracy) and ("acc", "a") not in rows
    assert rows[("delta", None)] == pytest.approx(accuracy - (disc_a + disc_b) / 2, abs=1e-6)


def test_a_three_class_target_trains_and_scores_end_to_end(tmp_path: Path) -> None:
    data = build_task(open_dataset("synthetic", None, {"n": 400}), None, "grade", "s", 0, bias="proxy > 0.5")
    assert data.n_classes == 3 and set(np.unique(data.y)) == {0, 1, 2}
    assert data.aligned is not None and data.bias is not None
    outcome = GradPred(GradPred.resolve({"epochs": 2, "select": "acc"}, "paper")).run(data, run_context(tmp_path))
    assert outcome.scores["test"].shape == (len(data.splits["test"]), 3)
    rows = {(split, m) for split, m, _, _ in metric_rows(data, outcome)[0]}
    assert ("test", "acc_conflicting") in rows and ("test", "dp") not in rows
    with pytest.raises(ValueError, match="a 3-class target takes"):
        from_outcome(data, {"test": outcome.scores["test"][:, :2]})


def test_binary_scores_may_come_as_two_columns(tmp_path: Path) -> None:
    data = build_task(open_dataset("synthetic", None, {"n": 200}), None, "y", "s", 0)
    p = np.linspace(0, 1, len(data.splits["test"]))
    kept = from_outcome(data, {"test": np.column_stack([1 - p, p])})
    np.testing.assert_allclose(kept["test"].scores, p.astype(np.float32))


def test_grad_pred_protects_a_chosen_attribute_and_reports_both(tmp_path: Path) -> None:
    data = build_task(open_dataset("synthetic", None, {"n": 400}), None, "y", ["s", "x0 > 0"], 0)
    assert list(data.protected) == ["s", "x0 > 0"] and data.sensitive == "s"
    method = GradPred(GradPred.resolve({"epochs": 2, "protect": ["x0 > 0"]}, "paper"))
    outcome: Outcome = method.run(data, run_context(tmp_path))
    tagged = {t.get("attribute") for split, m, _, t in metric_rows(data, outcome)[0] if m == "discrimination"}
    assert tagged == {None, "s", "x0 > 0"}
    bad = GradPred(GradPred.resolve({"epochs": 1, "protect": ["race == 1"]}, "paper"))
    with pytest.raises(FairbenchError, match="protect: 'race == 1' is not a sensitive attribute"):
        bad.run(data, run_context(tmp_path))


def test_suite_lists_sensitive_attributes(tmp_path: Path, fairbench) -> None:
    suite = tmp_path / "multi.yaml"
    suite.write_text(
        "name: multi\nseeds: [0]\nbudget: quick\nexperiments:\n"
        "  - {dataset: synthetic, target: y, sensitive: [s, x0 > 0], options: {n: 300}}\n"
        "  - {dataset: synthetic, target: grade, sensitive: s, bias: proxy > 0.5, options: {n: 300}}\n"
        "methods:\n  - method: grad_pred\n    params: {epochs: 1, select: last}\n"
    )
    assert fairbench("validate", suite).code == 0
    result = fairbench("run", suite, "--results", tmp_path / "out")
    assert result.code == 0, result.err
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    multi = table[table["experiment"] == "synthetic/y/s, x0 > 0"]
    assert set(multi.loc[multi["metric"] == "discrimination", "attribute"].fillna("")) == {"", "s", "x0 > 0"}
    graded = table[table["experiment"] == "synthetic/grade/s"]
    assert {"acc", "acc_aligned", "acc_unbiased"} <= set(graded["metric"]) and "dp" not in set(graded["metric"])
    assert fairbench("rescore", tmp_path / "out").code == 0  # per-attribute rows replaced, not doubled
    again = pd.read_parquet(tmp_path / "out" / "results.parquet")
    key = ["job_id", "split", "metric", "attribute"]
    pd.testing.assert_frame_equal(
        table.sort_values(key).reset_index(drop=True), again.sort_values(key).reset_index(drop=True)
    )
    typo = tmp_path / "typo.yaml"
    typo.write_text(suite.read_text().replace("x0 > 0]", "x9 > 0]"))
    bad = fairbench("validate", typo)
    assert bad.code == 2 and "typo.yaml:5:" in bad.err and "'x9 > 0'" in bad.err


def test_derived_attributes_hide_their_source_columns(real_data) -> None:
    """German's sex is derived from personal_status: protecting sex leaves personal_status out of
    consistency's neighbour features too."""
    from fairbench.predictions import task_features

    root = real_data("statlog_german/german.data")
    data = build_task(open_dataset("german", root), None, "credit", "sex == 'male'", 0)
    rows = data.splits["test"]
    kept = task_features(data, rows)
    shown = [s for s in data.feature_sources if s not in {"sex", "personal_status"}]
    assert kept.shape == (len(rows), len(shown))
    assert data.input_sources(["sex == 'male'"]) == {"sex", "personal_status"}


def test_a_parameter_name_shared_with_different_types_exports(tmp_path: Path, fairbench) -> None:
    """LFR's alpha is a word ('group'), VFAE's a number: the results table still exports."""
    suite = tmp_path / "mixed.yaml"
    suite.write_text(
        "name: mixed\nseeds: [0]\nbudget: quick\nexperiments:\n"
        "  - {dataset: synthetic, target: y, sensitive: s, options: {n: 200}}\n"
        "methods:\n  - {method: lfr, params: {iterations: 5}}\n  - {method: vfae, params: {epochs: 1}}\n"
    )
    result = fairbench("run", suite, "--results", tmp_path / "out")
    assert result.code == 0, result.err
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert set(table["param_alpha"].dropna()) == {"group", "1.0"}
