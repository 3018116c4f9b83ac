"""NN-Auto (Raff & Sylvester 2018): GRAD-Auto without the attribute branch, an autoencoder that
rebuilds x without the columns of every sensitive attribute, with logistic regression on its
trunk. It keeps GRAD's selection (lowest validation discrimination, ties by accuracy), which the
paper applies to every model of its tables."""

from fairbench.methods import papers
from fairbench.methods.grad_auto import GradAuto


class NNAuto(GradAuto):
    name = "nn_auto"
    description = "NN-Auto: GRAD-Auto's autoencoder without the attribute branch"
    paper = papers.GRAD
    adversarial = False
    stackable = ()  # no lam; its seeds still stack
    hparams = {name: hp for name, hp in GradAuto.hparams.items() if name not in ("lam", "protect")}
    defaults_from = {name: source for name, source in GradAuto.defaults_from.items() if name != "lam"}
