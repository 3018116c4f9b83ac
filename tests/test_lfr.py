"""LFR (Zemel et al. 2013): its loss terms against their formulas by hand, the exact gradient
L-BFGS-B receives, the inputs it sees, and runs through the method and the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from contexts import run_context

from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.errors import FairbenchError
from fairbench.methods.lfr import LFR, Objective, Parameters, Problem, lfr_inputs, loss_terms
from fairbench.registry import METHODS

# Four rows, two features, two protected attributes (so four alpha cells), two prototypes.
X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [0.5, -1.0]])
Y = np.array([1.0, 0.0, 1.0, 0.0])
GROUPS = [np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0])]
CELL = GROUPS[0] + 2 * GROUPS[1]
ALPHA = np.array([[0.5, 1.0], [1.5, 0.2], [0.3, 0.7], [1.0, 2.0]])
V = np.array([[0.0, 0.5], [1.5, 1.0]])
W = np.array([0.2, 0.9])


def _problem(groups: list[np.ndarray] = GROUPS) -> Problem:
    return Problem(
        torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(CELL), [torch.from_numpy(g) for g in groups]
    )


def _parameters() -> Parameters:
    return Parameters(torch.from_numpy(ALPHA), torch.from_numpy(W), torch.from_numpy(V))


def _memberships_by_hand() -> np.ndarray:
    m = np.zeros((4, 2))
    for n in range(4):
        for k in range(2):
            distance = sum(ALPHA[CELL[n], i] * (X[n, i] - V[k, i]) ** 2 for i in range(2))
            m[n, k] = np.exp(-distance)
        m[n] /= m[n].sum()
    return m


def test_loss_terms_match_their_formulas() -> None:
    m = _memberships_by_hand()
    parity = 0.0
    for g in GROUPS:
        for k in range(2):
            plus = sum(m[n, k] for n in range(4) if g[n] == 1) / (g == 1).sum()
            minus = sum(m[n, k] for n in range(4) if g[n] == 0) / (g == 0).sum()
            parity += abs(plus - minus)
    reconstruction = sum((X[n, i] - sum(m[n, k] * V[k, i] for k in range(2))) ** 2 for n in range(4) for i in range(2))
    yhat = [sum(m[n, k] * W[k] for k in range(2)) for n in range(4)]
    cross_entropy = sum(-Y[n] * np.log(yhat[n]) - (1 - Y[n]) * np.log(1 - yhat[n]) for n in range(4))

    terms = loss_terms(_problem(), _parameters())
    assert terms["L_z"].item() == pytest.approx(parity, rel=1e-12)
    assert terms["L_x"].item() == pytest.approx(reconstruction, rel=1e-12)
    assert terms["L_y"].item() == pytest.approx(cross_entropy, rel=1e-12)
    # One attribute: L_z is the paper's sum_k |M+_k - M-_k| for that attribute alone.
    single = loss_terms(_problem(GROUPS[:1]), _parameters())["L_z"].item()
    assert 0 < single < parity


def test_objective_weights_the_terms_and_its_gradient_matches_finite_differences() -> None:
    weights = {"L_z": 3.0, "L_x": 0.5, "L_y": 2.0}
    objective = Objective(_problem(), cells=4, prototypes=2, weights=weights)
    theta = np.concatenate([ALPHA.ravel(), W, V.ravel()])
    assert objective.size == len(theta)
    value, grad = objective(theta)
    terms = loss_terms(_problem(), _parameters())
    assert value == pytest.approx(sum(weights[name] * terms[name].item() for name in weights), rel=1e-12)
    step = 1e-6
    numeric = np.array(
        [(objective(theta + step * e)[0] - objective(theta - step * e)[0]) / (2 * step) for e in np.eye(len(theta))]
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)
    bounds = objective.bounds()
    assert bounds[:8] == [(0.0, None)] * 8 and bounds[8:10] == [(0.0, 1.0)] * 2 and bounds[10:] == [(None, None)] * 4


@pytest.fixture
def one_thread():
    """One torch thread, as a runner worker has by default: tiny problems on busy cores run tens
    of times slower with more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _task(sensitive: str | list[str] = "s") -> TaskData:
    return build_task(open_dataset("synthetic", None, {"n": 300}), None, "y", sensitive, 0)


def _lfr(**params: object) -> LFR:
    return LFR(LFR.resolve(params, "paper"))


def test_lfr_sees_the_features_without_the_protected_columns() -> None:
    data = _task()
    x, cell, groups = lfr_inputs(data)
    kept = [source for source in data.feature_sources if source != "s"]
    assert x.shape == (len(data.y), len(kept)) and x.dtype == np.float64
    assert "proxy" in kept and len(kept) < len(data.feature_sources)
    np.testing.assert_array_equal(cell, data.g)
    assert len(groups) == 1
    # Two attributes: both sources leave the inputs and each row's cell is its pair of groups.
    both = _task(["s", "proxy > 0"])
    x, cell, groups = lfr_inputs(both)
    assert x.shape[1] == len(kept) - 1
    np.testing.assert_array_equal(cell, both.protected["s"] + 2 * both.protected["proxy > 0"])
    assert len(groups) == 2 and set(cell) == {0, 1, 2, 3}


def test_lfr_is_deterministic_and_scores_are_probabilities(tmp_path: Path, one_thread: None) -> None:
    data = _task()
    first = _lfr(iterations=40).run(data, run_context(tmp_path))
    again = _lfr(iterations=40).run(data, run_context(tmp_path))
    other = _lfr(iterations=40).run(data, run_context(tmp_path, seed=1))
    for split in ("val", "test"):
        scores = first.scores[split]
        assert scores.shape == (len(data.splits[split]),) and ((scores >= 0) & (scores <= 1)).all()
        np.testing.assert_array_equal(scores, again.scores[split])
    assert not np.array_equal(first.scores["test"], other.scores["test"])
    assert 0 < first.info["iterations"] <= 40


def test_lfr_rejects_what_it_cannot_model(tmp_path: Path) -> None:
    data = _task()
    three = dataclasses.replace(data, y=data.y + (data.g == 1), n_classes=3)
    with pytest.raises(FairbenchError, match="target 'y' has 3 classes"):
        _lfr(iterations=5).run(three, run_context(tmp_path))
    wide = dataclasses.replace(data, protected={"s": data.g * 2}, group_counts={"s": 3})
    with pytest.raises(FairbenchError, match="needs binary groups: sensitive 's' has 3 values"):
        _lfr(iterations=5).run(wide, run_context(tmp_path))


def test_lfr_runs_end_to_end_from_a_suite(tmp_path: Path, fairbench) -> None:
    assert "lfr" in METHODS.names()
    suite = tmp_path / "lfr.yaml"
    suite.write_text(
        "name: lfr\nseeds: [0]\nbudget: quick\n"
        "experiments:\n  - {dataset: synthetic, target: y, sensitive: s, options: {n: 400}}\n"
        "methods:\n  - method: lfr\n    params: {iterations: 30}\n"
    )
    result = fairbench("run", suite, "--results", tmp_path / "out")
    assert result.code == 0, result.err
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    test = table[table["split"] == "test"].set_index("metric")["value"]
    assert {"acc", "discrimination", "consistency", "delta"} <= set(test.index)
    assert test["delta"] == pytest.approx(test["acc"] - test["discrimination"])
