"""ERM: the same network with no debiasing (GRAD's "NN", FAAP's "normal training")."""

from fairbench.methods.families.branched import BranchedMethod, common_hparams


class ERM(BranchedMethod):
    name = "erm"
    description = "empirical risk minimisation: the task network alone, no debiasing"
    adversarial = False
    stacks_seeds = True
    hparams = common_hparams(arch="grad", epochs=50, lr=1e-3, batch_size=128, select="acc")
    budgets = {"paper": {}, "quick": {"epochs": 20}}
