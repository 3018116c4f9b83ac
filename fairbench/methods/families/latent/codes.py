"""A task's latent codes on the device, and the one downstream model g trained on them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fairbench.data.base import TaskData
from fairbench.methods.families.latent.recipe import DTYPES, Recipe, arithmetic
from fairbench.nets.stacked import StackedMLP
from fairbench.train.stacked import FitResult, fit_stacked


class TaskTensors:
    """The task on the device: codes, labels, split rows."""

    def __init__(self, data: TaskData, codes: np.ndarray, precision: str, device: str) -> None:
        self.z = torch.from_numpy(np.ascontiguousarray(codes)).to(device, DTYPES[precision])
        self.y = torch.from_numpy(data.y).to(device)
        self.g = torch.from_numpy(data.g).to(device)
        self.rows = {s: torch.from_numpy(data.splits[s]).to(device) for s in ("train", "val", "test")}


def scores_of(model: StackedMLP, z: torch.Tensor, rows: dict[str, torch.Tensor]) -> list[dict[str, np.ndarray]]:
    """Each member's P(y = 1) for the val and test rows (unperturbed codes: shared (N, D) or
    per member (M, N, D)), every member's logits computed once."""
    out: list[dict[str, np.ndarray]] = [{} for _ in range(model.members)]
    for split in ("val", "test"):
        probabilities = torch.softmax(model.logits(z, rows[split]).double(), -1)[..., 1].cpu().numpy()
        for member, scores in zip(out, probabilities, strict=True):
            member[split] = scores
    return out


def fit_downstream(t: TaskTensors, rec: Recipe, ctx: Any) -> tuple[StackedMLP, FitResult]:
    """One g (the Table 3/4 MLP) on the codes `t.z` as they are, from the stream (seed,
    "downstream") that DVGE's members also start from. `ctx` is a RunContext."""
    model = rec.model(t.z.shape[1], 1, ctx.device)
    generator = ctx.stream("downstream")
    model.reset([generator])
    fit = fit_stacked(
        model,
        t.z,
        t.y,
        t.rows["train"],
        t.rows["val"],
        [generator],
        log=ctx.log.debug,
        arithmetic=arithmetic(rec, ctx),
        **rec.fit_kwargs(),
    )
    return model, fit
