"""The branched family (ERM, ADT, GRAD-Pred, GRAD-Auto, GBA): one branched net, the task loss
plus lam x the attribute losses, each attribute branch behind gradient reversal; the methods
differ in their declared defaults (architecture, reversal weight, optimiser, selection rule)
and in the hooks below (the target, how the task head reads a batch, how rows are scored)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from fairbench.bounds import BELOW_ONE, POSITIVE, POSITIVE_INT
from fairbench.methods.base import HParam
from fairbench.methods.families.trained import PROTECT, TrainedMethod, select_param
from fairbench.nets.branched import ARCHITECTURES, BranchedNet, build_branched
from fairbench.train import Batch, Trainer

__all__ = ["PROTECT", "BranchedMethod", "TargetLoss", "common_hparams"]

# The target branch's loss on a batch: (branch output, the batch) -> scalar.
TargetLoss = Callable[[torch.Tensor, Batch], torch.Tensor]


def common_hparams(**defaults: Any) -> dict[str, HParam]:
    """The hyperparameters every branched method has, with per-method defaults."""
    return {
        "arch": HParam(
            defaults["arch"],
            "network: grad (40-unit BN MLPs) | dvge (paper Tables 3/4) | resnet18 | mlp3 (GBA's image backbones)",
            ARCHITECTURES,
        ),
        "epochs": HParam(defaults["epochs"], "training epochs", bound=POSITIVE_INT),
        "lr": HParam(defaults["lr"], "Adam learning rate", bound=POSITIVE),
        "beta1": HParam(defaults.get("beta1", 0.9), "Adam beta1", bound=BELOW_ONE),
        "beta2": HParam(defaults.get("beta2", 0.999), "Adam beta2", bound=BELOW_ONE),
        "batch_size": HParam(defaults["batch_size"], "minibatch size", bound=POSITIVE_INT),
        "select": select_param(defaults["select"], *defaults.get("rules", ("acc", "disc", "last"))),
    }


class BranchedMethod(TrainedMethod):
    """Task loss + lam x the attribute losses, each attribute branch behind gradient reversal."""

    adversarial: ClassVar[bool] = True
    min_batch = 2  # batch norm needs two rows

    def target(self, t: Trainer) -> tuple[int, TargetLoss]:
        """The target branch's width and loss: y's classes under cross-entropy."""
        return t.data.n_classes, lambda output, batch: F.cross_entropy(output, batch.y)

    def outputs(
        self, model: BranchedNet, inputs: torch.Tensor, groups: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Task logits and the attribute logits per head of a training batch (`groups`: the batch's
        values of each head's attribute); a method that changes what the task head sees during
        training (GBA's feature mask) overrides this."""
        return model(inputs)

    def build(self, t: Trainer) -> BranchedNet:
        self.adversaries = self.attributes(t.data) if self.adversarial else []
        width, self.target_loss = self.target(t)
        counts = tuple(t.data.group_counts[name] for name in self.adversaries)
        return build_branched(self.params["arch"], tuple(t.data.x.shape[1:]), width, counts)

    def optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        p = self.params
        return torch.optim.Adam(model.parameters(), lr=p["lr"], betas=(p["beta1"], p["beta2"]), foreach=True)

    def loss(self, model: BranchedNet, batch: Batch) -> dict[str, torch.Tensor]:
        groups = batch.groups(self.adversaries)
        task, attributes = self.outputs(model, batch.x, groups)
        lam = self.params.get("lam", 0.0)  # a tensor of the members' values in a stack
        task_loss = loss = self.target_loss(task, batch)
        for logits, g in zip(attributes, groups):
            loss = loss + lam * F.cross_entropy(logits, g)
        return {"loss": loss, "task": task_loss}
