"""Debiasing methods: one module per method, all behind `fairbench.registry.METHODS`; the shared
bases of method families in `fairbench/methods/families/`."""

from fairbench.methods.base import HParam, Method, MetricRow, Outcome, Paper, RunContext
from fairbench.methods.families.trained import TrainedMethod, select_param, training_hparams

__all__ = [
    "HParam",
    "Method",
    "MetricRow",
    "Outcome",
    "Paper",
    "RunContext",
    "TrainedMethod",
    "select_param",
    "training_hparams",
]
