"""GRAD-Auto and NN-Auto: the reconstruction target, the logistic regression on the trunk, the
attribute branch and GRAD's selection rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from contexts import run_context
from sklearn.linear_model import LogisticRegression

from fairbench import metrics
from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.methods.grad_auto import GradAuto
from fairbench.methods.nn_auto import NNAuto
from fairbench.report.declared import declared_tables
from fairbench.runner import registered_specs
from fairbench.train import Batch, Trainer, embed


def _data(sensitive: str | list[str] = "s == 1") -> TaskData:
    return build_task(open_dataset("synthetic", None, {"n": 300}), None, "y", sensitive, 0)


def _method(cls: type[GradAuto], **params: object) -> GradAuto:
    return cls(cls.resolve({"epochs": 3, **params}, "paper"))


def test_target_is_x_without_the_protected_columns(tmp_path: Path) -> None:
    data = _data("s == 1")
    t = Trainer(data, run_context(tmp_path))
    x = t.x
    width, loss = _method(GradAuto).target(t)
    kept = [i for i, name in enumerate(data.feature_names) if name not in ("s=0", "s=1")]
    assert [data.feature_names[i] for i in kept] == ["x0", "x1", "x2", "x3", "x4", "proxy"]
    assert width == len(kept)
    rows = torch.arange(10)
    batch = Batch(t, rows, rows)
    # Zero exactly at x~; away from it, the squared error summed over x~'s columns.
    assert loss(x[rows][:, kept], batch).item() == 0.0
    expected = x[rows][:, kept].pow(2).sum(1).mean()
    torch.testing.assert_close(loss(torch.zeros(10, width), batch), expected)


def test_target_drops_the_columns_of_the_protected_attributes_only(tmp_path: Path) -> None:
    def rebuilt(method: GradAuto, data: TaskData) -> int:
        return method.target(Trainer(data, run_context(tmp_path)))[0]

    # x1..x4 and proxy: every column an expression reads goes, the proxy is a feature, not the attribute
    assert rebuilt(_method(NNAuto), _data("s == 1 and x0 > 0")) == 5
    both = _data(["s == 1", "x0 > 0"])
    assert rebuilt(_method(GradAuto), both) == rebuilt(_method(NNAuto), both) == 5
    assert rebuilt(_method(GradAuto, protect=["x0 > 0"]), both) == 7  # s=0, s=1 stay


def test_logistic_regression_sees_only_the_trunk(tmp_path: Path) -> None:
    data = _data()
    method = _method(GradAuto)
    model, t, fit = method.train(data, run_context(tmp_path))
    outcome = method.outcome(model, t, fit)
    x = t.x
    train, test = (torch.from_numpy(data.splits[s]) for s in ("train", "test"))
    head = LogisticRegression(max_iter=1000).fit(embed(model.trunk, x[train]), data.y[train])
    assert head.n_features_in_ == 40  # the trunk's width, not the 8 input columns
    np.testing.assert_allclose(outcome.scores["test"], head.predict_proba(embed(model.trunk, x[test]))[:, 1])
    # A protected input column moves the scores exactly as far as it moves the trunk's output.
    flipped = x.clone()
    s_columns = [i for i, name in enumerate(data.feature_names) if name.startswith("s=")]
    flipped[:, s_columns] = 1.0 - flipped[:, s_columns]
    t_flipped = Trainer(data, run_context(tmp_path), inputs=flipped.numpy())
    scores = _method(GradAuto).scorer(model, t_flipped)("test")
    refit = LogisticRegression(max_iter=1000).fit(embed(model.trunk, flipped[train]), data.y[train])
    np.testing.assert_allclose(scores, refit.predict_proba(embed(model.trunk, flipped[test]))[:, 1])


def test_one_attribute_branch_per_protected_attribute_none_for_nn_auto(tmp_path: Path) -> None:
    data = _data(["s == 1", "x0 > 0"])

    def heads(method: GradAuto) -> int:
        return len(method.train(data, run_context(tmp_path))[0].attribute_heads)

    assert heads(_method(GradAuto, epochs=1)) == 2
    assert heads(_method(GradAuto, epochs=1, protect=["s == 1"])) == 1
    assert heads(_method(NNAuto, epochs=1)) == 0
    assert not {"lam", "protect"} & set(NNAuto.hparams)


def test_selection_is_lowest_mean_val_discrimination_ties_by_accuracy(tmp_path: Path) -> None:
    data = _data(["s == 1", "x0 > 0"])
    method = _method(GradAuto, epochs=4)
    model, t, fit = method.train(data, run_context(tmp_path))
    outcome = method.outcome(model, t, fit)
    logged = [(epoch["val_disc"], -epoch["val_acc"]) for epoch in fit.history]
    assert len(logged) == 4
    selected = outcome.info["selected_epoch"]
    assert logged[selected - 1] == min(logged)
    # The kept scores are the selected epoch's: its (discrimination, -accuracy) on validation.
    val = data.splits["val"]
    scores = outcome.scores["val"]
    predicted = metrics.hard(scores)
    discrimination = np.mean([metrics.discrimination(predicted, g[val]) for g in data.protected.values()])
    again = (discrimination, -metrics.acc(data.y[val], metrics.hard(scores)))
    np.testing.assert_allclose(again, logged[selected - 1], atol=1e-5)


def test_grad_table_gives_the_mean_and_each_attributes_discrimination() -> None:
    """GRAD Table 2: Discr is the mean over the protected attributes, then one column per
    attribute; the per-attribute rows of other metrics (delta) are not columns."""
    rows = [
        {
            "experiment": "e",
            "method": method,
            "label": label,
            "seed": 0,
            "split": "test",
            "metric": metric,
            "value": value,
            "attribute": attribute,
        }
        for method, label in (("grad_auto", "GRAD-Auto"), ("nn_auto", "NN-Auto"))
        for metric, value, attribute in (
            ("acc", 0.7, None),
            ("delta", 0.65, None),
            ("consistency", 0.9, None),
            ("delta", 0.68, "race"),
            ("discrimination", 0.05, None),
            ("discrimination", 0.02, "race"),
            ("discrimination", 0.08, "gender"),
        )
    ]
    declaring = registered_specs(["grad_auto", "nn_auto"], "paper").method_tables
    (table,) = declared_tables(pd.DataFrame(rows), declaring)
    assert table.header == ["Label", "Acc", "Delta", "Discr", "Discr (race)", "Discr (gender)", "Cons"]
    assert table.text_rows() == [
        ["GRAD-Auto", "0.700", "0.650", "0.050", "0.020", "0.080", "0.900"],
        ["NN-Auto", "0.700", "0.650", "0.050", "0.020", "0.080", "0.900"],
    ]
    single = [r for r in rows if r["attribute"] is None]  # Table 1: one attribute, no extra columns
    (table,) = declared_tables(pd.DataFrame(single), declaring)
    assert table.header == ["Label", "Acc", "Delta", "Discr", "Cons"]


def test_a_suite_table_replaces_the_methods_table_of_the_same_name() -> None:
    """grad_table1/2 declare GRAD's table in the suite, so that NN (erm, which declares none) is a row."""
    import yaml

    from fairbench.table_spec import table_from_mapping

    rows = [
        {
            "experiment": "e",
            "method": method,
            "label": label,
            "seed": 0,
            "split": "test",
            "metric": metric,
            "value": 0.5,
            "attribute": None,
        }
        for method, label in (("erm", "NN"), ("grad_pred", "GRAD-Pred"))
        for metric in ("acc", "delta", "discrimination", "consistency")
    ]
    suite = yaml.safe_load((Path(__file__).parent.parent / "suites" / "grad_table1.yaml").read_text())
    specs = [table_from_mapping(entry) for entry in suite["report"]["tables"]]
    declaring = registered_specs(["erm", "grad_pred"], "paper").method_tables
    (table,) = declared_tables(pd.DataFrame(rows), declaring, specs)
    assert [row[0] for row in table.text_rows()] == ["GRAD-Pred", "NN"]
    assert table.header == ["Label", "Acc", "Delta", "Discr", "Cons"]
    (ordered,) = declared_tables(pd.DataFrame(rows), declaring, specs, ["NN", "GRAD-Pred"])  # the suite's method order
    assert [row[0] for row in ordered.text_rows()] == ["NN", "GRAD-Pred"]
