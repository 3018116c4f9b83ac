"""GRAD-Pred (Raff & Sylvester 2018): trunk, target and attribute branches of two 40-unit layers
with batch norm + ReLU, Adam, 50 epochs, lambda = 100, keeping the epoch with the lowest
validation discrimination (ties: highest validation accuracy)."""

from fairbench.bounds import NON_NEGATIVE
from fairbench.methods import papers
from fairbench.methods.base import HParam
from fairbench.methods.families.branched import PROTECT, BranchedMethod, common_hparams
from fairbench.table_spec import ReportTable

# GRAD Tables 1 and 2's columns, one row per label. With several protected attributes Discr is
# their mean (Delta = Acc - mean Discr) and each attribute's Discr follows it (Table 2).
TABLE = ReportTable(
    name="grad",
    caption="GRAD's columns on the {split} split, {experiment} (Discr: mean over the sensitive attributes); "
    "mean ± std over seeds",
    metrics={"acc": "Acc", "delta": "Delta", "discrimination": "Discr", "consistency": "Cons"},
    columns_by_tag={"discrimination": "attribute"},
)


class GradPred(BranchedMethod):
    name = "grad_pred"
    description = "GRAD-Pred: gradient reversal against discrimination, selection by val discrimination"
    paper = papers.GRAD
    version = 2  # GRAD's selection reads the predicted labels (GRAD 3.1); GRAD-Auto and NN-Auto inherit it
    defaults_from = {"arch": "paper", "epochs": "paper", "select": "paper", "lam": "paper"}
    hparams = {
        **common_hparams(arch="grad", epochs=50, lr=1e-3, batch_size=128, select="disc"),
        "protect": PROTECT,
        "lam": HParam(100.0, "weight of the reversed protected-attribute loss (paper: 100)", bound=NON_NEGATIVE),
    }
    budgets = {"paper": {}, "quick": {"epochs": 20}}
    stackable, stacks_seeds = ("lam",), True
    report_tables = (TABLE,)
