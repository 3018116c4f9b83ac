"""ADT: adversarial training with a gradient-reversal layer (Ganin et al. 2016), as the DVGE
paper's baseline: its feature encoder and branches follow DVGE Tables 3/4, Adam lr 1e-5
betas (0.5, 0.9), batch 64, 100 epochs; `lam` (the reversal weight) is swept."""

from fairbench.methods.base import HParam
from fairbench.methods.branched import BranchedMethod, common_hparams


class ADT(BranchedMethod):
    name = "adt"
    description = "adversarial debiasing: sensitive branch behind gradient reversal, weight lam"
    hparams = {
        **common_hparams(arch="dvge", epochs=100, lr=1e-5, beta1=0.5, beta2=0.9, batch_size=64, select="acc"),
        "lam": HParam(1.0, "weight of the reversed sensitive-attribute loss"),
    }
    budgets = {"paper": {}, "quick": {"epochs": 20, "lr": 1e-3}}
