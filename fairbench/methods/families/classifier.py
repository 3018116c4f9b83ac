"""The classifier family, the debiasing baselines GBA compares with (LfF, GroupDRO, DomainInd):
one classifier module trained by a method-specific objective on minibatches of the train split,
a checkpoint chosen on validation, class probabilities from the module's logits.

A method supplies `build` (the module: its forward gives k class logits, which is what inference
and selection read; `self.n_bias` is the number of bias values when the task has bias labels),
`loss` (per batch; state such as loss averages or group weights lives on the method, made in
`build`) and optionally `batches` (the sampling of train rows).

The network is a hyperparameter (`arch`, any of nets/branched.py's): GBA trains every method on
the same backbone per dataset, so its suites set it (LfF's three-layer MLP on Colored MNIST,
ResNet-18 on CIFAR-10S and CelebA)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from fairbench.bounds import NON_NEGATIVE
from fairbench.data.base import TaskData
from fairbench.methods.base import HParam
from fairbench.methods.families.branched import common_hparams
from fairbench.methods.families.trained import TrainedMethod
from fairbench.nets.branched import build_branched
from fairbench.train import Trainer


def classifier_hparams(**defaults: Any) -> dict[str, HParam]:
    """The branched methods' hyperparameters (arch, epochs, lr, Adam betas, batch size), these
    methods' selection rules, optimiser choice, weight decay and step schedule."""
    return {
        **common_hparams(**defaults, rules=("acc", "unbiased", "worst", "last")),
        "optimizer": HParam(defaults["optimizer"], "adam | sgd (momentum 0.9, learning rate lr)", ("adam", "sgd")),
        "weight_decay": HParam(defaults["weight_decay"], "L2 weight decay", bound=NON_NEGATIVE),
        "lr_step": HParam(
            defaults.get("lr_step", 0), "epochs between x0.1 learning-rate decays (0: constant)", bound=NON_NEGATIVE
        ),
    }


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


class ClassifierMethod(TrainedMethod):
    """One classifier under the method's objective; checkpoint by `select`; scores from its logits."""

    # Whether the method trains on bias labels (GroupDRO, DomainInd) or without them (LfF).
    needs_bias: ClassVar[bool] = True
    min_batch = 2  # batch norm needs two rows

    def check(self, data: TaskData) -> None:
        super().check(data)
        if self.needs_bias:
            data.require_bias(self.name)
        self.n_bias = 0 if data.bias is None else int(data.bias.max()) + 1

    def attributes(self, data: TaskData) -> list[str]:
        return []  # the cell rules read the bias labels, not the sensitive attributes

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        p = self.params
        if p["optimizer"] == "sgd":
            return torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=0.9, weight_decay=p["weight_decay"])
        return torch.optim.Adam(
            model.parameters(), lr=p["lr"], betas=(p["beta1"], p["beta2"]), weight_decay=p["weight_decay"]
        )

    def schedulers(self, optimizer: torch.optim.Optimizer) -> list[torch.optim.lr_scheduler.LRScheduler]:
        step = self.params["lr_step"]
        return [torch.optim.lr_scheduler.StepLR(optimizer, step, 0.1)] if step else []

    def cells(self, t: Trainer) -> torch.Tensor:
        """Each train row's (class, bias) cell, class x n_bias + bias."""
        train = t.rows("train")
        return t.y[train] * self.n_bias + t.bias[train]
