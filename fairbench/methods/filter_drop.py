"""Filter-Drop (Nagpal, Singh, Singh & Vatsa, CVPR Workshops 2020): find the filters of a shared
network that carry the bias attribute and drop them from the primary classification.

The paper (a workshop abstract) says: a multi-task network learns the features that predict the
biasing attribute, and those features are eliminated while the primary task is performed. What
it leaves open is filled in here, as written below.

- Filters: the units of the backbone's output f (the features both heads read: the pooled
  channels of a CNN, the last hidden layer of an MLP), as GBA masks the same f.
- Stage 1, multi-task (`attribute_epochs`): backbone + class head + bias head trained together on
  CE(class) + lam CE(bias), every filter feeding both heads.
- Which filters carry the bias: filter j's score is the mean over the training rows of
  |f_j * d log p(b | f) / d f_j|, the first-order change of the bias head's log-likelihood of the
  true bias value when f_j is zeroed (the Taylor criterion of filter pruning). The `drop` share of
  filters with the largest scores is dropped: mask m_j = 0 for them, 1 for the others.
- Stage 2 (`epochs`): the class head reads f * m (dropped filters are zero), the bias head reads
  f * (1 - m), so the multi-task loss keeps pulling the bias attribute into the dropped filters
  and the class head trains without them. The checkpoint is chosen on validation accuracy over
  stage 2; predictions always read f * m.
- Defaults (the paper gives none): lam = 1, drop = half the filters, 10 multi-task epochs; then
  LfF's Colored MNIST recipe (Adam lr 1e-3, batch 256, 100 epochs); `arch` picks the network
  (default mlp3: the 100 units of its last hidden layer are the filters; resnet18 for CIFAR-10S
  and CelebA: its 512 pooled channels).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fairbench.bounds import BELOW_ONE, NON_NEGATIVE, POSITIVE_INT
from fairbench.data.base import TaskData
from fairbench.methods import papers
from fairbench.methods.base import HParam, Outcome, RunContext
from fairbench.methods.families.trained import TrainedMethod, training_hparams
from fairbench.nets.branched import ARCHITECTURES, build_branched
from fairbench.train import Batch, Fit, Trainer, as_input


class FilterDropNet(nn.Module):
    """backbone -> f; class head on f * keep; bias head on f (nothing dropped yet) or f * (1 - keep)."""

    def __init__(self, trunk: nn.Module, task_head: nn.Module, bias_head: nn.Module, width: int) -> None:
        super().__init__()
        self.trunk, self.task_head, self.bias_head = trunk, task_head, bias_head
        self.register_buffer("keep", torch.ones(width))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.trunk(x))

    def heads(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dropped = 1 - self.keep
        # no Python branch on the mask's value: a stack's members each read their own
        routed = torch.where(dropped.any(), dropped, torch.ones_like(dropped))
        return self.task_head(f * self.keep), self.bias_head(f * routed)

    def drop(self, filters: torch.Tensor) -> None:
        """Zero `filters` for the class head (and route only them to the bias head)."""
        self.keep.fill_(1)
        self.keep[filters] = 0


def bias_scores(model: FilterDropNet, x: torch.Tensor, bias: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Per filter, mean over rows of |f_j * d log p(b | f) / d f_j| under the bias head on all of f."""
    model.eval()
    total = torch.zeros_like(model.keep)
    for start in range(0, len(x), chunk):
        with torch.no_grad():
            f = model.trunk(as_input(x[start : start + chunk]))
        f.requires_grad_(True)
        log_p = F.log_softmax(model.bias_head(f), dim=1).gather(1, bias[start : start + chunk, None]).sum()
        (grad,) = torch.autograd.grad(log_p, f)
        total += (f * grad).abs().sum(dim=0).detach()
    return total / len(x)


def filters_to_drop(scores: torch.Tensor, share: float) -> torch.Tensor:
    """Indices of the round(share * width) filters with the largest scores (at least one)."""
    return scores.topk(max(1, round(share * len(scores)))).indices


class FilterDrop(TrainedMethod):
    name = "filter_drop"
    description = "Filter-Drop: drop the backbone filters that carry the bias attribute from the class head"
    paper = papers.FILTER_DROP
    defaults_from = {
        "lam": "our choice",
        "drop": "our choice",
        "attribute_epochs": "our choice",
        "epochs": "our choice",
        "lr": "our choice",
        "batch_size": "our choice",
    }
    hparams = {
        "arch": HParam("mlp3", "network: its backbone's output units are the filters", ARCHITECTURES),
        **training_hparams(epochs=100, lr=1e-3, batch_size=256, select="acc"),
        "attribute_epochs": HParam(
            10, "stage 1: epochs of the multi-task network before the filters are chosen", bound=POSITIVE_INT
        ),
        "lam": HParam(1.0, "weight of the bias head's cross-entropy in both stages", bound=NON_NEGATIVE),
        "drop": HParam(
            0.5, "share of the backbone's filters dropped (those with the largest bias scores)", bound=BELOW_ONE
        ),
    }
    budgets = {"paper": {}, "quick": {"epochs": 20, "attribute_epochs": 5}}
    stackable, stacks_seeds = ("lam", "drop"), True

    def epochs_trained(self) -> float:
        return float(self.params["attribute_epochs"] + self.params["epochs"])

    def check(self, data: TaskData) -> None:
        super().check(data)
        data.require_bias(self.name)

    def run(self, data: TaskData, ctx: RunContext) -> Outcome:
        """Two trainings of one model on the engine: the multi-task stage, the drop, stage 2
        (each stage with a fresh Adam, as its objective changes at the drop)."""
        p = self.params
        model, t = self.prepare(data, ctx)
        self.fit_alone(model, t, epochs=p["attribute_epochs"], select="last", name="multi-task")
        dropped = self.drop_filters(model, t)
        return self.dropped_outcome(
            model, t, self.fit_alone(model, t, epochs=p["epochs"], select=p["select"], name="dropped"), dropped
        )

    @classmethod
    def train_stacked(cls, methods: list[TrainedMethod], prepared: list[tuple[nn.Module, Trainer]]) -> list[Outcome]:
        """`run`'s stages, each member's drop chosen on its own model between them."""
        p = methods[0].params
        cls.fit_together(methods, prepared, epochs=p["attribute_epochs"], select="last", name="multi-task")
        dropped = [m.drop_filters(model, t) for m, (model, t) in zip(methods, prepared, strict=True)]
        fits = cls.fit_together(methods, prepared, epochs=p["epochs"], select=p["select"], name="dropped")
        return [
            m.dropped_outcome(model, t, fit, filters)
            for m, (model, t), fit, filters in zip(methods, prepared, fits, dropped, strict=True)
        ]

    def drop_filters(self, model: FilterDropNet, t: Trainer) -> list[int]:
        """Score the filters on the training rows and drop the `drop` share that carry the bias most."""
        train = t.rows("train")
        dropped = filters_to_drop(bias_scores(model, t.x[train], t.bias[train]), self.params["drop"])
        model.drop(dropped)
        return sorted(dropped.tolist())

    def dropped_outcome(self, model: FilterDropNet, t: Trainer, fit: Fit, dropped: list[int]) -> Outcome:
        outcome = self.outcome(model, t, fit)
        outcome.info["dropped_filters"] = dropped
        return outcome

    def loss(self, model: FilterDropNet, batch: Batch) -> torch.Tensor:
        x, y, bias = batch.x, batch.y, batch.bias
        if len(batch) == 1:  # batch norm: a lone last row counts twice
            x, y, bias = (torch.cat([v, v]) for v in (x, y, bias))
        task, attribute = model(x)
        return F.cross_entropy(task, y) + self.params["lam"] * F.cross_entropy(attribute, bias)

    def build(self, t: Trainer) -> FilterDropNet:
        """The arch's backbone and heads: a k-way class head and a bias head (one output per bias value)."""
        data = t.data
        bias_values = max(2, int(data.bias.max()) + 1)
        shape = tuple(data.x.shape[1:])
        net = build_branched(self.params["arch"], shape, data.n_classes, (bias_values,))
        width = int(np.prod(net.trunk(torch.zeros(2, *shape)).shape[1:]))
        return FilterDropNet(net.trunk, net.task_head, net.attribute_heads[0], width)
