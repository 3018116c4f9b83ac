"""Reductions: fairlearn's `ExponentiatedGradient` (Agarwal, Beygelzimer, Dudik, Langford and
Wallach, ICML 2018) around a classifier that honours sample weights.

The reduction solves the constrained problem as a game: each round it reweights and relabels
the train rows by the constraint's Lagrange multipliers and refits the classifier; the result is
a randomised mixture of the refitted classifiers whose constraint violation is at most `eps`.
This file only chooses the classifier, the constraint and the groups; fairlearn does the rest
(a dependency, not a rewrite).

Choices made here:
- The classifier is scikit-learn's, not a torch net of this project: the reduction refits it
  on reweighted rows dozens of times, and a torch net would need a minibatch training loop of
  its own here, a second copy of the project's training engine. `estimator: logistic` is the
  paper's base learner (L2 logistic regression, C = 1, lbfgs); `estimator: mlp` is
  scikit-learn's MLPClassifier shaped like the project's `grad` network (three hidden layers of
  40 ReLU units, Adam, lr 1e-3, batch 128, `epochs` passes) without its batch norm.
- Both honour `sample_weight`, which the reduction depends on: a classifier that ignores it
  would make every round fit the same model (fairlearn issue #1087); `weighted_estimator`
  refuses one whose `fit` takes no `sample_weight`.
- `constraint: dp` is fairlearn's DemographicParity, `eodds` its EqualizedOdds (the paper's two).
  The groups are the sensitive attribute's values, or the intersections of several attributes'.
- Rows: the train split only; validation serves the suite's grid (eps) through selection.
- Scores: the mixture's decisions (0 or 1) drawn with the job's seed (fairlearn's `predict`),
  the randomised classifier whose violation the paper bounds; its P(yh = 1) thresholded at 0.5
  would be another, derandomised, classifier.
- `eps` 0.01 and `max_iter` 50 are fairlearn's defaults; the paper sweeps eps to trace the
  trade-off, which a suite grid does.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np

from fairbench.bounds import POSITIVE, POSITIVE_INT
from fairbench.data.base import TaskData
from fairbench.errors import FairbenchError
from fairbench.methods import papers
from fairbench.methods.base import HParam, Method, Outcome, RunContext

# The project's `grad` network: a 2 x 40 trunk and a 40-unit head layer.
MLP_HIDDEN = (40, 40, 40)


def weighted_estimator(name: str, seed: int, epochs: int) -> Any:
    """A fresh scikit-learn classifier whose `fit` honours `sample_weight`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if name == "logistic":
        estimator = LogisticRegression(C=1.0, max_iter=1000)
    else:
        estimator = MLPClassifier(
            hidden_layer_sizes=MLP_HIDDEN,
            learning_rate_init=1e-3,
            batch_size=128,
            max_iter=epochs,
            n_iter_no_change=epochs,
            random_state=seed,
        )
    if "sample_weight" not in inspect.signature(estimator.fit).parameters:
        raise FairbenchError(
            f"reductions: this scikit-learn's {type(estimator).__name__}.fit takes no sample_weight, which "
            f"ExponentiatedGradient needs (fairlearn #1087); install scikit-learn >= 1.7"
        )
    return estimator


class Reductions(Method):
    name = "reductions"
    description = "fairlearn's ExponentiatedGradient (Agarwal et al. 2018) around logistic regression or an MLP"
    paper = papers.REDUCTIONS
    hparams = {
        "constraint": HParam("dp", "dp: DemographicParity | eodds: EqualizedOdds", ("dp", "eodds")),
        "eps": HParam(0.01, "allowed constraint violation", bound=POSITIVE),
        "max_iter": HParam(50, "rounds of the reduction", bound=POSITIVE_INT),
        "estimator": HParam(
            "logistic", "logistic regression (the paper's) | mlp (the grad net's shape)", ("logistic", "mlp")
        ),
        "epochs": HParam(50, "passes of each mlp fit", bound=POSITIVE_INT),
    }
    budgets = {"paper": {}, "quick": {"max_iter": 20, "epochs": 20}}

    def run(self, data: TaskData, ctx: RunContext) -> Outcome:
        from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
        from sklearn.exceptions import ConvergenceWarning

        if data.n_classes != 2 or data.kind != "tabular":
            raise FairbenchError("reductions needs a tabular task with a binary target")
        groups = np.column_stack(list(data.protected.values()))
        train = data.splits["train"]
        constraint = DemographicParity() if self.params["constraint"] == "dp" else EqualizedOdds()
        estimator = weighted_estimator(self.params["estimator"], ctx.seed, self.params["epochs"])
        reduction = ExponentiatedGradient(
            estimator, constraint, eps=self.params["eps"], max_iter=self.params["max_iter"]
        )
        with warnings.catch_warnings():  # an mlp fit that uses all its `epochs` is not a failure
            warnings.simplefilter("ignore", ConvergenceWarning)
            reduction.fit(data.x[train], data.y[train], sensitive_features=groups[train])
        scores = {
            split: reduction.predict(data.x[data.splits[split]], random_state=ctx.seed).astype(np.float32)
            for split in ("val", "test")
        }
        info = {
            "oracle_calls": int(reduction.n_oracle_calls_),
            "mixture_size": int((reduction.weights_ > 0).sum()),
            "best_iter": int(reduction.best_iter_),
        }
        ctx.log.info(f"reductions: {info}")
        return Outcome(scores, info=info)
