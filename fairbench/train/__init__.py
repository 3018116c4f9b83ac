"""The training engine (one loop for every method trained on minibatches), its selection rules,
the job's random streams, and the tensors a training reads."""

from fairbench.train.engine import (
    PRECISIONS,
    Arithmetic,
    Batch,
    Checkpoints,
    Fit,
    JobContext,
    Losses,
    Trainer,
    check_compile_supported,
    descend,
)
from fairbench.train.members import Member, MemberLoss, Unstackable, fit_members
from fairbench.train.seeding import seed_everything, stream
from fairbench.train.selection import SELECTION_RULES, Score, SelectionRule, Validation, get_rule, selection_rule
from fairbench.train.tensors import as_input, embed, minibatches, predict_proba, to_float

__all__ = [
    "PRECISIONS",
    "SELECTION_RULES",
    "Arithmetic",
    "Batch",
    "Checkpoints",
    "Fit",
    "JobContext",
    "Losses",
    "Member",
    "MemberLoss",
    "Score",
    "SelectionRule",
    "Trainer",
    "Unstackable",
    "Validation",
    "as_input",
    "check_compile_supported",
    "descend",
    "embed",
    "fit_members",
    "get_rule",
    "minibatches",
    "predict_proba",
    "seed_everything",
    "selection_rule",
    "stream",
    "to_float",
]
