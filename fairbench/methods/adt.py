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
