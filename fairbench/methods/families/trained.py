"""The base of every method trained on minibatches: the framework's engine (fairbench/train)
owns the loop, the seed, the device and the checkpoint selection; the method supplies the model,
the loss of one batch and how the model scores rows.

    class MyMethod(TrainedMethod):
        name = "my_method"
        description = "..."
        hparams = training_hparams(epochs=20, lr=1e-3, batch_size=128, select="acc")

        def build(self, t: Trainer) -> nn.Module:
            return nn.Sequential(nn.Linear(t.data.x.shape[1], 2))

        def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
            return F.cross_entropy(model(batch.x), batch.y)

The defaults: Adam on `lr` (and `beta1`/`beta2` when declared), one shuffled pass per epoch in
batches of `batch_size`, `select` from the selection registry, scores from the softmax of the
model's (first) output. Override `optimizer`, `update` (several optimisers or players),
`batches`, `scorer` or `outcome` where a method differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from fairbench.bounds import POSITIVE, POSITIVE_INT
from fairbench.data.base import TaskData, TaskShape
from fairbench.errors import FairbenchError
from fairbench.methods.base import HParam, Method, Outcome, RunContext, Work, check_stack
from fairbench.train import (
    SELECTION_RULES,
    Batch,
    Fit,
    Losses,
    Member,
    Trainer,
    Unstackable,
    fit_members,
    get_rule,
    minibatches,
    predict_proba,
)

# Scores of a split's rows ("val", "test", "train") from the model as it is when the scorer is made.
Scorer = Callable[[str], np.ndarray]

# Which sensitive attributes an adversarial method protects (GRAD Table 2's -R / -G variants).
PROTECT = HParam((), "the sensitive attributes (expressions, as in the suite) that get an attribute branch; empty: all")


def select_param(default: str, *rules: str) -> HParam:
    """The `select` hyperparameter accepting `rules` (names in fairbench.train.SELECTION_RULES)."""
    unknown = [rule for rule in (default, *rules) if rule not in SELECTION_RULES]
    if unknown or default not in rules:
        raise ValueError(f"select_param: {unknown or default!r} (rules: {', '.join(SELECTION_RULES)})")
    described = "; ".join(f"{rule}: {SELECTION_RULES[rule].help}" for rule in rules)
    return HParam(default, f"checkpoint selection on validation. {described}", rules)


def training_hparams(
    epochs: int, lr: float, batch_size: int, select: str = "disc", rules: tuple[str, ...] = ("disc", "acc", "last")
) -> dict[str, HParam]:
    """The engine's hyperparameters with per-method defaults: epochs, Adam's learning rate, the
    minibatch size, the selection rule and the protected attributes."""
    return {
        "epochs": HParam(epochs, "training epochs", bound=POSITIVE_INT),
        "lr": HParam(lr, "Adam learning rate", bound=POSITIVE),
        "batch_size": HParam(batch_size, "minibatch size", bound=POSITIVE_INT),
        "select": select_param(select, *rules),
        "protect": PROTECT,
    }


def protected_attributes(data: TaskData, protect: tuple[str, ...]) -> list[str]:
    """The task's sensitive attributes named by `protect` (all of them when it is empty)."""
    for name in protect:
        if name not in data.protected:
            raise FairbenchError(
                f"protect: '{name}' is not a sensitive attribute of this experiment; its sensitive attributes "
                f"are {', '.join(repr(n) for n in data.protected)}"
            )
    return list(protect) or list(data.protected)


def require_binary(method: str, data: TaskData) -> None:
    if data.n_classes != 2:
        raise FairbenchError(f"method '{method}' needs a binary target; '{data.target}' has {data.n_classes} classes")


# The networks small enough that one leaves a GPU idle: stacking members fills it.
SMALL_NETWORKS = frozenset({"grad", "mlp3", "dvge"})


class TrainedMethod(Method):
    """A method the engine trains: implement `build` and `loss` (see the module docstring).

    `stacks_seeds = True` (with numeric `stackable` parameters, e.g. ("lam",)) lets the engine
    train the seeds and grid points of one small network as one batched model (fairbench/train/
    members.py): for a method that keeps the engine's `update` and whose `loss` reads the varying
    parameters as tensors and runs under torch.func.vmap (no Python branch on a tensor's value, no
    state kept between batches, no random draw). tests/test_members.py checks every such method
    stacked against solo.
    """

    # Batches with fewer rows are skipped (2 for networks with batch norm).
    min_batch: ClassVar[int] = 1

    @classmethod
    def stacks(cls, params: dict[str, Any]) -> bool:
        return cls.stacks_seeds and params.get("arch") in SMALL_NETWORKS

    def work(self, shape: TaskShape) -> list[Work] | None:
        """`epochs_trained` passes over the training rows of its `arch` on this input shape."""
        if "arch" not in self.params or shape.input is None:
            return None
        workload = f"train:{self.params['arch']}@{shape.input_name}"
        return [Work(workload, self.epochs_trained() * shape.train_rows, stackable=type(self).stacks(self.params))]

    def epochs_trained(self) -> float:
        """Passes over the training rows a job makes, in units of one network's epoch."""
        return float(self.params["epochs"])

    def build(self, t: Trainer) -> nn.Module:
        """The model (all of the method's networks in one module), built after the engine has seeded."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> Losses:
        """The loss of one batch, or named losses whose "loss" is descended (the rest are logged)."""
        raise NotImplementedError

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        p = self.params
        return torch.optim.Adam(model.parameters(), lr=p["lr"], betas=(p.get("beta1", 0.9), p.get("beta2", 0.999)))

    def update(self, model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer) -> Losses:
        """What one batch does to the model: by default one descent step on `loss` (compiled
        under the job's `compile` setting)."""
        return batch.trainer.descend(optimizer, self.loss, model, batch)

    def schedulers(self, optimizer: torch.optim.Optimizer) -> list[torch.optim.lr_scheduler.LRScheduler]:
        """Learning-rate schedules stepped after every epoch (none by default)."""
        return []

    def batches(self, t: Trainer, n: int) -> Iterable[torch.Tensor]:
        """Positions into the n training rows for each step of one epoch: one shuffled pass."""
        return minibatches(n, self.params["batch_size"], t.generator)

    def attributes(self, data: TaskData) -> list[str]:
        """The sensitive attributes the method protects (`protect`; all when it is empty or absent)."""
        return protected_attributes(data, tuple(self.params.get("protect", ())))

    def inputs(self, data: TaskData) -> np.ndarray | None:
        """The model's input rows when they are not the task's x (e.g. x beside s); None: x."""
        return None

    def check(self, data: TaskData) -> None:
        """Refuse a task the method cannot train on, before anything is built."""
        if get_rule(self.params.get("select", "last")).needs_bias:
            data.require_bias(self.name)

    def scorer(self, model: nn.Module, t: Trainer) -> Scorer:
        """How the model scores a split's rows: class probabilities of its (first) output."""

        def score(split: str) -> np.ndarray:
            with t.autocast():
                return predict_proba(model, t.x[t.rows(split)])

        return score

    def prepare(self, data: TaskData, ctx: RunContext) -> tuple[nn.Module, Trainer]:
        """Seed (the engine's Trainer), then build and place the model: its initial weights."""
        self.check(data)
        t = Trainer(data, ctx, inputs=self.inputs(data))
        return t.place(self.build(t)), t

    def train(self, data: TaskData, ctx: RunContext) -> tuple[nn.Module, Trainer, Fit]:
        """Seed, build, train with the engine; the selected checkpoint is loaded."""
        model, t = self.prepare(data, ctx)
        p = self.params
        return model, t, self.fit_alone(model, t, epochs=p["epochs"], select=p.get("select", "last"))

    def fit_alone(self, model: nn.Module, t: Trainer, *, epochs: int, select: str, name: str = "") -> Fit:
        """`epochs` epochs of the engine's loop with a fresh optimiser; the checkpoint `select`
        keeps is loaded."""
        optimizer = self.optimizer(model)
        return t.fit(
            model,
            lambda batch: self.update(model, batch, optimizer),
            epochs=epochs,
            batch_size=self.params["batch_size"],
            select=select,
            score_val=lambda: self.scorer(model, t)("val"),
            attributes=self.attributes(t.data),
            batches=lambda n: self.batches(t, n),
            min_batch=self.min_batch,
            schedulers=self.schedulers(optimizer),
            name=name,
        )

    def outcome(self, model: nn.Module, t: Trainer, fit: Fit) -> Outcome:
        """The job's outcome from the trained model: val and test scores, the epoch kept."""
        scorer = self.scorer(model, t)
        return Outcome(scores={split: scorer(split) for split in ("val", "test")}, info={"selected_epoch": fit.epoch})

    def run(self, data: TaskData, ctx: RunContext) -> Outcome:
        return self.outcome(*self.train(data, ctx))

    def stacked_loss(self, model: nn.Module, batch: Batch, values: dict[str, torch.Tensor]) -> Losses:
        """`loss` with a member's values of the stackable parameters (0-d tensors under vmap)."""
        params = self.params
        self.params = {**params, **values}
        try:
            return self.loss(model, batch)
        finally:
            self.params = params

    @classmethod
    def run_stacked(cls, params: list[dict[str, Any]], data: list[TaskData], ctxs: list[RunContext]) -> list[Outcome]:
        """Members of a method that `stacks` train as one batched model (`train_stacked`), each
        seeded, built, checkpointed and scored as when trained alone; one by one otherwise, or
        where their data differ in shape."""
        check_stack(cls, params, ctxs)
        if not all(cls.stacks(p) for p in params):
            return super().run_stacked(params, data, ctxs)
        methods = [cls(p) for p in params]
        prepared = [m.prepare(d, ctx) for m, d, ctx in zip(methods, data, ctxs, strict=True)]
        try:
            return cls.train_stacked(methods, prepared)
        except Unstackable as reason:
            ctxs[0].log.info(f"{len(params)} members trained one by one: {reason}")
            return super().run_stacked(params, data, ctxs)

    @classmethod
    def train_stacked(cls, methods: list[TrainedMethod], prepared: list[tuple[nn.Module, Trainer]]) -> list[Outcome]:
        """What `run` does, for members prepared (seeded and built) one by one and trained
        together; a method of several stages overrides it with one `fit_together` per stage."""
        p = methods[0].params
        fits = cls.fit_together(methods, prepared, epochs=p["epochs"], select=p.get("select", "last"))
        return [m.outcome(model, t, fit) for m, (model, t), fit in zip(methods, prepared, fits, strict=True)]

    @classmethod
    def fit_together(
        cls,
        methods: list[TrainedMethod],
        prepared: list[tuple[nn.Module, Trainer]],
        *,
        epochs: int,
        select: str,
        name: str = "",
    ) -> list[Fit]:
        """`fit_alone` for every member at once (fit_members): each member's model is left at
        its checkpoint. Raises Unstackable before training where the members' data differ."""
        members = [
            Member(
                trainer=t,
                model=model,
                values={key: m.params[key] for key in cls.stackable},
                score_val=lambda m=m, model=model, t=t: m.scorer(model, t)("val"),
                batches=lambda n, m=m, t=t: m.batches(t, n),
                name=" ".join(filter(None, [name, _member_name(m.params, t.seed, cls.stackable)])),
            )
            for m, (model, t) in zip(methods, prepared, strict=True)
        ]
        template = methods[0]
        return fit_members(
            members,
            template.stacked_loss,
            template.optimizer,
            epochs=epochs,
            select=select,
            attributes=template.attributes(prepared[0][1].data),
            min_batch=cls.min_batch,
            schedulers=template.schedulers,
        )


def _member_name(params: dict[str, Any], seed: int, stackable: tuple[str, ...]) -> str:
    """How a stacked member's log lines name it: its seed and stackable values."""
    return " ".join([f"seed {seed}", *(f"{key} {params[key]:g}" for key in stackable)])
