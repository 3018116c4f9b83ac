"""Checkpoint selection rules, one registry for every method's `select` parameter.

After each epoch the engine scores the model on the validation split with the job's rule; the
epoch whose key is smallest (compared as tuples, the earliest on ties) is the checkpoint kept.
A rule never reads the test split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from fairbench import metrics
from fairbench.data.base import TaskData
from fairbench.errors import FairbenchError, did_you_mean


@dataclass
class Validation:
    """What a rule sees after an epoch: the epoch, the task, and the validation scores (computed
    on first use, so `last` scores nothing)."""

    epoch: int
    data: TaskData
    score_val: Callable[[], np.ndarray]
    attributes: Sequence[str] = ()

    @cached_property
    def scores(self) -> np.ndarray:
        return self.score_val()

    @property
    def rows(self) -> np.ndarray:
        return self.data.splits["val"]

    @cached_property
    def accuracy(self) -> float:
        return metrics.acc(self.data.y[self.rows], metrics.hard(self.scores))


@dataclass(frozen=True)
class Score:
    """A rule's verdict on one epoch: `key` (lower is better) and the named values behind it,
    which the epoch's log line shows."""

    key: tuple[float, ...]
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SelectionRule:
    name: str
    help: str
    score: Callable[[Validation], Score]
    # whether the rule reads the bias labels of the validation rows (the method then requires them)
    needs_bias: bool = False


SELECTION_RULES: dict[str, SelectionRule] = {}


def selection_rule(name: str, help: str, needs_bias: bool = False) -> Callable:
    """Register a rule under `name` (the value of a method's `select` parameter)."""

    def register(score: Callable[[Validation], Score]) -> Callable[[Validation], Score]:
        SELECTION_RULES[name] = SelectionRule(name, help, score, needs_bias)
        return score

    return register


def get_rule(name: str) -> SelectionRule:
    if name not in SELECTION_RULES:
        raise FairbenchError(f"unknown selection rule '{name}'{did_you_mean(name, SELECTION_RULES)}")
    return SELECTION_RULES[name]


@selection_rule("last", "the last epoch (no validation scoring)")
def _last(v: Validation) -> Score:
    return Score((-float(v.epoch),))


@selection_rule("acc", "best validation accuracy")
def _accuracy(v: Validation) -> Score:
    return Score((-v.accuracy,), {"val_acc": v.accuracy})


def mean_discrimination(scores: np.ndarray, data: TaskData, rows: np.ndarray, attributes: Sequence[str]) -> float:
    """GRAD's selection criterion: the discrimination of `scores` on `rows`, averaged over `attributes`."""
    if scores.ndim != 1 or any(data.group_counts[name] != 2 for name in attributes):
        raise FairbenchError(
            "select: 'disc' needs a binary target and binary sensitive attributes; use select 'acc' or 'last'"
        )
    predicted = metrics.hard(scores)  # GRAD's discrimination reads the predicted labels
    return float(np.mean([metrics.discrimination(predicted, data.protected[name][rows]) for name in attributes]))


@selection_rule("disc", "lowest mean validation discrimination over the protected attributes, ties by accuracy (GRAD)")
def _discrimination(v: Validation) -> Score:
    disc = mean_discrimination(v.scores, v.data, v.rows, v.attributes)
    return Score((disc, -v.accuracy), {"val_disc": disc, "val_acc": v.accuracy})


def _cells(v: Validation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if v.data.bias is None:
        raise FairbenchError(f"this selection rule needs bias labels, which '{v.data.dataset}' has not")
    return v.data.y[v.rows], metrics.hard(v.scores), v.data.bias[v.rows]


@selection_rule("unbiased", "best mean validation accuracy over the (class, bias) cells (LfF)", needs_bias=True)
def _unbiased(v: Validation) -> Score:
    y, predicted, bias = _cells(v)
    unbiased = metrics.acc_unbiased(y, predicted, bias)
    return Score((-unbiased,), {"val_acc_unbiased": unbiased})


@selection_rule(
    "worst",
    "best worst-cell validation accuracy over the (class, bias) cells, ties by the mean (GroupDRO)",
    needs_bias=True,
)
def _worst(v: Validation) -> Score:
    # a small validation split often has a cell of one or two rows, wrong at every epoch: ties are common
    y, predicted, bias = _cells(v)
    unbiased = metrics.acc_unbiased(y, predicted, bias)
    cells = np.unique(np.stack([y, bias]), axis=1).T
    worst = min(metrics.acc(y[rows], predicted[rows]) for rows in ((y == c) & (bias == b) for c, b in cells))
    return Score((-worst, -unbiased), {"val_acc_worst": worst, "val_acc_unbiased": unbiased})


@selection_rule(
    "worst_group",
    "best worst-cell validation accuracy over the (class, sensitive group) cells of the protected attributes, "
    "ties by the mean cell accuracy (JTT, DFR)",
)
def _worst_group(v: Validation) -> Score:
    y, predicted = v.data.y[v.rows], metrics.hard(v.scores)
    accuracies = []
    for name in v.attributes:
        group = v.data.protected[name][v.rows]
        for c, g in np.unique(np.stack([y, group]), axis=1).T:
            cell = (y == c) & (group == g)
            accuracies.append(metrics.acc(y[cell], predicted[cell]))
    if not accuracies:
        raise FairbenchError("select: 'worst_group' needs a sensitive attribute; use select 'acc' or 'last'")
    worst, mean = min(accuracies), float(np.mean(accuracies))
    return Score((-worst, -mean), {"val_acc_worst_group": worst, "val_acc_group_mean": mean})
