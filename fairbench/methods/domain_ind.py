"""DomainInd, domain-independent training (Wang et al., CVPR 2020, "Towards fairness in visual
recognition"): one k-way classifier head per bias domain on a shared backbone.

Training: a row of domain d is scored only by head d, with the cross-entropy of that head's
softmax (so each head learns from its own domain's rows, the backbone from all). Inference:
the class with the largest sum over the domains of the heads' logits, argmax_y sum_d s_d(y|x)
(the paper's "sum of outputs", which its released code computes on the raw, pre-softmax outputs;
`combine: probabilities` sums the heads' softmax probabilities instead). The class probabilities
returned are the softmax of the summed logits (of the mean probability with `probabilities`).

Choices the paper leaves open, as the released code (princetonvisualai/DomainBiasMitigation)
makes them: the heads are the network's last layer widened to n_domains x k outputs (block d is
head d; everything before it is the shared backbone). Defaults: `arch: mlp3`, GBA's Colored
MNIST backbone (the paper uses ResNet-18; suites pick the backbone), and its CIFAR-10S recipe, SGD
momentum 0.9, lr 0.1 decayed x0.1 every 50 epochs, weight decay 5e-4, batch 128, 200 epochs,
the last model kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fairbench.methods import papers
from fairbench.methods.base import HParam
from fairbench.methods.families.classifier import ClassifierMethod, classifier, classifier_hparams
from fairbench.train import Batch, Trainer

COMBINE = ("logits", "probabilities")


class DomainHeads(nn.Module):
    """A net with n_domains x k outputs read as one k-way head per domain."""

    def __init__(self, net: nn.Module, n_domains: int, n_classes: int, combine: str) -> None:
        super().__init__()
        self.net, self.n_domains, self.n_classes, self.combine = net, n_domains, n_classes, combine

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """(n, n_domains, k) logits of every head."""
        return self.net(x).view(len(x), self.n_domains, self.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of the domain-independent inference (softmax gives its probabilities)."""
        heads = self.heads(x)
        if self.combine == "logits":
            return heads.sum(dim=1)
        return torch.log(torch.softmax(heads, dim=2).mean(dim=1))


class DomainInd(ClassifierMethod):
    name = "domain_ind"
    description = "domain-independent training: a classifier head per bias domain, inference sums the heads"
    paper = papers.DOMAIN_IND
    defaults_from = {
        "optimizer": "released code",
        "lr": "released code",
        "lr_step": "released code",
        "weight_decay": "released code",
        "batch_size": "released code",
        "epochs": "released code",
        "select": "released code",
        "combine": "released code",
    }
    hparams = {
        **classifier_hparams(
            arch="mlp3",
            epochs=200,
            optimizer="sgd",
            lr=0.1,
            weight_decay=5e-4,
            lr_step=50,
            batch_size=128,
            select="last",
        ),
        "combine": HParam("logits", "inference: sum the heads' logits (Wang et al.) or their probabilities", COMBINE),
    }
    budgets = {"paper": {}, "quick": {"epochs": 10, "lr_step": 0}}
    stacks_seeds = True

    def build(self, t: Trainer) -> nn.Module:
        net = classifier(self.params["arch"], tuple(t.data.x.shape[1:]), self.n_bias * t.data.n_classes)
        return DomainHeads(net, self.n_bias, t.data.n_classes, self.params["combine"])

    def loss(self, model: DomainHeads, batch: Batch) -> torch.Tensor:
        own_head = model.heads(batch.x)[torch.arange(len(batch.x), device=batch.x.device), batch.bias]
        return F.cross_entropy(own_head, batch.y)
