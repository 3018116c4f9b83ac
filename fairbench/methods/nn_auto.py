"""NN-Auto (Raff & Sylvester 2018): GRAD-Auto without the attribute branch, an autoencoder that
rebuilds x without the protected attributes' columns, with logistic regression on its trunk."""

from fairbench.methods.grad_auto import GradAuto


class NNAuto(GradAuto):
    name = "nn_auto"
    description = "NN-Auto: GRAD-Auto's autoencoder without the attribute branch"
    adversarial = False
    hparams = {name: hp for name, hp in GradAuto.hparams.items() if name != "lam"}
