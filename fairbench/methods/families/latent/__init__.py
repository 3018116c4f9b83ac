"""What the methods on a frozen encoder's latent code share (dvge, removal, ffvae, fdvae): the
MLP recipe and shared hyperparameters, the codes on the device, the downstream model g, and
the sensitive classifier d with its focus (an artifact of its own: d is not an encoder)."""

from fairbench.methods.families.latent.codes import TaskTensors, fit_downstream, scores_of, split_groups
from fairbench.methods.families.latent.method import LatentCodeMethod, SensitivePartDropped
from fairbench.methods.families.latent.recipe import SHARED_BUDGETS, SHARED_HPARAMS, Recipe, recipe, sens_recipe
from fairbench.methods.families.latent.sensitive import (
    SensitiveClassifier,
    retrained_accuracy,
    sensitive_classifier,
    sensitive_classifiers,
    sensitive_dims,
    zero_dims,
)

__all__ = [
    "SHARED_BUDGETS",
    "SHARED_HPARAMS",
    "LatentCodeMethod",
    "Recipe",
    "SensitiveClassifier",
    "SensitivePartDropped",
    "TaskTensors",
    "fit_downstream",
    "recipe",
    "retrained_accuracy",
    "scores_of",
    "sens_recipe",
    "split_groups",
    "sensitive_classifier",
    "sensitive_classifiers",
    "sensitive_dims",
    "zero_dims",
]
