"""Every metric of DESIGN.md section 4, in one place.

Inputs: binary labels `y`, scores `p` = P(yh = 1), groups `g` in {0, 1}; hard predictions are
yh = 1[p >= 0.5]. All gaps are absolute values.
"""

from __future__ import annotations

import numpy as np


def _rate(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of `values` over `mask`; NaN when the mask is empty (the gap is then undefined)."""
    return float(values[mask].mean()) if mask.any() else float("nan")


def _gap(values: np.ndarray, g: np.ndarray, within: np.ndarray | None = None) -> float:
    base = np.ones_like(g, dtype=bool) if within is None else within
    return abs(_rate(values, base & (g == 1)) - _rate(values, base & (g == 0)))


def hard(p: np.ndarray) -> np.ndarray:
    return (np.asarray(p) >= 0.5).astype(np.int64)


def acc(y: np.ndarray, yh: np.ndarray) -> float:
    return float(np.mean(yh == y))


def dp(yh: np.ndarray, g: np.ndarray) -> float:
    """Demographic-parity gap |P(yh=1|g=1) - P(yh=1|g=0)|."""
    return _gap(yh, g)


def eo(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    """Equal-opportunity gap: the true-positive-rate difference between groups."""
    return _gap(yh, g, y == 1)


def fpr_gap(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    return _gap(yh, g, y == 0)


def eo_joint(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    """|P(yh=1, y=1 | g=1) - P(yh=1, y=1 | g=0)|: DVGE's released code's "EO"."""
    return _gap((yh == 1) & (y == 1), g)


def eodds_sum(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    return eo(y, yh, g) + fpr_gap(y, yh, g)


def eodds_max(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    return max(eo(y, yh, g), fpr_gap(y, yh, g))


def discrimination(p: np.ndarray, g: np.ndarray) -> float:
    """GRAD eq. 1 (Zemel et al.): gap of the mean score between groups."""
    return _gap(np.asarray(p, dtype=np.float64), g)


def consistency(features: np.ndarray, yh: np.ndarray, k: int = 10, chunk: int = 2048) -> float:
    """GRAD eq. 2: 1 - mean |yh_i - mean of yh over i's k nearest neighbours (i excluded)|.

    Exact Euclidean kNN by chunked distance matrices: in the ~100 one-hot dimensions of tabular
    data a KD-tree degrades to brute force anyway, and a matmul is far faster."""
    x = np.asarray(features, dtype=np.float64)
    yh = np.asarray(yh, dtype=np.float64)
    squared = np.einsum("ij,ij->i", x, x)
    total = 0.0
    for start in range(0, len(x), chunk):
        rows = slice(start, min(start + chunk, len(x)))
        distances = squared[rows, None] - 2.0 * x[rows] @ x.T + squared[None, :]
        distances[np.arange(rows.stop - rows.start), np.arange(rows.start, rows.stop)] = np.inf
        neighbours = np.argpartition(distances, k - 1, axis=1)[:, :k]
        total += np.abs(yh[rows] - yh[neighbours].mean(axis=1)).sum()
    return float(1.0 - total / len(x))


def dp_perfect(y: np.ndarray, g: np.ndarray) -> float:
    """dp of the true labels: what a perfect classifier scores (the task's inherent bias)."""
    return dp(y, g)


def acc_by_bias(
    y: np.ndarray, yh: np.ndarray, bias: np.ndarray, aligned: np.ndarray | None = None
) -> dict[str, float]:
    """GBA / LfF accuracies: bias-aligned, conflicting, their mean and gap, and the mean accuracy
    over the (y, bias) cells. Aligned means bias == y unless the dataset says (`aligned`)."""
    aligned = (bias == y) if aligned is None else np.asarray(aligned, dtype=bool)
    correct = (yh == y).astype(np.float64)
    a, c = _rate(correct, aligned), _rate(correct, ~aligned)
    cells = [_rate(correct, (y == ly) & (bias == lb)) for ly in np.unique(y) for lb in np.unique(bias)]
    return {
        "acc_aligned": a,
        "acc_conflicting": c,
        "acc_mean": (a + c) / 2,
        "bias_gap": a - c,
        "acc_unbiased": float(np.nanmean(cells)),
    }


def evaluate(
    y: np.ndarray,
    p: np.ndarray,
    g: np.ndarray,
    features: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    aligned: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics that the given inputs support, by name."""
    y, g = np.asarray(y), np.asarray(g)
    yh = hard(p)
    out = {
        "acc": acc(y, yh),
        "dp": dp(yh, g),
        "eo": eo(y, yh, g),
        "eo_joint": eo_joint(y, yh, g),
        "eodds_sum": eodds_sum(y, yh, g),
        "eodds_max": eodds_max(y, yh, g),
        "discrimination": discrimination(p, g),
        "dp_perfect": dp_perfect(y, g),
    }
    out["delta"] = out["acc"] - out["discrimination"]
    if features is not None and features.ndim == 2 and features.shape[1] > 0 and len(y) > 10:
        out["consistency"] = consistency(features, yh)
    if bias is not None:
        out.update(acc_by_bias(y, yh, np.asarray(bias), aligned))
    return out


# Metrics where larger is better; every other metric is a gap (lower is better).
HIGHER_IS_BETTER = {"acc", "consistency", "delta", "acc_aligned", "acc_conflicting", "acc_mean", "acc_unbiased"}
