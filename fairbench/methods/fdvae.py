"""FD-VAE (Park et al. 2021) as DVGE's baseline: g (DVGE's MLP and recipe) on an FD-VAE code's
target and mutual dims, its protected dims dropped. The encoder (fairbench/encoders/fdvae.py)
trains with the target and the sensitive group, so its artifact depends on both."""

from fairbench.methods import papers
from fairbench.methods.base import HParam
from fairbench.methods.families.latent import SHARED_BUDGETS, SHARED_HPARAMS, SensitivePartDropped


class FDVAE(SensitivePartDropped):
    name = "fdvae"
    description = "FD-VAE: g on the target and mutual dims of a target/mutual/protected split code"
    paper = papers.FDVAE
    encoders = ("fdvae",)
    hparams = {
        **SHARED_HPARAMS,
        "encoder": HParam(
            {"name": "fdvae"},
            "encoder settings: target_dims, sensitive_dims (mutual = z_dim - both), alpha (heads), "
            "beta (decorrelation), z_dim, width, likelihood, batch_size, lr, beta1, beta2, lr_d, beta1_d, beta2_d",
        ),
        "ablation": HParam(False, "also report sens_acc: a fresh d retrained on the code g sees"),
    }
    budgets = SHARED_BUDGETS
    version = 2  # 2: the encoder draws its noise from its own stream (encoder artifact version 3)
