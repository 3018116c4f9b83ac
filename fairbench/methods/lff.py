"""LfF, Learning from Failure (Nam et al., NeurIPS 2020): train a biased and a debiased model together.

The biased model f_B minimises the generalised cross-entropy GCE = (1 - p_y^q) / q (q = 0.7), whose
gradient is p_y^q times cross-entropy's, so it leans on the easy (bias-aligned) samples and
amplifies the bias. The debiased model f_D minimises CE weighted per sample by the relative
difficulty W(x) = CE_B(x) / (CE_B(x) + CE_D(x)): high where f_B fails, i.e. on bias-conflicting
samples. No bias labels are used for training.

Choices the paper leaves open, as the released code (alinlab/LfF) makes them:
- CE_B and CE_D in W are per-sample exponential moving averages of each model's loss over the
  times the sample was drawn (alpha = 0.7; the first draw sets the average), each divided by
  the maximum average among the training samples of the sample's class; W adds 1e-8 to the
  denominator. W is a constant (no gradient flows through it).
- Both models have the same architecture and optimiser and step together on the summed loss.
- GCE is the paper's formula; the released code multiplies CE by q p_y^q instead (gradient q
  times larger), which only rescales f_B's gradients: Adam's steps ignore that up to its eps.
- Defaults are the paper's Colored MNIST recipe: its MLP (`arch: mlp3`), Adam lr 1e-3, no weight
  decay, batch 256, 100 epochs; the released code keeps the last model (`select: last`).
Inference: f_D. Its checkpoint (with f_B's) is what `select` keeps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fairbench.bounds import FRACTION, SHARE
from fairbench.methods import papers
from fairbench.methods.base import HParam
from fairbench.methods.families.classifier import ClassifierMethod, classifier, classifier_hparams
from fairbench.train import Batch, Trainer


def generalized_cross_entropy(logits: torch.Tensor, y: torch.Tensor, q: float) -> torch.Tensor:
    """Per-sample GCE (1 - p_y^q) / q (Zhang & Sabuncu 2018), p_y the softmax probability of y."""
    p_y_q = torch.exp(-q * F.cross_entropy(logits, y, reduction="none"))
    return (1.0 - p_y_q) / q


class LossAverage(nn.Module):
    """Per-sample exponential moving average of a loss, normalised per class by its maximum over
    the training rows. Its state is buffers of the model, so that each stacked member keeps its own."""

    def __init__(self, y: torch.Tensor, train: torch.Tensor, n_classes: int, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha
        self.register_buffer("value", torch.zeros(len(y), device=y.device))
        self.register_buffer("seen", torch.zeros(len(y), dtype=torch.bool, device=y.device))
        # each class's training rows, among which the maximum is taken (a mask: it runs under vmap)
        is_train = torch.zeros(len(y), dtype=torch.bool, device=y.device).index_fill(0, train, True)
        classes = torch.arange(n_classes, device=y.device)[:, None]
        self.register_buffer("by_class", (y[None, :] == classes) & is_train[None, :])

    def update(self, rows: torch.Tensor, loss: torch.Tensor) -> None:
        old = self.value[rows]
        self.value[rows] = torch.where(self.seen[rows], self.alpha * old + (1 - self.alpha) * loss, loss)
        self.seen[rows] = True

    def normalised(self, rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The average of `rows` over its class's maximum (`labels`: the rows' classes)."""
        maxima = torch.where(self.by_class, self.value, -torch.inf).amax(dim=1)
        maxima = torch.where(self.by_class.any(dim=1), maxima, 1.0)  # a class with no training rows
        return self.value[rows] / maxima[labels]


class Pair(nn.Module):
    """The biased and the debiased model and their per-sample loss averages; the forward pass is
    the debiased one's."""

    def __init__(self, biased: nn.Module, debiased: nn.Module, average_b: LossAverage, average_d: LossAverage) -> None:
        super().__init__()
        self.biased, self.debiased = biased, debiased
        self.average_b, self.average_d = average_b, average_d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.debiased(x)


class LfF(ClassifierMethod):
    name = "lff"
    description = "Learning from Failure: GCE-trained biased model, relative-difficulty weights for the debiased one"
    paper = papers.LFF
    needs_bias = False
    defaults_from = {
        "arch": "paper",
        "lr": "paper",
        "weight_decay": "paper",
        "batch_size": "paper",
        "epochs": "paper",
        "optimizer": "paper",
        "q": "paper",
        "select": "released code",
        "ema": "released code",
    }
    hparams = {
        **classifier_hparams(
            arch="mlp3", epochs=100, optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=256, select="last"
        ),
        "q": HParam(0.7, "GCE exponent of the biased model", bound=SHARE),
        "ema": HParam(0.7, "EMA factor of the per-sample losses", bound=FRACTION),
    }
    budgets = {"paper": {}, "quick": {"epochs": 10}}
    stacks_seeds = True

    def epochs_trained(self) -> float:
        """Two networks (biased and debiased) learn from every batch."""
        return 2.0 * self.params["epochs"]

    def build(self, t: Trainer) -> nn.Module:
        shape, arch, k = tuple(t.data.x.shape[1:]), self.params["arch"], t.data.n_classes
        averages = [LossAverage(t.y, t.rows("train"), k, self.params["ema"]) for _ in range(2)]
        return Pair(classifier(arch, shape, k), classifier(arch, shape, k), *averages)

    def loss(self, model: Pair, batch: Batch) -> dict[str, torch.Tensor]:
        logits_b, logits_d = model.biased(batch.x), model.debiased(batch.x)
        ce_d = F.cross_entropy(logits_d, batch.y, reduction="none")
        with torch.no_grad():
            model.average_b.update(batch.rows, F.cross_entropy(logits_b, batch.y, reduction="none"))
            model.average_d.update(batch.rows, ce_d)
            loss_b, loss_d = (average.normalised(batch.rows, batch.y) for average in (model.average_b, model.average_d))
            weight = loss_b / (loss_b + loss_d + 1e-8)
        biased = generalized_cross_entropy(logits_b, batch.y, self.params["q"]).mean()
        debiased = (weight * ce_d).mean()
        return {"loss": biased + debiased, "biased": biased, "debiased": debiased}
