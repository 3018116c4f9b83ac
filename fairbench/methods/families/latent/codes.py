"""A task's latent codes on the device, and the one downstream model g trained on them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fairbench.data.base import TaskData
from fairbench.methods.families.latent.recipe import DTYPES, Recipe, arithmetic
from fairbench.nets.stacked import StackedMLP, member_features
from fairbench.train.stacked import FitResult, fit_stacked


class TaskTensors:
    """The task on the device: codes, labels, split rows."""

    def __init__(self, data: TaskData, codes: np.ndarray, precision: str, device: str) -> None:
        self.z = torch.from_numpy(np.ascontiguousarray(codes)).to(device, DTYPES[precision])
        self.y = torch.from_numpy(data.y).to(device)
        self.g = torch.from_numpy(data.g).to(device)
        self.rows = {s: torch.from_numpy(data.splits[s]).to(device) for s in ("train", "val", "test")}


def split_groups(tasks: list[TaskData]) -> list[list[int]]:
    """Indices of `tasks` grouped by their split rows, targets and groups (tasks of one fixed
    split, whatever their seeds, fall in one group): models of one group can train as one stack."""
    groups: list[list[int]] = []
    for index, task in enumerate(tasks):
        for group in groups:
            first = tasks[group[0]]
            if (
                np.array_equal(first.y, task.y)
                and np.array_equal(first.g, task.g)
                and all(np.array_equal(first.splits[s], task.splits[s]) for s in ("train", "val", "test"))
            ):
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


def scores_of(model: StackedMLP, z: torch.Tensor, rows: dict[str, torch.Tensor]) -> list[dict[str, np.ndarray]]:
    """Each member's P(y = 1) for the val and test rows (unperturbed codes: shared (N, D) or
    per member (M, N, D)), every member's logits computed once."""
    out: list[dict[str, np.ndarray]] = [{} for _ in range(model.members)]
    for split in ("val", "test"):
        probabilities = torch.softmax(model.logits(z, rows[split]).double(), -1)[..., 1].cpu().numpy()
        for member, scores in zip(out, probabilities, strict=True):
            member[split] = scores
    return out


def fit_downstream(
    tensors: list[TaskTensors], rec: Recipe, ctxs: list[Any]
) -> tuple[StackedMLP, FitResult, torch.Tensor]:
    """The g (the Table 3/4 MLP) of several members as one stacked model, member m on the codes
    `tensors[m].z` as they are (the members share a split: `split_groups`), each from its stream
    (seed, "downstream") that DVGE's members also start from; returns the model, its fit and
    the codes (shared (N, D) for one member, else (M, N, D)). `ctxs` are RunContexts."""
    first = tensors[0]
    z = member_features([t.z for t in tensors])
    model = rec.model(first.z.shape[1], len(tensors), ctxs[0].device)
    generators = [ctx.stream("downstream") for ctx in ctxs]
    model.reset(generators)
    fit = fit_stacked(
        model,
        z,
        first.y,
        first.rows["train"],
        first.rows["val"],
        generators,
        log=ctxs[0].log.debug,
        arithmetic=arithmetic(rec, ctxs[0]),
        **rec.fit_kwargs(),
    )
    return model, fit, z
