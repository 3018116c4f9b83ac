"""Reweighing (Kamiran & Calders 2012) as a fairbench plugin.

Each training row of group g and label y gets the weight P(g) P(y) / P(g, y), which makes the
label statistically independent of the group in the weighted data; a classifier is then trained
with the weighted loss. The framework's engine trains it: this module gives the model, the loss
of one batch and the hyperparameters, nothing else (no loop, no seeding, no device handling).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fairbench.methods import HParam, Paper, TrainedMethod, training_hparams
from fairbench.nets.layers import mlp
from fairbench.train import Batch, Trainer


def reweighing_weights(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """w(g, y) = P(g) P(y) / P(g, y) for every row."""
    weights = np.ones(len(y))
    for group in (0, 1):
        for label in (0, 1):
            cell = (g == group) & (y == label)
            if cell.any():
                weights[cell] = (g == group).mean() * (y == label).mean() / cell.mean()
    return weights


class Reweighing(TrainedMethod):
    name = "reweighing"
    description = "reweighing (Kamiran & Calders 2012): weights P(g)P(y)/P(g,y), weighted MLP"
    paper = Paper(
        "Faisal Kamiran, Toon Calders",
        "Data preprocessing techniques for classification without discrimination",
        "Knowledge and Information Systems",
        2012,
    )
    hparams = {
        **training_hparams(epochs=30, lr=1e-3, batch_size=128, select="acc"),
        "hidden": HParam(40, "hidden units of the one-hidden-layer MLP"),
        "strength": HParam(1.0, "interpolates from no reweighing (0) to full reweighing (1)", source="paper"),
    }
    budgets = {"paper": {}, "quick": {"epochs": 5}}

    def build(self, t: Trainer) -> nn.Module:
        train = t.data.splits["train"]
        weights = reweighing_weights(t.data.y[train], t.data.g[train])
        self.weights = torch.from_numpy(1.0 + self.params["strength"] * (weights - 1.0)).float().to(t.device)
        return mlp([t.data.x.shape[1], self.params["hidden"], 2])

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        # batch.positions index the training rows, the order the weights were computed in
        return (F.cross_entropy(model(batch.x), batch.y, reduction="none") * self.weights[batch.positions]).mean()
