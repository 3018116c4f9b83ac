"""Every metric against fairlearn (where it has one) or a direct transcription, on random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from fairbench import metrics, predictions
from fairbench.errors import FairbenchError

fairlearn = pytest.importorskip("fairlearn.metrics", reason="fairlearn is a dev dependency")


def _random(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, n), rng.random(n), (rng.random(n) < rng.uniform(0.2, 0.8)).astype(int)


@pytest.mark.parametrize("seed", range(5))
def test_against_fairlearn(seed: int) -> None:
    y, p, g = _random(seed)
    yh = metrics.hard(p)
    out = metrics.evaluate(y, p, g)
    assert out["acc"] == pytest.approx(np.mean(y == yh))
    assert out["dp"] == pytest.approx(fairlearn.demographic_parity_difference(y, yh, sensitive_features=g))
    assert out["eodds_max"] == pytest.approx(fairlearn.equalized_odds_difference(y, yh, sensitive_features=g))
    frame = fairlearn.MetricFrame(
        metrics={
            "tpr": fairlearn.true_positive_rate,
            "fpr": fairlearn.false_positive_rate,
            "sel": fairlearn.selection_rate,
        },
        y_true=y,
        y_pred=yh,
        sensitive_features=g,
    )
    gaps = frame.difference()
    assert out["eo"] == pytest.approx(gaps["tpr"])
    assert out["eodds_sum"] == pytest.approx(gaps["tpr"] + gaps["fpr"])
    assert out["dp_perfect"] == pytest.approx(fairlearn.demographic_parity_difference(y, y, sensitive_features=g))
    # Discrimination (GRAD): the predicted labels' rate gap; Zemel's score version on the scores
    assert out["discrimination"] == pytest.approx(abs(yh[g == 1].mean() - yh[g == 0].mean()))
    assert out["discrimination"] == pytest.approx(out["dp"])
    assert out["discrimination_score"] == pytest.approx(abs(p[g == 1].mean() - p[g == 0].mean()))
    assert out["discrimination_score"] != pytest.approx(out["discrimination"])
    assert out["delta"] == pytest.approx(out["acc"] - out["discrimination"])
    joint = (yh == 1) & (y == 1)
    assert out["eo_joint"] == pytest.approx(abs(joint[g == 1].mean() - joint[g == 0].mean()))


def test_consistency_is_brute_force_knn() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 6))
    yh = rng.integers(0, 2, 300)
    distances = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    neighbours = np.argsort(distances, axis=1)[:, :10]
    expected = 1 - np.mean(np.abs(yh - yh[neighbours].mean(axis=1)))
    assert metrics.consistency(x, yh, chunk=64) == pytest.approx(expected)
    assert metrics.consistency(x, np.ones(300, dtype=int)) == 1.0


def test_neighbour_graph_is_computed_once_per_feature_matrix() -> None:
    """Every job of a task scores the same rows: the kNN graph is reused, and a different matrix
    (or k) gets its own."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 5))
    first = metrics.nearest_neighbours(x)
    assert metrics.nearest_neighbours(x.copy()) is first
    assert metrics.nearest_neighbours(x, k=3).shape == (200, 3)
    moved = x.copy()
    moved[0, 0] += 1.0
    assert metrics.nearest_neighbours(moved) is not first
    # a worker's jobs cycle through seeds x splits: a second round finds every graph kept
    splits = [rng.normal(size=(150, 5)) for _ in range(12)]
    graphs = [metrics.nearest_neighbours(split) for split in splits]
    assert all(metrics.nearest_neighbours(split) is graph for split, graph in zip(splits, graphs))


def test_bias_accuracies() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    yh = np.array([0, 1, 1, 0, 1, 0])
    bias = np.array([0, 1, 1, 0, 1, 0])  # aligned where bias == y: rows 0, 2, 4, 5
    out = metrics.acc_by_bias(y, yh, bias)
    assert out["acc_aligned"] == 1.0 and out["acc_conflicting"] == 0.0
    assert out["acc_mean"] == 0.5 and out["bias_gap"] == 1.0
    assert out["acc_unbiased"] == pytest.approx(np.mean([1.0, 0.0, 0.0, 1.0]))
    # a dataset's own aligned flags win over bias == y (e.g. a binary target over colour classes)
    flags = np.array([True, True, False, False, False, False])
    assert metrics.acc_by_bias(y, yh, bias, flags)["acc_aligned"] == 0.5


def test_worst_group_accuracy_by_hand_and_against_fairlearn() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    yh = np.array([0, 1, 0, 1, 0, 0, 1, 0])
    g = np.array([0, 0, 1, 1, 1, 0, 0, 1])
    # cells (y, g): (0,0) rows 0,1 -> 1/2; (0,1) rows 2,7 -> 1; (1,1) rows 3,4 -> 1/2; (1,0) rows 5,6 -> 1/2
    assert metrics.acc_worst_group(y, yh, g) == 0.5
    bias = np.array([0, 0, 0, 0, 0, 0, 1, 0])  # cell (y=1, bias=1) is row 6 alone: correct; (1, 0): 1/3
    assert metrics.acc_worst_bias(y, yh, bias) == pytest.approx(1 / 3)
    y, p, g = _random(7)
    yh = metrics.hard(p)
    frame = fairlearn.MetricFrame(
        metrics=lambda t, q: np.mean(t == q), y_true=y, y_pred=yh, sensitive_features=np.column_stack([y, g])
    )
    assert metrics.evaluate(y, p, g)["acc_worst_group"] == pytest.approx(frame.group_min())
    three = np.arange(len(y)) % 3  # a multiclass target: every (class, group) cell counts
    cells = [np.mean(yh[(three == c) & (g == a)] == c) for c in range(3) for a in range(2)]
    assert metrics.acc_worst_group(three, yh, g) == pytest.approx(min(cells))


def test_intersectional_gaps_by_hand_and_against_fairlearn() -> None:
    yh = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    y = np.array([1, 1, 1, 1, 1, 0, 1, 1])
    cells = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    # selection rates 1, 1/2, 0, 1/2; true-positive rates 1, 1/2, 0 (cell 2's only positive missed), 1/2
    assert metrics.dp_intersectional(yh, cells) == 1.0
    assert metrics.eo_intersectional(y, yh, cells) == 1.0
    assert metrics.eo_intersectional(y, yh, np.array([0, 0, 1, 1, 1, 2, 2, 2])) == pytest.approx(1 - 1 / 3)
    rng = np.random.default_rng(11)
    y, p = rng.integers(0, 2, 600), rng.random(600)
    first, second = rng.integers(0, 2, 600), (rng.random(600) < 0.3).astype(int)
    yh = metrics.hard(p)
    both = np.column_stack([first, second])
    kept = predictions.SplitPredictions(
        rows=np.arange(600), scores=p.astype(np.float32), y=y, group=both, attributes=("a", "b")
    )
    out = {name: value for name, value, tags in kept.evaluate() if not tags}
    assert out["dp_intersectional"] == pytest.approx(
        fairlearn.demographic_parity_difference(y, yh, sensitive_features=both)
    )
    assert out["eo_intersectional"] == pytest.approx(
        fairlearn.equal_opportunity_difference(y, yh, sensitive_features=both)
    )
    assert out["dp_intersectional"] >= max(metrics.dp(yh, first), metrics.dp(yh, second))
    one = predictions.SplitPredictions(rows=np.arange(600), scores=p.astype(np.float32), y=y, group=first)
    assert not {"dp_intersectional", "eo_intersectional"} & {name for name, _, _ in one.evaluate()}


def test_calibration_error_by_hand_per_group_and_against_sklearn() -> None:
    y = np.array([1, 0, 1, 1, 0, 0])
    p = np.array([0.95, 0.95, 0.05, 0.5, 0.52, 1.0])
    # 15 bins of width 1/15: {0.95, 0.95, 1.0} in the last bin: mean y 1/3, mean p 0.9667;
    # {0.05} bin 0: |1 - 0.05|; {0.5, 0.52} bin 7: mean y 1/2, mean p 0.51
    expected = (3 * abs(1 / 3 - 2.9 / 3) + abs(1 - 0.05) + 2 * abs(0.5 - 0.51)) / 6
    assert metrics.ece(y, p) == pytest.approx(expected)
    g = np.array([1, 1, 1, 0, 0, 0])
    assert metrics.ece_group1(y, p, g) == pytest.approx((2 * abs(0.5 - 0.95) + 0.95) / 3)
    assert metrics.ece_group0(y, p, g) == pytest.approx((2 * 0.01 + 1.0) / 3)
    assert metrics.ece_gap(y, p, g) == pytest.approx(abs(metrics.ece_group1(y, p, g) - metrics.ece_group0(y, p, g)))
    calibration = pytest.importorskip("sklearn.calibration")
    y, p, g = _random(5, 2000)
    true_means, score_means = calibration.calibration_curve(y, p, n_bins=metrics.ECE_BINS)
    counts = np.bincount(np.minimum((p * metrics.ECE_BINS).astype(int), metrics.ECE_BINS - 1))
    assert metrics.evaluate(y, p, g)["ece"] == pytest.approx(
        np.sum(counts[counts > 0] * np.abs(true_means - score_means)) / len(y)
    )


def test_registry_orientation_and_declared_method_metrics() -> None:
    table = metrics.registered()
    higher = {"acc", "consistency", "delta", "acc_aligned", "acc_conflicting", "acc_mean", "acc_unbiased"}
    assert higher | {"acc_worst_group", "acc_worst_bias"} == {name for name, m in table.items() if m.higher_is_better}
    assert table["sens_acc"].compute is None and not metrics.higher_is_better("sens_acc")
    with pytest.raises(FairbenchError, match="unknown metric 'acx'.*did you mean 'acc'"):
        metrics.get("acx")
    with pytest.raises(FairbenchError, match="'dp' .* is already registered"):
        metrics.metric("dp", higher_is_better=False, needs=("pred", "group"))(lambda yh, g: 0.0)
    with pytest.raises(FairbenchError, match="unknown input 'label'"):
        metrics.metric("x", higher_is_better=False, needs=("label",))


PLUGIN = """
import numpy as np
from fairbench.metrics import metric

@metric("positive_rate", higher_is_better=False, needs=("pred",))
def positive_rate(yh):
    return float(np.mean(yh))
"""


def test_plugin_metric_from_an_entry_point(tmp_path, monkeypatch: pytest.MonkeyPatch, fairbench) -> None:
    """A real entry point (a dist-info folder on sys.path) adds a metric that `evaluate` computes."""
    (tmp_path / "fb_metric_plugin.py").write_text(PLUGIN)
    info = tmp_path / "fb_metric_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fb-metric-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fairbench.metrics]\npositive_rate = fb_metric_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(metrics, "_plugins_loaded", False)
    monkeypatch.setattr(metrics, "_REGISTRY", dict(metrics._REGISTRY))
    y, p, g = _random(0)
    out = metrics.evaluate(y, p, g)
    assert out["positive_rate"] == pytest.approx(np.mean(p >= 0.5))
    assert metrics.get("positive_rate").origin == "plugin (fb_metric_plugin)"
    monkeypatch.setenv("COLUMNS", "200")
    listed = fairbench("ls", "metrics").out
    assert "positive_rate" in listed and "plugin (fb_metric_plugin)" in listed and "reported by a method" in listed
