"""Shared skeleton of the debiasing baselines GBA compares with (LfF, GroupDRO, DomainInd): one
classifier module trained by a method-specific objective on minibatches of the train split, a
checkpoint chosen on validation, class probabilities from the module's logits.

A method supplies `build` (the module: its forward gives k class logits, which is what
inference and selection read), `objective` (a per-batch loss, closing over any state such as
loss averages or group weights) and optionally `batches` (the sampling of train rows).

The network is a hyperparameter (`arch`, any of nets/branched.py's): GBA trains every method on
the same backbone per dataset, so its suites set it (LfF's three-layer MLP on Colored MNIST,
ResNet-18 on CIFAR-10S and CelebA)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from fairbench import metrics
from fairbench.bounds import NON_NEGATIVE
from fairbench.data.base import TaskData
from fairbench.methods.base import HParam, Method, Outcome, RunContext
from fairbench.methods.branched import common_hparams, selection_score
from fairbench.nets.branched import build_branched
from fairbench.train import as_input, minibatches, predict_proba, seed_everything, to_float, train_with_selection

SELECTION = ("acc", "unbiased", "worst", "last")


def debiasing_hparams(**defaults: Any) -> dict[str, HParam]:
    """The branched methods' hyperparameters (arch, epochs, lr, Adam betas, batch size), these
    methods' selection rules, optimiser choice, weight decay and step schedule."""
    return {
        **common_hparams(**defaults),
        "select": HParam(
            defaults["select"],
            "checkpoint on validation: acc | unbiased (mean accuracy over the (class, bias) cells) | "
            "worst (the worst such cell) | last",
            SELECTION,
        ),
        "optimizer": HParam(defaults["optimizer"], "adam | sgd (momentum 0.9, learning rate lr)", ("adam", "sgd")),
        "weight_decay": HParam(defaults["weight_decay"], "L2 weight decay", bound=NON_NEGATIVE),
        "lr_step": HParam(
            defaults.get("lr_step", 0), "epochs between x0.1 learning-rate decays (0: constant)", bound=NON_NEGATIVE
        ),
    }


@dataclass
class Batch:
    """One minibatch: the rows (indices into the task's arrays), their inputs, labels and bias."""

    rows: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    bias: torch.Tensor | None


def classifier(arch: str, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """The branched net of `arch` without attribute branches, its task head giving `n_outputs` logits."""
    return TaskLogits(build_branched(arch, input_shape, n_classes=n_outputs))


class TaskLogits(nn.Module):
    """A branched net seen as a plain classifier: x -> task logits."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


class DebiasingMethod(Method):
    """Train `build`'s module on `objective`; checkpoint by `select`; scores from its logits."""

    # Whether the method trains on bias labels (GroupDRO, DomainInd) or without them (LfF).
    needs_bias: ClassVar[bool] = True

    def build(self, data: TaskData, n_bias: int) -> nn.Module:
        raise NotImplementedError

    def objective(self, model: nn.Module, data: TaskData, n_bias: int) -> Callable[[Batch], torch.Tensor]:
        raise NotImplementedError

    def batches(self, cells: torch.Tensor | None, n: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Positions into the n train rows for each step of one epoch (a shuffled pass by default);
        `cells` is each train row's (class, bias) cell, class x n_bias + bias, where bias is known."""
        return minibatches(n, self.params["batch_size"], generator)

    def run(self, data: TaskData, ctx: RunContext) -> Outcome:
        p = self.params
        bias = data.require_bias(self.name) if self.needs_bias or p["select"] in ("unbiased", "worst") else data.bias
        n_bias = 0 if bias is None else int(bias.max()) + 1
        generator = seed_everything(ctx.seed)
        model = self.build(data, n_bias).to(ctx.device)
        optimiser = make_optimiser(model, p)
        schedule = torch.optim.lr_scheduler.StepLR(optimiser, p["lr_step"], 0.1) if p["lr_step"] else None
        step = self.objective(model, data, n_bias)
        x = to_float(data.x, ctx.device)
        y = torch.from_numpy(data.y).to(ctx.device)
        b = None if bias is None else torch.from_numpy(bias).to(ctx.device)
        train = torch.from_numpy(data.splits["train"]).to(ctx.device)
        cells = None if b is None else y[train] * n_bias + b[train]

        def train_epoch(epoch: int) -> None:
            for positions in self.batches(cells, len(train), generator):
                rows = train[positions.to(ctx.device)]
                if len(rows) < 2:  # batch norm needs two rows
                    continue
                loss = step(Batch(rows, as_input(x[rows]), y[rows], None if b is None else b[rows]))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            if schedule is not None:
                schedule.step()

        def scores(split: str) -> np.ndarray:
            return predict_proba(model, x[torch.from_numpy(data.splits[split]).to(ctx.device)])

        def score(epoch: int) -> tuple[float, ...]:
            if p["select"] in ("acc", "last"):
                return selection_score(p["select"], epoch, lambda: scores("val"), data, [])
            rows = data.splits["val"]
            return cell_selection_score(scores("val"), data.y[rows], bias[rows], p["select"])

        epoch, _ = train_with_selection(model, p["epochs"], train_epoch, score, ctx.log.info)
        return Outcome(scores={split: scores(split) for split in ("val", "test")}, info={"selected_epoch": epoch})


def make_optimiser(model: nn.Module, p: dict[str, Any]) -> torch.optim.Optimizer:
    if p["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=0.9, weight_decay=p["weight_decay"])
    return torch.optim.Adam(
        model.parameters(), lr=p["lr"], betas=(p["beta1"], p["beta2"]), weight_decay=p["weight_decay"]
    )


def cell_selection_score(scores: np.ndarray, y: np.ndarray, bias: np.ndarray, rule: str) -> tuple[float, ...]:
    """Validation score over the (class, bias) cells, lower is better: the mean cell accuracy
    (unbiased, LfF's protocol), or the worst cell's, ties by the mean (worst, GroupDRO's early
    stopping; a small validation split often has a cell of one or two rows, wrong at every epoch)."""
    yh = metrics.hard(scores)
    unbiased = metrics.acc_unbiased(y, yh, bias)
    if rule == "unbiased":
        return (-unbiased,)
    cells = np.unique(np.stack([y, bias]), axis=1).T
    return (-min(metrics.acc(y[rows], yh[rows]) for rows in ((y == c) & (bias == b) for c, b in cells)), -unbiased)
