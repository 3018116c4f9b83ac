"""Shared implementation of ERM, ADT and GRAD-Pred: one branched net, one loop; the methods
differ in their declared defaults (architecture, reversal weight, optimiser, selection rule)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from fairbench import metrics
from fairbench.data.base import TaskData
from fairbench.errors import FairbenchError
from fairbench.methods.base import HParam, Method, Outcome, RunContext
from fairbench.nets.branched import ARCHITECTURES, BranchedNet, build_branched
from fairbench.train import as_input, minibatches, predict_proba, seed_everything, to_float, train_with_selection

SELECTION = ("acc", "disc", "last")
# The target branch's loss on a batch: (branch output, the batch's row indices) -> scalar.
TargetLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Scores of the given rows from the net as it is when the scorer is made.
Scorer = Callable[[np.ndarray], np.ndarray]


def common_hparams(**defaults: Any) -> dict[str, HParam]:
    """The hyperparameters every branched method has, with per-method defaults."""
    return {
        "arch": HParam(
            defaults["arch"],
            "network: grad (40-unit BN MLPs) | dvge (paper Tables 3/4) | resnet18 | mlp3 (GBA's image backbones)",
            ARCHITECTURES,
        ),
        "epochs": HParam(defaults["epochs"], "training epochs"),
        "lr": HParam(defaults["lr"], "Adam learning rate"),
        "beta1": HParam(defaults.get("beta1", 0.9), "Adam beta1"),
        "beta2": HParam(defaults.get("beta2", 0.999), "Adam beta2"),
        "batch_size": HParam(defaults["batch_size"], "minibatch size"),
        "select": HParam(
            defaults["select"],
            "checkpoint selection on validation: acc (best accuracy) | disc (lowest discrimination, "
            "ties by accuracy; GRAD) | last",
            SELECTION,
        ),
    }


# Which sensitive attributes an adversarial method protects (GRAD Table 2's -R / -G variants).
PROTECT = HParam(
    (), "the sensitive attributes (expressions, as in the suite) that get an attribute branch; empty: all"
)


def protected_attributes(data: TaskData, protect: tuple[str, ...]) -> list[str]:
    """The task's sensitive attributes named by `protect` (all of them when it is empty)."""
    for name in protect:
        if name not in data.protected:
            raise FairbenchError(
                f"protect: '{name}' is not a sensitive attribute of this experiment; its sensitive attributes "
                f"are {', '.join(repr(n) for n in data.protected)}"
            )
    return list(protect) or list(data.protected)


def mean_discrimination(scores: np.ndarray, data: TaskData, rows: np.ndarray, attributes: list[str]) -> float:
    """GRAD's selection criterion: the discrimination of `scores` on `rows`, averaged over `attributes`."""
    if scores.ndim != 1 or any(data.group_counts[name] != 2 for name in attributes):
        raise FairbenchError(
            "select: 'disc' needs a binary target and binary sensitive attributes; use select 'acc' or 'last'"
        )
    predicted = metrics.hard(scores)
    return float(np.mean([metrics.discrimination(predicted, data.protected[name][rows]) for name in attributes]))


def selection_score(
    select: str, epoch: int, val_scores: Callable[[], np.ndarray], data: TaskData, attributes: list[str]
) -> tuple[float, ...]:
    """One epoch's validation score, lower is better: `disc` (mean discrimination over
    `attributes`, then -accuracy; GRAD), `acc` (-accuracy) or `last` (-epoch, scoring nothing)."""
    if select == "last":
        return (-float(epoch),)
    rows = data.splits["val"]
    scores = val_scores()
    accuracy = metrics.acc(data.y[rows], metrics.hard(scores))
    if select == "acc":
        return (-accuracy,)
    return (mean_discrimination(scores, data, rows, attributes), -accuracy)


class BranchedMethod(Method):
    """Task loss + lam x the attribute losses, each attribute branch behind gradient reversal."""

    adversarial: ClassVar[bool] = True

    def run(self, data: TaskData, ctx: RunContext) -> Outcome:
        return self.fit(data, ctx)[1]

    def protected(self, data: TaskData) -> list[str]:
        """The sensitive attributes this run protects (`protect`; all when it is empty or absent)."""
        return protected_attributes(data, tuple(self.params.get("protect", ())))

    def target(self, data: TaskData, x: torch.Tensor) -> tuple[int, TargetLoss]:
        """The target branch's width and loss: y's classes under cross-entropy."""
        y = torch.from_numpy(data.y).to(x.device)
        return data.n_classes, lambda output, rows: F.cross_entropy(output, y[rows])

    def scorer(self, model: BranchedNet, data: TaskData, x: torch.Tensor) -> Scorer:
        """How the net scores rows, made after each epoch (for selection) and for the selected
        checkpoint: the target branch's class probabilities."""
        return lambda rows: predict_proba(model, x[torch.from_numpy(rows).to(x.device)])

    def outputs(
        self, model: BranchedNet, inputs: torch.Tensor, groups: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Task logits and the attribute logits per head of a training batch (`groups`: the batch's
        values of each head's attribute); a method that changes what the task head sees during
        training (GBA's feature mask) overrides this."""
        return model(inputs)

    def fit(self, data: TaskData, ctx: RunContext) -> tuple[BranchedNet, Outcome]:
        """Train the net (selected checkpoint loaded); return it with the outcome."""
        p = self.params
        protected = self.protected(data)
        adversaries = protected if self.adversarial else []
        generator = seed_everything(ctx.seed)
        x = to_float(data.x, ctx.device)
        width, target_loss = self.target(data, x)
        model = build_branched(
            p["arch"], tuple(data.x.shape[1:]), width, tuple(data.group_counts[n] for n in adversaries)
        ).to(ctx.device)
        optimiser = torch.optim.Adam(model.parameters(), lr=p["lr"], betas=(p["beta1"], p["beta2"]), foreach=True)
        groups = [torch.from_numpy(data.protected[name]).to(ctx.device) for name in adversaries]
        train = torch.from_numpy(data.splits["train"]).to(ctx.device)
        lam = float(p.get("lam", 0.0))

        def train_epoch(epoch: int) -> None:
            for batch in minibatches(len(train), p["batch_size"], generator):
                rows = train[batch.to(ctx.device)]
                if len(rows) < 2:  # batch norm needs two rows
                    continue
                batch_groups = [g[rows] for g in groups]
                task, attributes = self.outputs(model, as_input(x[rows]), batch_groups)
                loss = target_loss(task, rows)
                for logits, g in zip(attributes, batch_groups):
                    loss = loss + lam * F.cross_entropy(logits, g)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()

        def score(epoch: int) -> tuple[float, ...]:
            return selection_score(
                p["select"], epoch, lambda: self.scorer(model, data, x)(data.splits["val"]), data, protected
            )

        epoch, _ = train_with_selection(model, p["epochs"], train_epoch, score, ctx.log.info)
        scorer = self.scorer(model, data, x)
        scores = {split: scorer(data.splits[split]) for split in ("val", "test")}
        return model, Outcome(scores=scores, info={"selected_epoch": epoch})
