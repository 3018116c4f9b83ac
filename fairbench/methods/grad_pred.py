"""GRAD-Pred (Raff & Sylvester 2018): trunk, target and attribute branches of two 40-unit layers
with batch norm + ReLU, Adam, 50 epochs, lambda = 100, keeping the epoch with the lowest
validation discrimination (ties: highest validation accuracy)."""

from fairbench.methods.base import HParam
from fairbench.methods.branched import PROTECT, BranchedMethod, common_hparams


class GradPred(BranchedMethod):
    name = "grad_pred"
    description = "GRAD-Pred: gradient reversal against discrimination, selection by val discrimination"
    hparams = {
        **common_hparams(arch="grad", epochs=50, lr=1e-3, batch_size=128, select="disc"),
        "protect": PROTECT,
        "lam": HParam(100.0, "weight of the reversed protected-attribute loss (paper: 100)"),
    }
    budgets = {"paper": {}, "quick": {"epochs": 20}}
