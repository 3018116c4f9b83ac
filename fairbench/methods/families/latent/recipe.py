"""How the MLPs on a latent code train (paper Appendix B), and the hyperparameters every
latent-code method (dvge, removal, ffvae, fdvae) shares: the encoder, the code, d's and g's recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fairbench.bounds import BELOW_ONE, NON_NEGATIVE, POSITIVE, POSITIVE_INT
from fairbench.methods.base import HParam
from fairbench.nets.stacked import StackedMLP
from fairbench.train import Arithmetic

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRECISIONS = tuple(DTYPES)


@dataclass(frozen=True)
class Recipe:
    """How a DVGE MLP (d or g) trains: paper Appendix B unless a budget or test shrinks it."""

    epochs: int
    lr: float
    beta1: float
    beta2: float
    batch_size: int
    width: int
    precision: str
    select: str = "acc"
    max_steps_per_epoch: int = 0

    def model(self, in_dim: int, members: int, device: str) -> StackedMLP:
        """M stacked 10-1000x5-2 MLPs (LeakyReLU 0.2), not yet initialised."""
        return StackedMLP([in_dim, *[self.width] * 5, 2], members, dtype=DTYPES[self.precision], device=device)

    def steps(self, train_rows: int) -> int:
        """Minibatch steps of a whole training on `train_rows` rows (each epoch a full pass, or
        `max_steps_per_epoch`)."""
        per_epoch = -(-train_rows // self.batch_size)
        return self.epochs * (min(per_epoch, self.max_steps_per_epoch) if self.max_steps_per_epoch else per_epoch)

    @property
    def workload(self) -> str:
        """The benchmark workload of training this MLP: `latent_mlp:<width>`."""
        return f"latent_mlp:{self.width}"

    def fit_kwargs(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "betas": (self.beta1, self.beta2),
            "select": self.select,
            "max_steps_per_epoch": self.max_steps_per_epoch,
        }


def arithmetic(rec: Recipe, ctx: Any) -> Arithmetic:
    """The job's arithmetic (the engine's settings) for d and g; a float64 recipe (an exactness
    check) keeps full precision. `ctx` is a RunContext."""
    job = Arithmetic.of(ctx)
    return job if rec.precision == "float32" else Arithmetic("fp32", ctx.device, job.compile)


LATENTS = ("mean", "sample")

# What DVGE, removal and the ablation share: the encoder and the MLP recipe (Appendix B).
SHARED_HPARAMS: dict[str, HParam] = {
    "encoder": HParam(
        {"name": "factor_vae", "gamma": 6.4},
        "encoder config: name factor_vae (DVGE-D) | vanilla_vae (DVGE-N), and its settings "
        "(gamma, z_dim, width, likelihood, batch_size, lr, beta1, beta2, lr_d, beta1_d, beta2_d)",
    ),
    "encoder_iters": HParam(1_000_000, "encoder training iterations (paper: 1e6, batch 64)", bound=POSITIVE_INT),
    "latent": HParam("mean", "code fed to d and g: posterior mean | one seeded sample (released code)", LATENTS),
    "epochs": HParam(100, "epochs of the downstream model g", bound=POSITIVE_INT),
    "sens_epochs": HParam(
        120, "epochs of the sensitive classifier d (best validation accuracy kept)", bound=POSITIVE_INT
    ),
    "lr": HParam(1e-5, "Adam learning rate of d and g", bound=POSITIVE),
    "beta1": HParam(0.5, "Adam beta1 of d and g", bound=BELOW_ONE),
    "beta2": HParam(0.9, "Adam beta2 of d and g", bound=BELOW_ONE),
    "batch_size": HParam(64, "minibatch size of d and g", bound=POSITIVE_INT),
    "width": HParam(1000, "hidden width of the 10-1000x5-2 MLPs d and g (smaller only for tests)", bound=POSITIVE_INT),
    "select": HParam("acc", "checkpoint of g: best validation accuracy | last epoch", ("acc", "last")),
    "max_steps_per_epoch": HParam(
        0, "cap on minibatches per epoch (0 = a full pass; quick budgets)", bound=NON_NEGATIVE
    ),
    "precision": HParam("float32", "dtype of d and g (float64 for exactness tests)", PRECISIONS),
}

SHARED_BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # CPU smoke runs: fewer iterations and epochs, and a larger step so that g and d still
    # learn in a few hundred steps (as the other methods' quick budgets do).
    "quick": {"encoder_iters": 1000, "epochs": 30, "sens_epochs": 30, "lr": 1e-4, "max_steps_per_epoch": 50},
}


def recipe(params: dict[str, Any], epochs: int) -> Recipe:
    return Recipe(
        epochs=epochs,
        lr=params["lr"],
        beta1=params["beta1"],
        beta2=params["beta2"],
        batch_size=params["batch_size"],
        width=params["width"],
        precision=params["precision"],
        select=params["select"],
        max_steps_per_epoch=params["max_steps_per_epoch"],
    )


def sens_recipe(params: dict[str, Any]) -> Recipe:
    """d's recipe: always best validation accuracy (paper), whatever g's selection rule."""
    return Recipe(**{**recipe(params, params["sens_epochs"]).__dict__, "select": "acc"})
