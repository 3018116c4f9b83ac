"""The sensitive classifier d(z) as a cached artifact, with its focus F_d(z) for every row.

Key: (encoder artifact, latent choice, sensitive expression, zeroed dims, recipe, seed); no
target, so every task with the same sensitive group reuses it. d and z are frozen, so d's
focus is a fixed per-sample vector: computed once here, reused by every DVGE step, epoch and
eta (DESIGN section 9).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairbench.data.base import TaskData
from fairbench.encoders.base import Latents
from fairbench.methods.families.latent.codes import split_groups
from fairbench.methods.families.latent.explanation import FOCI
from fairbench.methods.families.latent.recipe import DTYPES, Recipe, arithmetic
from fairbench.nets.stacked import StackedMLP, member_features
from fairbench.train.stacked import FitResult, accuracy, fit_stacked


@dataclass
class SensitiveClassifier:
    model: StackedMLP
    focus: dict[str, np.ndarray]  # convention (logit | loss) -> (N, z_dim) F_d(z) of every row
    val_acc: float
    test_acc: float
    selected_epoch: int
    folder: Path
    built_now: bool


def zero_dims(codes: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    out = codes.copy()
    out[:, list(dims)] = 0.0
    return out


def sensitive_dims(codes: np.ndarray, g: np.ndarray, train: np.ndarray, count: int) -> tuple[int, ...]:
    """The `count` dimensions most correlated (|Pearson r|) with the group on the train split."""
    z, s = codes[train].astype(np.float64), g[train].astype(np.float64)
    z = z - z.mean(0)
    s = s - s.mean()
    denominator = np.sqrt((z**2).sum(0) * (s**2).sum()) + 1e-12
    r = np.abs(z.T @ s) / denominator
    return tuple(int(i) for i in np.argsort(-r, kind="stable")[:count])


def sensitive_classifier(
    data: TaskData,
    latents: Latents,
    latent: str,
    recipe: Recipe,
    ctx: Any,
    removed: tuple[int, ...] = (),
) -> SensitiveClassifier:
    """Train (or load) d on the codes (with `removed` dims zeroed) to predict data.g.

    120 epochs by default, Adam lr 1e-5 (0.5, 0.9), batch 64, checkpoint of best validation
    accuracy. `ctx` is a RunContext.
    """
    return sensitive_classifiers([data], [latents], latent, recipe, [ctx], removed)[0]


def sensitive_classifiers(
    tasks: Sequence[TaskData],
    latents: Sequence[Latents],
    latent: str,
    recipe: Recipe,
    ctxs: Sequence[Any],
    removed: tuple[int, ...] = (),
) -> list[SensitiveClassifier]:
    """`sensitive_classifier` for several encoders (one member each: the seeds of a stack): the
    d's not built yet train as one stacked model where their tasks share rows and groups (a
    fixed split), each from its own stream and stored under its own key as if trained alone."""
    keys = []
    for task, codes, ctx in zip(tasks, latents, ctxs, strict=True):
        key = {
            "version": 2,  # 2: both focus conventions stored
            "encoder": codes.key,
            "latent": latent,
            "sensitive": task.sensitive,
            "removed": list(removed),
            "recipe": recipe.__dict__,
            "seed": ctx.seed,
        }
        if (precision := arithmetic(recipe, ctx).precision) != "fp32":  # fp32 keeps its earlier keys
            key["precision"] = precision
        keys.append(key)
    device = ctxs[0].device
    inputs = [
        _tensors(zero_dims(c.codes(latent), removed) if removed else c.codes(latent), task, recipe, device)
        for task, c in zip(tasks, latents, strict=True)
    ]

    def build(missing: list[int]) -> list[Callable[[Path], None]]:
        seeds = ", ".join(str(ctxs[i].seed) for i in missing)
        ctxs[0].log.info(f"training sensitive classifiers for '{tasks[0].sensitive}' (seeds {seeds})")
        builders: dict[int, Callable[[Path], None]] = {}
        for group in split_groups([tasks[i] for i in missing]):
            group = [missing[k] for k in group]
            z = member_features([inputs[i][0] for i in group])
            _, g, rows = inputs[group[0]]
            model = recipe.model(z.shape[-1], len(group), device)
            fit = _train(model, z, g, rows, recipe, [ctxs[i] for i in group])
            for member, i in enumerate(group):
                alone = recipe.model(z.shape[-1], 1, device)
                alone.load_state_dict({name: value[member : member + 1] for name, value in model.state_dict().items()})
                summary = {"val_acc": fit.val_acc[member], "selected_epoch": fit.selected_epoch[member]}
                history = {split: [epoch[member] for epoch in values] for split, values in fit.history.items()}
                builders[i] = functools.partial(_store, alone, inputs[i], summary, history)
        return [builders[i] for i in missing]

    built = ctxs[0].cache.get_many("sensitive_classifier", keys, build)
    out = []
    for (folder, built_now), (z, _, _) in zip(built, inputs, strict=True):
        model = recipe.model(z.shape[1], 1, device)
        model.load_state_dict(torch.load(folder / "classifier.pt", map_location=device, weights_only=True))
        summary = json.loads((folder / "summary.json").read_text())
        out.append(
            SensitiveClassifier(
                model=model,
                focus={name: np.load(folder / f"focus_{name}.npy") for name in FOCI},
                val_acc=summary["val_acc"],
                test_acc=summary["test_acc"],
                selected_epoch=summary["selected_epoch"],
                folder=folder,
                built_now=built_now,
            )
        )
    return out


def _store(
    model: StackedMLP,
    inputs: tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]],
    summary: dict[str, Any],
    history: dict[str, list[float]],
    folder: Path,
) -> None:
    """Write a trained d's artifact: its weights, its focus on every row, its accuracies."""
    z, g, rows = inputs
    for name, focus_fn in FOCI.items():
        chunks = [focus_fn(model, z[None, s : s + 4096])[0] for s in range(0, len(z), 4096)]
        np.save(folder / f"focus_{name}.npy", torch.cat(chunks).cpu().numpy())
    torch.save(model.state_dict(), folder / "classifier.pt")
    summary = {**summary, "test_acc": accuracy(model, z, g, rows["test"]).item()}
    (folder / "summary.json").write_text(json.dumps({**summary, "history": history}, indent=1))


def retrained_accuracy(codes: np.ndarray, data: TaskData, recipe: Recipe, ctx: Any) -> dict[str, float]:
    """Val and test accuracy of a fresh d (same recipe and stream as `sensitive_classifier`)
    trained on `codes` to predict data.g: how much of the group a representation still holds.
    Not cached: the codes are one job's own (an ADT feature encoder)."""
    z, g, rows = _tensors(codes, data, recipe, ctx.device)
    model = recipe.model(z.shape[1], 1, ctx.device)
    _train(model, z, g, rows, recipe, [ctx])
    return {split: accuracy(model, z, g, rows[split]).item() for split in ("val", "test")}


def _tensors(
    codes: np.ndarray, data: TaskData, recipe: Recipe, device: str
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    z = torch.from_numpy(np.ascontiguousarray(codes)).to(device, DTYPES[recipe.precision])
    rows = {split: torch.from_numpy(data.splits[split]).to(device) for split in ("train", "val", "test")}
    return z, torch.from_numpy(data.g).to(device), rows


def _train(
    model: StackedMLP,
    z: torch.Tensor,
    g: torch.Tensor,
    rows: dict[str, torch.Tensor],
    recipe: Recipe,
    ctxs: Sequence[Any],
) -> FitResult:
    """Train d (one member per context, each from its stream) on codes shared (N, D) or per member (M, N, D)."""
    generators = [ctx.stream("sensitive_classifier") for ctx in ctxs]
    model.reset(generators)
    return fit_stacked(
        model,
        z,
        g,
        rows["train"],
        rows["val"],
        generators,
        **recipe.fit_kwargs(),
        log=ctxs[0].log.debug,
        arithmetic=arithmetic(recipe, ctxs[0]),
    )
