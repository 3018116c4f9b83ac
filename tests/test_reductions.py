"""fairlearn's reductions around scikit-learn classifiers: the classifiers honour sample weights
(fairlearn #1087) and the reduction closes the demographic-parity gap that plain ERM leaves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fairbench import metrics
from fairbench.data.base import build_task, open_dataset
from fairbench.methods.reductions import Reductions, weighted_estimator
from tests.contexts import run_context


def _rows(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)


def test_logistic_weights_count_like_repeated_rows() -> None:
    x, y = _rows()
    weights = np.where(np.arange(len(y)) % 3 == 0, 3.0, 1.0)
    repeated = np.repeat(np.arange(len(y)), weights.astype(int))
    weighted = weighted_estimator("logistic", 0, 1).fit(x, y, sample_weight=weights)
    copies = weighted_estimator("logistic", 0, 1).fit(x[repeated], y[repeated])
    assert np.allclose(weighted.coef_, copies.coef_, atol=1e-3)


def test_mlp_weights_move_the_fit() -> None:
    x, y = _rows()
    plain = weighted_estimator("mlp", 0, 30).fit(x, y)
    favoured = weighted_estimator("mlp", 0, 30).fit(x, y, sample_weight=np.where(y == 1, 10.0, 0.1))
    assert favoured.predict(x).mean() > plain.predict(x).mean() + 0.1


def _fair_and_plain(tmp_path: Path, constraint: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Test-split decisions of the reduction and of plain logistic regression, with labels and groups."""
    data = build_task(open_dataset("synthetic", None, {"n": 800, "bias": 2.0}), None, "y", "s", 0)
    train, test = data.splits["train"], data.splits["test"]
    params = Reductions.resolve({"constraint": constraint, "max_iter": 10}, "paper")
    fair = Reductions(params).run(data, run_context(tmp_path)).scores["test"]
    assert set(np.unique(fair)) <= {0.0, 1.0}  # the randomised mixture's decisions
    plain = weighted_estimator("logistic", 0, 1).fit(data.x[train], data.y[train]).predict(data.x[test])
    return metrics.hard(fair), plain, data.y[test], data.g[test]


def test_demographic_parity_reduction_closes_the_gap_erm_leaves(tmp_path: Path) -> None:
    fair, plain, _, g = _fair_and_plain(tmp_path, "dp")
    assert metrics.dp(fair, g) < metrics.dp(plain, g) / 4


@pytest.mark.slow
def test_equalized_odds_reduction_closes_the_gap_erm_leaves(tmp_path: Path) -> None:
    fair, plain, y, g = _fair_and_plain(tmp_path, "eodds")
    assert metrics.eodds_max(y, fair, g) < metrics.eodds_max(y, plain, g) / 2
