"""Reweighing (Kamiran & Calders 2012) as a fairbench plugin.

Each training row of group g and label y gets the weight P(g) P(y) / P(g, y), which makes the
label statistically independent of the group in the weighted data; a classifier is then trained
with the weighted loss. Only the pieces of fairbench's public API are used.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fairbench.data import TaskData
from fairbench.methods import HParam, Method, Outcome, Paper, RunContext
from fairbench.nets.layers import mlp
from fairbench.train import minibatches, predict_proba, seed_everything, to_float


def reweighing_weights(y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """w(g, y) = P(g) P(y) / P(g, y) for every row."""
    weights = np.ones(len(y))
    for group in (0, 1):
        for label in (0, 1):
            cell = (g == group) & (y == label)
            if cell.any():
                weights[cell] = (g == group).mean() * (y == label).mean() / cell.mean()
    return weights


class Reweighing(Method):
    name = "reweighing"
    description = "reweighing (Kamiran & Calders 2012): weights P(g)P(y)/P(g,y), weighted MLP"
    paper = Paper(
        "Faisal Kamiran, Toon Calders",
        "Data preprocessing techniques for classification without discrimination",
        "Knowledge and Information Systems",
        2012,
    )
    hparams = {
        "hidden": HParam(40, "hidden units of the one-hidden-layer MLP"),
        "epochs": HParam(30, "training epochs"),
        "lr": HParam(1e-3, "Adam learning rate"),
        "batch_size": HParam(128, "minibatch size"),
        "strength": HParam(1.0, "interpolates from no reweighing (0) to full reweighing (1)", source="paper"),
    }
    budgets = {"paper": {}, "quick": {"epochs": 5}}

    def run(self, data: TaskData, ctx: RunContext) -> Outcome:
        p = self.params
        generator = seed_everything(ctx.seed)
        train = data.splits["train"]
        weights = 1.0 + p["strength"] * (reweighing_weights(data.y[train], data.g[train]) - 1.0)
        x = to_float(data.x, ctx.device)
        y = torch.from_numpy(data.y).to(ctx.device)
        w = torch.from_numpy(weights).float().to(ctx.device)
        rows = torch.from_numpy(train).to(ctx.device)
        model = mlp([data.x.shape[1], p["hidden"], 2]).to(ctx.device)
        optimiser = torch.optim.Adam(model.parameters(), lr=p["lr"])
        for _ in range(p["epochs"]):
            for batch in minibatches(len(rows), p["batch_size"], generator):
                loss = (F.cross_entropy(model(x[rows[batch]]), y[rows[batch]], reduction="none") * w[batch]).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        scores = {s: predict_proba(model, x[torch.from_numpy(data.splits[s]).to(ctx.device)]) for s in ("val", "test")}
        return Outcome(scores=scores)
