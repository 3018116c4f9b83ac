"""FFVAE (Creager et al. 2019) as DVGE's baseline: g (DVGE's MLP and recipe) on an FFVAE code
without its sensitive dims b; the encoder (see fairbench/encoders/ffvae.py) is trained with
the sensitive attributes, so its artifact depends on the sensitive expression. This is also
FFVAE's "sensitive dims removed" reading."""

from fairbench.bounds import NON_NEGATIVE
from fairbench.methods import papers
from fairbench.methods.base import HParam
from fairbench.methods.families.latent import SHARED_BUDGETS, SHARED_HPARAMS, SensitivePartDropped


class FFVAE(SensitivePartDropped):
    name = "ffvae"
    description = "FFVAE: g on a FactorVAE code whose supervised sensitive dims b are dropped"
    paper = papers.FFVAE
    encoders = ("ffvae",)
    encoder_hparams = ("alpha", "gamma")
    stackable = ("alpha", "gamma")  # the encoders of a grid train as one stacked model
    version = 2  # 2: the encoder draws its noise from its own stream (encoder artifact version 3)
    hparams = {
        **SHARED_HPARAMS,
        "encoder": HParam(
            {"name": "ffvae"},
            "encoder settings: z_dim (b included), width, likelihood, batch_size, lr, beta1, beta2, "
            "lr_d, beta1_d, beta2_d",
        ),
        "alpha": HParam(1.0, "encoder: weight of b's supervision (BCE); DVGE sweeps 1.0..6.4", bound=NON_NEGATIVE),
        "gamma": HParam(
            6.4, "encoder: weight of the total correlation of [z, b]; DVGE sweeps 1.0..6.4", bound=NON_NEGATIVE
        ),
        "ablation": HParam(False, "also report sens_acc: a fresh d retrained on the code g sees"),
    }
    budgets = SHARED_BUDGETS
