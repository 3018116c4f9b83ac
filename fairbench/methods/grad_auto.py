"""GRAD-Auto (Raff & Sylvester 2018, section 2, "Architecture Variants"): GRAD's net whose target
branch reconstructs x~, the inputs without the protected attributes' columns, under squared
error ||h_target - x~||^2, while one attribute branch per protected attribute (`protect`; all
sensitive attributes by default) sits behind gradient reversal (lambda = 100). The trunk's
output is the fair representation: a logistic regression fit on the train split's trunk outputs
predicts y. It is refit after every epoch so that GRAD's selection (lowest validation
discrimination averaged over the protected attributes, ties by accuracy) sees the classifier
the epoch would give.

Choices the paper leaves open: the squared error is summed over x~'s columns and averaged over
the batch; x~'s columns are those whose `feature_sources` no protected attribute's expression
reads (one-hot columns of a categorical go together); the target branch ends linear, since x~
holds standardised and one-hot columns; the logistic regression is scikit-learn's default (L2,
C = 1, lbfgs) with up to 1000 iterations.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from fairbench.data.base import TaskData
from fairbench.errors import FairbenchError
from fairbench.methods import papers
from fairbench.methods.families.branched import TargetLoss
from fairbench.methods.families.trained import Scorer
from fairbench.methods.grad_pred import GradPred
from fairbench.nets.branched import BranchedNet
from fairbench.train import Trainer, embed


def reconstruction_columns(data: TaskData, protected: list[str]) -> np.ndarray:
    """Indices of the input columns derived from no column that a `protected` expression reads
    (nor from the input columns such a column is itself derived from)."""
    hidden = data.input_sources(protected)
    return np.array([i for i, source in enumerate(data.feature_sources) if source not in hidden], dtype=np.int64)


class GradAuto(GradPred):
    """GRAD-Pred's net, parameters and selection with an autoencoding target branch."""

    name = "grad_auto"
    description = "GRAD-Auto: fair autoencoder by gradient reversal, logistic regression on its trunk"
    paper = papers.GRAD

    def target(self, t: Trainer) -> tuple[int, TargetLoss]:
        data = t.data
        if data.kind != "tabular":
            raise FairbenchError(f"{self.name} rebuilds tabular inputs; '{data.dataset}' is {data.kind} data")
        keep = torch.from_numpy(reconstruction_columns(data, self.attributes(data))).to(t.device)
        if len(keep) == 0:
            raise FairbenchError(
                f"{self.name}: every input column comes from a protected attribute: nothing to rebuild"
            )
        return len(keep), lambda output, batch: (output - batch.x[:, keep]).pow(2).sum(1).mean()

    def scorer(self, model: BranchedNet, t: Trainer) -> Scorer:
        train = embed(model.trunk, t.x[t.rows("train")])
        head = LogisticRegression(max_iter=1000).fit(train, t.data.y[t.data.splits["train"]])

        def score(split: str) -> np.ndarray:
            proba = head.predict_proba(embed(model.trunk, t.x[t.rows(split)]))
            return proba[:, 1] if proba.shape[1] == 2 else proba

        return score
