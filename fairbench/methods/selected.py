"""Shared loop of the fair-representation methods (VFAE, ALFR): Adam on a per-minibatch loss for
a number of epochs, keeping the epoch that GRAD's validation rule (or `acc` / `last`) picks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fairbench.bounds import POSITIVE, POSITIVE_INT
from fairbench.data.base import TaskData
from fairbench.errors import FairbenchError
from fairbench.methods.base import HParam, RunContext
from fairbench.methods.branched import PROTECT, selection_score
from fairbench.train import minibatches, train_with_selection

SELECTION = ("disc", "acc", "last")


def training_hparams(epochs: int, lr: float, batch_size: int) -> dict[str, HParam]:
    """The hyperparameters of the shared loop, with per-method defaults."""
    return {
        "epochs": HParam(epochs, "training epochs", bound=POSITIVE_INT),
        "lr": HParam(lr, "Adam learning rate", bound=POSITIVE),
        "batch_size": HParam(batch_size, "minibatch size", bound=POSITIVE_INT),
        "select": HParam(
            "disc",
            "checkpoint selection on validation: disc (lowest mean discrimination over the protected "
            "attributes, ties by accuracy; GRAD) | acc | last",
            SELECTION,
        ),
        "protect": PROTECT,
    }


def require_binary(method: str, data: TaskData) -> None:
    if data.n_classes != 2:
        raise FairbenchError(f"method '{method}' needs a binary target; '{data.target}' has {data.n_classes} classes")


def fit_selected(
    model: torch.nn.Module,
    params: dict,
    data: TaskData,
    ctx: RunContext,
    generator: torch.Generator,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    val_scores: Callable[[], np.ndarray],
    attributes: list[str],
) -> int:
    """Train `model` on `batch_loss(train rows)` (a scalar) and load the selected epoch's
    weights; returns that epoch. `val_scores()` scores the validation rows."""
    optimiser = torch.optim.Adam(model.parameters(), lr=params["lr"])
    train = torch.from_numpy(data.splits["train"]).to(ctx.device)

    def train_epoch(epoch: int) -> None:
        for batch in minibatches(len(train), params["batch_size"], generator):
            loss = batch_loss(train[batch.to(ctx.device)])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

    def score(epoch: int) -> tuple[float, ...]:
        return selection_score(params["select"], epoch, val_scores, data, attributes)

    epoch, _ = train_with_selection(model, params["epochs"], train_epoch, score, ctx.log.info)
    return epoch
