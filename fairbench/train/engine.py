"""The training engine: the one loop over minibatches that every trained method runs on.

A `Trainer` is one job's training session. Creating it seeds Python, NumPy and torch from the
job's seed (methods never seed) and starts the data-order stream; it holds the task's tensors on
the device. `Trainer.fit` runs the epochs: shuffled minibatches of the training rows, the
method's `update` on each, then the validation score of the job's selection rule
(fairbench/train/selection.py), the checkpoint of the best epoch, an optional early stop, and one
log line per epoch with the mean losses, the rule's validation values and the epoch kept so far.

The method supplies the model and what one batch does to it (`update`: usually `descend` on a
loss; several optimisers or alternating players are one `update` that steps each), and how the
model scores rows. Losses are accumulated on the device and read once per epoch: no host
synchronisation inside a step.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import torch

from fairbench.data.base import TaskData
from fairbench.errors import FairbenchError
from fairbench.train.seeding import seed_everything
from fairbench.train.selection import Score, Validation, get_rule
from fairbench.train.tensors import as_input, minibatches, to_float

# What one training step returns: the loss, or named losses (the key "loss" is the one descended).
Losses = torch.Tensor | dict[str, torch.Tensor]


class Batch:
    """One minibatch: `positions` into the training rows, `rows` into the task's arrays, and the
    rows' tensors, gathered on first use (or `given`, gathered already: a stacked member's)."""

    def __init__(
        self,
        trainer: Trainer,
        positions: torch.Tensor,
        rows: torch.Tensor,
        given: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.trainer, self.positions, self.rows = trainer, positions, rows
        self.given = given or {}
        self._made: dict[str, torch.Tensor] = {}

    def take(self, name: str) -> torch.Tensor:
        """The batch's rows of the task tensor `name`: x, y, bias or group:<attribute>."""
        if name in self.given:
            return self.given[name]
        if name.startswith("group:"):
            return self.trainer.group(name.removeprefix("group:"))[self.rows]
        return getattr(self.trainer, name)[self.rows]

    def _once(self, name: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        # made once per batch; not functools.cached_property, whose lock (Python 3.11) torch.compile cannot trace
        if name not in self._made:
            self._made[name] = make()
        return self._made[name]

    @property
    def x(self) -> torch.Tensor:
        """Model inputs (images scaled to [0, 1]; channels-last where the trainer says so)."""
        return self._once("x", lambda: self.trainer.arithmetic.layout(as_input(self.take("x"))))

    @property
    def y(self) -> torch.Tensor:
        return self._once("y", lambda: self.take("y"))

    @property
    def bias(self) -> torch.Tensor:
        return self._once("bias", lambda: self.take("bias"))

    def groups(self, attributes: Sequence[str]) -> list[torch.Tensor]:
        """The batch's values of each named sensitive attribute."""
        return [self.take(f"group:{name}") for name in attributes]

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Fit:
    """The result of `Trainer.fit`: the epoch kept (1-based) and one record per epoch (its mean
    losses and the selection rule's validation values)."""

    epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def descend(optimizer: torch.optim.Optimizer, losses: Losses) -> Losses:
    """The ordinary step: zero the gradients, back-propagate the loss, step the optimiser."""
    loss = losses["loss"] if isinstance(losses, dict) else losses
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return losses


PRECISIONS = ("fp32", "tf32", "bf16")
# The oldest torch whose compiler traces the engine's steps (tests/test_compile.py passes on 2.9.1,
# 2.10, 2.11, 2.13): 2.3.1, 2.4.1 and 2.6.0 broke the stacked steps' graph at functional_call under
# vmap and ran them eagerly, and 2.8.0's CPU backend failed to lower them.
COMPILE_TORCH = "2.9"


def check_compile_supported() -> None:
    """Refuse `compile` on a torch whose compiler would not compile the engine's steps."""
    if torch.__version__ < COMPILE_TORCH:
        raise FairbenchError(
            f"compile: needs torch >= {COMPILE_TORCH}; this is torch {torch.__version__}: "
            "upgrade torch, or run without --compile (compile: false)"
        )


class JobContext(Protocol):
    """What a training needs of its job (a method's RunContext has it): where, which seed, its
    log, and the arithmetic (`precision`, one of PRECISIONS; `compile`)."""

    device: str
    seed: int
    log: logging.Logger
    precision: str
    compile: bool


class Arithmetic:
    """A training's arithmetic on its device, the engine's settings that every training loop
    shares (the Trainer's and the encoders'): `precision` (one of PRECISIONS), `compile` (the
    batched training steps compiled, see `compiled`) and, on CUDA, channels-last convolutions.
    Made at the start of a training: it sets the matmul precision, a process-wide switch (a
    worker runs jobs of several settings one after another)."""

    def __init__(self, precision: str, device: str, compile: bool = False) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        if compile:
            check_compile_supported()
        self.precision, self.device, self.compile = precision, device, compile
        # NHWC convolutions run on a GPU's tensor cores without transposes; a CPU keeps NCHW (and its numbers)
        self.channels_last = torch.device(device).type == "cuda"
        set_matmul_precision(precision, device)

    @classmethod
    def of(cls, ctx: JobContext) -> Arithmetic:
        """The arithmetic a job's context asks for."""
        return cls(ctx.precision, ctx.device, ctx.compile)

    def compiled(self, step: Callable[..., Any]) -> Callable[..., Any]:
        """`step` (the forward and loss of a training step) compiled under `compile`, else as is.

        torch.compile fuses the step's kernels and, on CUDA (mode "reduce-overhead"), records
        the forward and backward as CUDA graphs, replayed with one launch each: what a step of
        small networks needs, whose time goes to launching kernels. Shapes are static (a
        smaller last batch compiles once more). A graph's outputs live until its next replay,
        so a loop copies what it keeps across steps."""
        if not self.compile:
            return step
        mode = "reduce-overhead" if torch.device(self.device).type == "cuda" else None
        return torch.compile(step, mode=mode, dynamic=False)

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on the device, channels-last where convolutions are faster so."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of images in the models' memory format (channels-last on CUDA)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast (fp32 master weights) under `bf16`, else the arithmetic as is."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)


class Trainer:
    """One job's training session on `ctx.device`: seeded now from `ctx.seed`, the task's tensors
    on the device (`inputs` in place of the task's x when given)."""

    def __init__(self, data: TaskData, ctx: JobContext, inputs: np.ndarray | None = None) -> None:
        self.data, self.ctx, self.device, self.seed = data, ctx, ctx.device, ctx.seed
        self.arithmetic = Arithmetic.of(ctx)
        self.generator = seed_everything(ctx.seed)
        self._inputs = inputs
        self._groups: dict[str, torch.Tensor] = {}
        self._rows: dict[str, torch.Tensor] = {}
        self._compiled: dict[Callable[..., Any], Callable[..., Any]] = {}

    @cached_property
    def x(self) -> torch.Tensor:
        """The model inputs of every row on the device (`inputs` when given, else the task's x)."""
        return to_float(self.data.x if self._inputs is None else self._inputs, self.device)

    @cached_property
    def y(self) -> torch.Tensor:
        return torch.from_numpy(self.data.y).to(self.device)

    @cached_property
    def bias(self) -> torch.Tensor:
        if self.data.bias is None:
            raise ValueError(f"'{self.data.dataset}' has no bias labels")
        return torch.from_numpy(self.data.bias).to(self.device)

    def group(self, attribute: str) -> torch.Tensor:
        if attribute not in self._groups:
            self._groups[attribute] = torch.from_numpy(self.data.protected[attribute]).to(self.device)
        return self._groups[attribute]

    def rows(self, split: str) -> torch.Tensor:
        """The indices of a split's rows on the device."""
        if split not in self._rows:
            self._rows[split] = torch.from_numpy(self.data.splits[split]).to(self.device)
        return self._rows[split]

    def shares_rows(self, other: Trainer) -> bool:
        """Whether `other` trains on the very same tensors (the same task data and inputs)."""
        return self.data is other.data and self._inputs is other._inputs

    def log(self, message: str) -> None:
        self.ctx.log.info(message)

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on the device, channels-last where convolutions are faster so."""
        return self.arithmetic.place(model)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's arithmetic (see `Arithmetic.autocast`): wrap the forward and loss
        of an `update` in it, never the backward."""
        return self.arithmetic.autocast()

    def compiled(self, step: Callable[..., Any]) -> Callable[..., Any]:
        """`step` (a forward and loss) compiled under the job's `compile` setting (see
        `Arithmetic.compiled`), made once per training."""
        if step not in self._compiled:
            self._compiled[step] = self.arithmetic.compiled(step)
        return self._compiled[step]

    def descend(self, optimizer: torch.optim.Optimizer, loss: Callable[..., Losses], *args: Any) -> Losses:
        """One descent step on `loss(*args)` (a forward and loss, or named losses whose "loss"
        is descended) in the job's arithmetic: under its autocast, compiled where it says so."""
        with self.autocast():
            losses = self.compiled(loss)(*args)
        return descend(optimizer, losses)

    def fit(
        self,
        model: torch.nn.Module,
        update: Callable[[Batch], Losses],
        *,
        epochs: int,
        batch_size: int,
        select: str = "last",
        score_val: Callable[[], np.ndarray] | None = None,
        attributes: Sequence[str] = (),
        train_rows: np.ndarray | None = None,
        batches: Callable[[int], Iterable[torch.Tensor]] | None = None,
        min_batch: int = 1,
        schedulers: Sequence[torch.optim.lr_scheduler.LRScheduler] = (),
        patience: int = 0,
        name: str = "",
    ) -> Fit:
        """Train `model` for `epochs` epochs and load the checkpoint `select` keeps.

        Each epoch draws the positions of the training rows (`train_rows`, default the train
        split) from `batches(n)` (default: one shuffled pass in batches of `batch_size`), skips a
        batch of fewer than `min_batch` rows (batch norm needs two), calls `update`, then steps
        `schedulers`. `score_val()` scores the validation rows for the rule; with `patience` > 0
        training stops after that many epochs without a better score.
        """
        rows = self.rows("train") if train_rows is None else torch.from_numpy(train_rows).to(self.device)
        draw = batches or (lambda n: minibatches(n, batch_size, self.generator))
        checkpoints = Checkpoints(self, select, score_val, attributes, patience, name)
        for epoch in range(1, epochs + 1):
            model.train()
            totals = self._run_epoch(draw(len(rows)), rows, update, min_batch)
            for scheduler in schedulers:
                scheduler.step()
            if checkpoints.end_epoch(model, epoch, epochs, totals):
                break
        return checkpoints.finish(model)

    def _run_epoch(
        self, positions: Iterable[torch.Tensor], rows: torch.Tensor, update: Callable[[Batch], Losses], min_batch: int
    ) -> dict[str, float]:
        """One pass: `update` on every batch; the mean of each named loss over the batches."""
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        for batch_positions in to_device(positions, self.device):
            batch_rows = rows[batch_positions]
            if len(batch_rows) < min_batch:
                continue
            losses = update(Batch(self, batch_positions, batch_rows))
            for key, value in (losses if isinstance(losses, dict) else {"loss": losses}).items():
                value = value.detach()
                sums[key] = sums[key] + value if key in sums else value.clone()  # a graph's output is reused
            steps += 1
        if not steps:
            return {}
        return {key: float(value) / steps for key, value in sums.items()}


class Checkpoints:
    """The selection rule's bookkeeping over one model's epochs: the validation score of each
    epoch, the best epoch and its weights, the log line, the early stop (`patience`)."""

    def __init__(
        self,
        trainer: Trainer,
        select: str,
        score_val: Callable[[], np.ndarray] | None,
        attributes: Sequence[str],
        patience: int,
        name: str,
    ) -> None:
        self.trainer, self.select, self.score_val, self.attributes = trainer, select, score_val, attributes
        self.rule, self.patience, self.name = get_rule(select), patience, name
        self.fit, self.best, self.state, self.stale = Fit(0), None, None, 0
        self.stopped = False

    def end_epoch(self, model: torch.nn.Module, epoch: int, epochs: int, losses: dict[str, float]) -> bool:
        """Score the epoch just trained (`model` is left in eval mode), keep its weights if it is
        the best so far; whether training stops here."""
        model.eval()
        data = self.trainer.data
        score = self.rule.score(Validation(epoch, data, self.score_val or _no_scores, self.attributes))
        if self.best is None or score.key < self.best:
            self.best, self.fit.epoch, self.stale = score.key, epoch, 0
            if self.select != "last":
                self.state = copy.deepcopy(model.state_dict())
        else:
            self.stale += 1
        self.fit.history.append({"epoch": epoch, **losses, **score.values})
        self.trainer.log(_epoch_line(self.name, epoch, epochs, losses, score, self.fit.epoch))
        if self.patience and self.stale >= self.patience:
            prefix = f"{self.name} " if self.name else ""
            self.trainer.log(f"{prefix}early stop: {self.patience} epochs without a better {self.select}")
            self.stopped = True
        return self.stopped

    def finish(self, model: torch.nn.Module) -> Fit:
        """Load the kept epoch's weights into `model` (the last epoch's are in it already)."""
        if self.state is not None:
            model.load_state_dict(self.state)
        return self.fit


def to_device(batches: Iterable[torch.Tensor], device: str) -> list[torch.Tensor]:
    """An epoch's index batches on the device in one copy: a copy from host memory waits for the
    device's queue to drain, so one per step would keep the host from running ahead of the GPU."""
    batches = list(batches)
    if not batches:
        return []
    return list(torch.cat(batches).to(device).split([len(b) for b in batches]))


def set_matmul_precision(precision: str, device: str) -> None:
    """TF32 matmuls and convolutions on CUDA under `tf32` (and `bf16`, whose fp32 parts may as
    well use tensor cores), full fp32 otherwise; set per training, since a worker runs jobs of
    several settings one after another. CPU arithmetic is never changed."""
    if torch.device(device).type != "cuda":
        return
    fast = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = fast
    torch.backends.cudnn.allow_tf32 = fast


def _no_scores() -> np.ndarray:
    raise ValueError("this selection rule scores the validation split: pass score_val")


def _epoch_line(name: str, epoch: int, epochs: int, losses: dict[str, float], score: Score, kept: int) -> str:
    parts = [f"{name + ' ' if name else ''}epoch {epoch}/{epochs}"]
    parts += [f"{key} {value:.4f}" for key, value in losses.items()]
    parts += [f"{key} {value:.4f}" for key, value in score.values.items()]
    parts.append(f"kept epoch {kept}")
    return " | ".join([parts[0], " ".join(parts[1:-1]), parts[-1]]) if len(parts) > 2 else " | ".join(parts)
