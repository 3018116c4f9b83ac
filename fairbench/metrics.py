"""Every metric of DESIGN.md section 4, in one place, and the registry that names them.

Inputs: labels `y`, scores `p` = P(yh = 1) for a binary target or (n, k) class probabilities for
k classes, groups `g` in {0, 1}; hard predictions are yh = 1[p >= 0.5] (binary) or the argmax.
All gaps are absolute values. Only metrics registered with `multiclass=True` are computed for
k > 2 (the accuracies); the fairness gaps need a binary target and a binary group, and are left
out otherwise rather than computed wrongly.

A metric is one function registered with `@metric(name, higher_is_better=..., needs=(...))`;
`evaluate` computes every registered metric whose inputs are present. The inputs a metric may
need (its positional arguments, in the order of `needs`):

    y          true labels                      pred       hard predictions yh
    scores     P(y = 1) per row, or (n, k)      group      sensitive group g in {0, 1}
    features   model inputs without the sensitive columns (tabular tasks; kNN-ready)
    bias       the dataset's bias attribute     aligned    bias-aligned flag per row
    intersection   one id per combination of several sensitive attributes' values (only when a
                   task has several; see fairbench.predictions)

Plugin packages add metrics through the entry-point group `fairbench.metrics` (the entry point
names a module whose import registers them). Metrics that a method reports itself (DVGE's
`sens_acc`) are declared with `declare` so that reports know their orientation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

import numpy as np

from fairbench.errors import FairbenchError, did_you_mean

INPUTS = ("y", "pred", "scores", "group", "features", "bias", "aligned", "intersection")
# kNN needs more rows than neighbours; consistency is only defined above this size.
CONSISTENCY_K = 10


@dataclass(frozen=True)
class Metric:
    """A registered metric. `compute` is None for a metric only a method reports (no inputs)."""

    name: str
    higher_is_better: bool
    needs: tuple[str, ...]
    compute: Callable[..., float] | None
    # The metric's range, so figures can clip error bars (a gap never goes below zero).
    bounds: tuple[float, float] = (0.0, 1.0)
    origin: str = "built-in"
    # Defined for k > 2 classes too (else computed for binary targets only).
    multiclass: bool = False
    # The name figures and tables print ("DP gap"); empty: the name with spaces for underscores.
    display: str = ""

    @property
    def label(self) -> str:
        return self.display or self.name.replace("_", " ")

    @property
    def signed_gap(self) -> bool:
        """A lower-is-better gap that may be negative (bias_gap): the smaller its magnitude the
        better, either way, so fronts and rankings compare absolute values."""
        return not self.higher_is_better and self.bounds[0] < 0


_REGISTRY: dict[str, Metric] = {}
_plugins_loaded = False


def _add(entry: Metric) -> None:
    if entry.name in _REGISTRY:
        raise FairbenchError(
            f"metric '{entry.name}' ({entry.origin}) is already registered ({_REGISTRY[entry.name].origin}); "
            f"choose another name"
        )
    _REGISTRY[entry.name] = entry


def metric(
    name: str,
    *,
    higher_is_better: bool,
    needs: tuple[str, ...],
    bounds: tuple[float, float] = (0.0, 1.0),
    multiclass: bool = False,
    display: str = "",
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Register the decorated function as metric `name`; it is called with the inputs in `needs`.
    `multiclass=True`: the metric is defined for k > 2 classes (labels 0..k-1, hard predictions,
    (n, k) scores); otherwise it is computed only for binary targets."""
    unknown = [n for n in needs if n not in INPUTS]
    if unknown:
        raise FairbenchError(f"metric '{name}': unknown input '{unknown[0]}'{did_you_mean(unknown[0], INPUTS)}")

    def register(fn: Callable[..., float]) -> Callable[..., float]:
        origin = "built-in" if fn.__module__ == __name__ else f"plugin ({fn.__module__})"
        _add(Metric(name, higher_is_better, tuple(needs), fn, bounds, origin, multiclass, display))
        return fn

    return register


def declare(
    name: str, *, higher_is_better: bool, bounds: tuple[float, float] = (0.0, 1.0), origin: str = "", display: str = ""
) -> None:
    """Declare a metric that methods report themselves (no compute function)."""
    _add(Metric(name, higher_is_better, (), None, bounds, origin or "method-reported", False, display))


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group="fairbench.metrics"):
        try:
            ep.load()  # importing the module runs its @metric decorators
        except ImportError as error:
            raise FairbenchError(f"metric plugin '{ep.name}' failed to load from '{ep.value}': {error}") from error


def registered() -> dict[str, Metric]:
    """Every metric by name: built-ins, declared method metrics and plugins."""
    _load_plugins()
    return dict(_REGISTRY)


def get(name: str) -> Metric:
    """The metric registered as `name`; an unknown name gets a "did you mean"."""
    table = registered()
    if name not in table:
        raise FairbenchError(
            f"unknown metric '{name}'{did_you_mean(name, table)}; a plugin registers it with "
            f"fairbench.metrics.metric or declare"
        )
    return table[name]


def higher_is_better(name: str) -> bool:
    return get(name).higher_is_better


def _rate(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of `values` over `mask`; NaN when the mask is empty (the gap is then undefined)."""
    return float(values[mask].mean()) if mask.any() else float("nan")


def _gap(values: np.ndarray, g: np.ndarray, within: np.ndarray | None = None) -> float:
    base = np.ones_like(g, dtype=bool) if within is None else within
    return abs(_rate(values, base & (g == 1)) - _rate(values, base & (g == 0)))


def hard(p: np.ndarray) -> np.ndarray:
    """Hard predictions: 1[p >= 0.5] for P(y = 1) scores, the argmax for (n, k) probabilities."""
    p = np.asarray(p)
    return p.argmax(axis=1).astype(np.int64) if p.ndim == 2 else (p >= 0.5).astype(np.int64)


@metric("acc", higher_is_better=True, needs=("y", "pred"), multiclass=True, display="Accuracy")
def acc(y: np.ndarray, yh: np.ndarray) -> float:
    return float(np.mean(yh == y))


@metric("dp", higher_is_better=False, needs=("pred", "group"), display="DP gap")
def dp(yh: np.ndarray, g: np.ndarray) -> float:
    """Demographic-parity gap |P(yh=1|g=1) - P(yh=1|g=0)|."""
    return _gap(yh, g)


@metric("eo", higher_is_better=False, needs=("y", "pred", "group"), display="EO gap")
def eo(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    """Equal-opportunity gap: the true-positive-rate difference between groups."""
    return _gap(yh, g, y == 1)


def fpr_gap(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    return _gap(yh, g, y == 0)


@metric("eo_joint", higher_is_better=False, needs=("y", "pred", "group"), display="EO (joint) gap")
def eo_joint(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    """|P(yh=1, y=1 | g=1) - P(yh=1, y=1 | g=0)|: DVGE's released code's "EO"."""
    return _gap((yh == 1) & (y == 1), g)


@metric(
    "eodds_sum",
    higher_is_better=False,
    needs=("y", "pred", "group"),
    bounds=(0.0, 2.0),
    display="Equalized odds gap (sum)",
)
def eodds_sum(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    return eo(y, yh, g) + fpr_gap(y, yh, g)


@metric("eodds_max", higher_is_better=False, needs=("y", "pred", "group"), display="Equalized odds gap (max)")
def eodds_max(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    return max(eo(y, yh, g), fpr_gap(y, yh, g))


@metric("discrimination", higher_is_better=False, needs=("pred", "group"), display="Discrimination")
def discrimination(yh: np.ndarray, g: np.ndarray) -> float:
    """GRAD eq. 1 on predicted labels (GRAD section 3.1: only yh enters its fairness metrics):
    the gap of the positive-prediction rate between groups, numerically the dp gap."""
    return _gap(np.asarray(yh, dtype=np.float64), g)


@metric("discrimination_score", higher_is_better=False, needs=("scores", "group"), display="Discrimination (on scores)")
def discrimination_score(p: np.ndarray, g: np.ndarray) -> float:
    """Zemel et al.'s yDiscrim on scores: the gap of the mean P(y = 1) between groups."""
    return _gap(np.asarray(p, dtype=np.float64), g)


@metric("dp_perfect", higher_is_better=False, needs=("y", "group"), display="DP gap of a perfect classifier")
def dp_perfect(y: np.ndarray, g: np.ndarray) -> float:
    """dp of the true labels: what a perfect classifier scores (the task's inherent bias)."""
    return dp(y, g)


@metric(
    "delta",
    higher_is_better=True,
    needs=("y", "pred", "group"),
    bounds=(-1.0, 1.0),
    display="Delta (accuracy - discrimination)",
)
def delta(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    """GRAD: accuracy minus discrimination."""
    return acc(y, yh) - discrimination(yh, g)


@metric("consistency", higher_is_better=True, needs=("features", "pred"), display="Consistency")
def consistency(features: np.ndarray, yh: np.ndarray, k: int = CONSISTENCY_K, chunk: int = 1024) -> float:
    """GRAD eq. 2: 1 - mean |yh_i - mean of yh over i's k nearest neighbours (i excluded)|."""
    neighbours = nearest_neighbours(features, k, chunk)
    yh = np.asarray(yh, dtype=np.float64)
    return float(1.0 - np.abs(yh - yh[neighbours].mean(axis=1)).mean())


def nearest_neighbours(features: np.ndarray, k: int = CONSISTENCY_K, chunk: int = 1024) -> np.ndarray:
    """The (n, k) indices of each row's k nearest rows by Euclidean distance, the row excluded.

    The graph depends on the features only, and every job of a task scores the same val and test
    rows, so graphs are kept (by the features' digest, the least recently used dropped beyond
    `_GRAPH_BYTES`): a worker or `postprocess` pays the O(n^2) search once per split, not once
    per job, whatever order its jobs come in. Exact search by chunked distance matrices: in the
    ~100 one-hot dimensions of tabular data a KD-tree degrades to brute force anyway, and a
    float64 matmul plus top-k is far faster."""
    x = np.ascontiguousarray(features, dtype=np.float64)
    hasher = hashlib.blake2b(repr((x.shape, k)).encode(), digest_size=16)
    hasher.update(x.tobytes())
    digest = hasher.hexdigest()
    graph = _GRAPHS.pop(digest, None)
    if graph is None:
        graph = _knn(x, k, chunk)
    _GRAPHS[digest] = graph  # (re)inserted last: the most recently used
    while sum(g.nbytes for g in _GRAPHS.values()) > _GRAPH_BYTES and len(_GRAPHS) > 1:
        _GRAPHS.pop(next(iter(_GRAPHS)))
    return graph


# A worker's jobs cycle through seeds (one split each, two scored splits): a count limit below
# seeds x splits would miss every time. 20,000 rows take 0.8 MB.
_GRAPHS: dict[str, np.ndarray] = {}
_GRAPH_BYTES = 256 * 2**20


def _knn(x: np.ndarray, k: int, chunk: int) -> np.ndarray:
    import torch  # here, so that reading a results table does not import torch

    points = torch.from_numpy(x)
    squared = (points * points).sum(1)
    out = np.empty((len(x), k), dtype=np.int32)
    for start in range(0, len(x), chunk):
        stop = min(start + chunk, len(x))
        # |x_i - x_j|^2 up to |x_i|^2, which is the same for every j of row i
        distances = torch.addmm(squared[None, :], points[start:stop], points.T, alpha=-2.0)
        distances[torch.arange(stop - start), torch.arange(start, stop)] = float("inf")
        out[start:stop] = torch.topk(distances, k, dim=1, largest=False, sorted=False).indices.numpy()
    return out


# GBA / LfF accuracies. A row is aligned when its bias value is the one its class is skewed to
# (the task says which: `TaskData.aligned`); without that flag, bias == y.
@metric(
    "acc_aligned",
    higher_is_better=True,
    needs=("y", "pred", "aligned"),
    multiclass=True,
    display="Accuracy (bias-aligned)",
)
def acc_aligned(y: np.ndarray, yh: np.ndarray, aligned: np.ndarray) -> float:
    return _rate((yh == y).astype(np.float64), aligned)


@metric(
    "acc_conflicting",
    higher_is_better=True,
    needs=("y", "pred", "aligned"),
    multiclass=True,
    display="Accuracy (bias-conflicting)",
)
def acc_conflicting(y: np.ndarray, yh: np.ndarray, aligned: np.ndarray) -> float:
    return _rate((yh == y).astype(np.float64), ~aligned)


@metric(
    "acc_mean",
    higher_is_better=True,
    needs=("y", "pred", "aligned"),
    multiclass=True,
    display="Accuracy (mean of aligned, conflicting)",
)
def acc_mean(y: np.ndarray, yh: np.ndarray, aligned: np.ndarray) -> float:
    return (acc_aligned(y, yh, aligned) + acc_conflicting(y, yh, aligned)) / 2


@metric(
    "bias_gap",
    higher_is_better=False,
    needs=("y", "pred", "aligned"),
    bounds=(-1.0, 1.0),
    multiclass=True,
    display="Aligned - conflicting accuracy",
)
def bias_gap(y: np.ndarray, yh: np.ndarray, aligned: np.ndarray) -> float:
    """Aligned minus conflicting accuracy (signed: GBA reports it so)."""
    return acc_aligned(y, yh, aligned) - acc_conflicting(y, yh, aligned)


@metric(
    "acc_unbiased", higher_is_better=True, needs=("y", "pred", "bias"), multiclass=True, display="Unbiased accuracy"
)
def acc_unbiased(y: np.ndarray, yh: np.ndarray, bias: np.ndarray) -> float:
    """Mean accuracy over the (y, bias) cells (LfF protocol)."""
    correct = (yh == y).astype(np.float64)
    cells = [_rate(correct, (y == ly) & (bias == lb)) for ly in np.unique(y) for lb in np.unique(bias)]
    return float(np.nanmean(cells))


def _aligned(y: np.ndarray, bias: np.ndarray, aligned: np.ndarray | None) -> np.ndarray:
    return (bias == y) if aligned is None else np.asarray(aligned, dtype=bool)


def acc_by_bias(y: np.ndarray, yh: np.ndarray, bias: np.ndarray, aligned: np.ndarray | None = None) -> dict[str, float]:
    """The five GBA / LfF accuracies at once (for callers outside `evaluate`)."""
    flags = _aligned(y, bias, aligned)
    return {
        "acc_aligned": acc_aligned(y, yh, flags),
        "acc_conflicting": acc_conflicting(y, yh, flags),
        "acc_mean": acc_mean(y, yh, flags),
        "bias_gap": bias_gap(y, yh, flags),
        "acc_unbiased": acc_unbiased(y, yh, bias),
    }


# Worst-group accuracy (Sagawa et al. 2020; the SubpopBench / DomainBed protocol): the lowest
# accuracy over the (label, attribute) cells that have rows.
def _worst_cell(y: np.ndarray, yh: np.ndarray, attribute: np.ndarray) -> float:
    correct = (yh == y).astype(np.float64)
    return float(
        min(_rate(correct, (y == ly) & (attribute == la)) for ly, la in set(zip(y.tolist(), attribute.tolist())))
    )


@metric(
    "acc_worst_group",
    higher_is_better=True,
    needs=("y", "pred", "group"),
    multiclass=True,
    display="Worst-group accuracy",
)
def acc_worst_group(y: np.ndarray, yh: np.ndarray, g: np.ndarray) -> float:
    """Worst accuracy over the (y, g) cells."""
    return _worst_cell(y, yh, g)


@metric(
    "acc_worst_bias",
    higher_is_better=True,
    needs=("y", "pred", "bias"),
    multiclass=True,
    display="Worst-group accuracy (bias cells)",
)
def acc_worst_bias(y: np.ndarray, yh: np.ndarray, bias: np.ndarray) -> float:
    """Worst accuracy over the (y, bias) cells: the worst-group counterpart of acc_unbiased."""
    return _worst_cell(y, yh, bias)


# Intersectional gaps (Kearns et al. 2018's subgroups; fairlearn's MetricFrame with several
# sensitive columns): the rate of the worst minus the best intersection of the attributes' values.
# Every non-empty intersection counts, however small: the metric says so, the reader judges.
def _spread(values: np.ndarray, cells: np.ndarray, within: np.ndarray | None = None) -> float:
    base = np.ones_like(cells, dtype=bool) if within is None else within
    rates = [_rate(values, base & (cells == cell)) for cell in np.unique(cells[base])]
    return float(max(rates) - min(rates)) if rates else float("nan")


@metric("dp_intersectional", higher_is_better=False, needs=("pred", "intersection"), display="DP gap (intersections)")
def dp_intersectional(yh: np.ndarray, cells: np.ndarray) -> float:
    """Max minus min of P(yh = 1 | intersection) over the intersections of the sensitive attributes."""
    return _spread(yh, cells)


@metric(
    "eo_intersectional", higher_is_better=False, needs=("y", "pred", "intersection"), display="EO gap (intersections)"
)
def eo_intersectional(y: np.ndarray, yh: np.ndarray, cells: np.ndarray) -> float:
    """Max minus min of the true-positive rate over the intersections (those with positives)."""
    return _spread(yh, cells, y == 1)


# Calibration (Guo et al. 2017's expected calibration error, on the binary score p = P(y = 1)
# rather than the top-label confidence, so that it reads the same for both groups whatever the
# predicted class; Pleiss et al. 2017 ask calibration within each group).
ECE_BINS = 15  # Guo et al.'s 15 equal-width bins


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """sum over equal-width bins of p of (rows in bin / rows) * |mean(y) - mean(p)| in the bin.
    A score of exactly 1 falls in the last bin; NaN without rows."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        return float("nan")
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gaps = np.abs(np.bincount(which, y, bins) - np.bincount(which, p, bins))  # per-bin sums: |n*(ybar - pbar)|
    return float(gaps.sum() / counts.sum())


@metric("ece", higher_is_better=False, needs=("y", "scores"), display="Calibration error (ECE)")
def ece(y: np.ndarray, p: np.ndarray) -> float:
    """Expected calibration error of p = P(y = 1) over all rows (15 equal-width bins)."""
    return expected_calibration_error(y, p)


@metric("ece_group0", higher_is_better=False, needs=("y", "scores", "group"), display="ECE (group 0)")
def ece_group0(y: np.ndarray, p: np.ndarray, g: np.ndarray) -> float:
    """Expected calibration error within group g = 0."""
    return expected_calibration_error(y[g == 0], p[g == 0])


@metric("ece_group1", higher_is_better=False, needs=("y", "scores", "group"), display="ECE (group 1)")
def ece_group1(y: np.ndarray, p: np.ndarray, g: np.ndarray) -> float:
    """Expected calibration error within group g = 1."""
    return expected_calibration_error(y[g == 1], p[g == 1])


@metric("ece_gap", higher_is_better=False, needs=("y", "scores", "group"), display="Calibration gap (ECE)")
def ece_gap(y: np.ndarray, p: np.ndarray, g: np.ndarray) -> float:
    """|ECE(g = 1) - ECE(g = 0)|: the calibration gap between the groups."""
    return abs(ece_group1(y, p, g) - ece_group0(y, p, g))


# Lower is better: less sensitive information left in the representation (DVGE ablation).
declare(
    "sens_acc", higher_is_better=False, origin="built-in (reported by dvge)", display="Sensitive-attribute accuracy"
)


def group_input(g: np.ndarray) -> dict[str, np.ndarray]:
    """{"group": g} where g is binary, else {}: a class-valued attribute has no two-group gap."""
    g = np.asarray(g)
    return {"group": g} if set(np.unique(g)) <= {0, 1} else {}


def inputs(
    y: np.ndarray,
    p: np.ndarray,
    g: np.ndarray,
    features: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    aligned: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The named inputs that metrics may need; absent ones are left out. `group` is left out unless
    it is binary (a class-valued sensitive attribute has no two-group gap)."""
    y, p, g = np.asarray(y), np.asarray(p), np.asarray(g)
    if p.ndim not in (1, 2):
        raise ValueError(f"scores must be P(y = 1) per row or (n, k) class probabilities, got shape {p.shape}")
    out = {"y": y, "pred": hard(p), "scores": p}
    out |= group_input(g)
    if features is not None and features.ndim == 2 and features.shape[1] > 0 and len(y) > CONSISTENCY_K:
        out["features"] = features
    if bias is not None:
        out["bias"] = np.asarray(bias)
        out["aligned"] = _aligned(y, out["bias"], aligned)
    return out


def evaluate(
    y: np.ndarray,
    p: np.ndarray,
    g: np.ndarray,
    features: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    aligned: np.ndarray | None = None,
) -> dict[str, float]:
    """Every registered metric that the given inputs support, by name."""
    return evaluate_inputs(inputs(y, p, g, features, bias, aligned))


def evaluate_inputs(given: dict[str, np.ndarray], names: set[str] | None = None) -> dict[str, float]:
    """Every registered metric (or only those in `names`) whose inputs are all in `given` (see
    `inputs`), by name; for (n, k) scores, only the multiclass ones."""
    binary = given["scores"].ndim == 1
    return {
        m.name: float(m.compute(*(given[n] for n in m.needs)))
        for m in registered().values()
        if m.compute is not None
        and (binary or m.multiclass)
        and all(n in given for n in m.needs)
        and (names is None or m.name in names)
    }
