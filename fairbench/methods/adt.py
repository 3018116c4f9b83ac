"""ADT: adversarial training with a gradient-reversal layer (Ganin et al. 2016), as the DVGE
paper's baseline: feature encoder -> task branch, and feature encoder -> gradient reversal ->
sensitive branch; loss CE(task) + lam CE(sensitive), so the encoder receives the sensitive
branch's gradient flipped and scaled by lam (swept). The sensitive branch's own gradient is
scaled by lam too, which Adam's steps ignore (up to its eps): Ganin et al.'s form.

`arch: dvge` (the default): the feature encoder is the VAE encoder of DVGE Table 3 (64x64
images, conv) or Table 4 (tables, MLP) with 10 outputs, the input of the branches, which are
the Table 3/4 MLPs 10-1000x5-2 (the VAE's last layer has 2 x 10 outputs: a mean and a
log-variance per dim, which a deterministic encoder does not have). Adam lr 1e-5 betas (0.5,
0.9), batch 64, 100 epochs (Appendix B)."""

import numpy as np

from fairbench.bounds import NON_NEGATIVE, POSITIVE, POSITIVE_INT
from fairbench.methods import papers
from fairbench.methods.base import HParam, MetricRow, Outcome
from fairbench.methods.families.branched import PROTECT, BranchedMethod, common_hparams
from fairbench.methods.families.latent import Recipe, retrained_accuracy
from fairbench.nets.branched import BranchedNet
from fairbench.train import Fit, Trainer, embed


class ADT(BranchedMethod):
    name = "adt"
    description = "adversarial debiasing: sensitive branch behind gradient reversal, weight lam"
    paper = papers.ADT
    defaults_from = {
        "arch": "paper",
        "epochs": "paper",
        "lr": "paper",
        "beta1": "paper",
        "beta2": "paper",
        "batch_size": "paper",
        "lam": "our choice",
    }
    hparams = {
        **common_hparams(arch="dvge", epochs=100, lr=1e-5, beta1=0.5, beta2=0.9, batch_size=64, select="acc"),
        "protect": PROTECT,
        "lam": HParam(1.0, "weight of the reversed sensitive-attribute loss", bound=NON_NEGATIVE),
        "ablation": HParam(
            False, "also report sens_acc: a fresh d (DVGE's recipe) retrained on the feature encoder's output"
        ),
        "sens_epochs": HParam(120, "ablation: epochs of that d (DVGE: 120)", bound=POSITIVE_INT),
        "sens_lr": HParam(1e-5, "ablation: Adam learning rate of that d (DVGE: 1e-5)", bound=POSITIVE),
    }
    # The quick d follows DVGE's quick budget (30 epochs at 1e-4).
    budgets = {"paper": {}, "quick": {"epochs": 20, "lr": 1e-3, "sens_epochs": 30, "sens_lr": 1e-4}}
    stackable, stacks_seeds = ("lam",), True

    def outcome(self, model: BranchedNet, t: Trainer, fit: Fit) -> Outcome:
        outcome = super().outcome(model, t, fit)
        p = self.params
        if p["ablation"]:
            recipe = Recipe(
                epochs=p["sens_epochs"],
                lr=p["sens_lr"],
                beta1=0.5,
                beta2=0.9,
                batch_size=64,
                width=1000,
                precision="float32",
            )
            accuracy = retrained_accuracy(features(model, t), t.data, recipe, t.ctx)
            tags = {"variant": self.name, "sens_classifier": "retrained", "encoder_label": "ADT"}
            outcome.metrics = [MetricRow(split, "sens_acc", accuracy[split], tags) for split in ("val", "test")]
        return outcome


def features(model: BranchedNet, t: Trainer) -> np.ndarray:
    """The feature encoder's output for every row: the representation both branches read."""
    return embed(model.trunk, t.x, chunk=1024)
