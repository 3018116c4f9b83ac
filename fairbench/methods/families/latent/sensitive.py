"""The sensitive classifier d(z) as a cached artifact, with its focus F_d(z) for every row.

Key: (encoder artifact, latent choice, sensitive expression, zeroed dims, recipe, seed); no
target, so every task with the same sensitive group reuses it. d and z are frozen, so d's
focus is a fixed per-sample vector: computed once here, reused by every DVGE step, epoch and
eta (DESIGN section 9).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairbench.data.base import TaskData
from fairbench.encoders.base import Latents
from fairbench.methods.families.latent.explanation import FOCI
from fairbench.methods.families.latent.recipe import DTYPES, Recipe, arithmetic
from fairbench.nets.stacked import StackedMLP
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
    key = {
        "version": 2,  # 2: both focus conventions stored
        "encoder": latents.key,
        "latent": latent,
        "sensitive": data.sensitive,
        "removed": list(removed),
        "recipe": recipe.__dict__,
        "seed": ctx.seed,
    }
    if (precision := arithmetic(recipe, ctx).precision) != "fp32":  # fp32 keeps its earlier keys
        key["precision"] = precision
    codes = zero_dims(latents.codes(latent), removed) if removed else latents.codes(latent)
    z, g, rows = _tensors(codes, data, recipe, ctx.device)
    model = recipe.model(z.shape[1], 1, ctx.device)

    def build(folder: Path) -> None:
        ctx.log.info(f"training sensitive classifier for '{data.sensitive}' -> {folder.name}")
        fit = _train(model, z, g, rows, recipe, ctx)
        for name, focus_fn in FOCI.items():
            chunks = [focus_fn(model, z[None, s : s + 4096])[0] for s in range(0, len(z), 4096)]
            np.save(folder / f"focus_{name}.npy", torch.cat(chunks).cpu().numpy())
        torch.save(model.state_dict(), folder / "classifier.pt")
        test = accuracy(model, z, g, rows["test"]).item()
        summary = {"val_acc": fit.val_acc[0], "test_acc": test, "selected_epoch": fit.selected_epoch[0]}
        (folder / "summary.json").write_text(json.dumps({**summary, "history": fit.history}, indent=1))

    folder, built_now = ctx.cache.get("sensitive_classifier", key, build)
    model.load_state_dict(torch.load(folder / "classifier.pt", map_location=ctx.device, weights_only=True))
    summary = json.loads((folder / "summary.json").read_text())
    return SensitiveClassifier(
        model=model,
        focus={name: np.load(folder / f"focus_{name}.npy") for name in FOCI},
        val_acc=summary["val_acc"],
        test_acc=summary["test_acc"],
        selected_epoch=summary["selected_epoch"],
        folder=folder,
        built_now=built_now,
    )


def retrained_accuracy(codes: np.ndarray, data: TaskData, recipe: Recipe, ctx: Any) -> dict[str, float]:
    """Val and test accuracy of a fresh d (same recipe and stream as `sensitive_classifier`)
    trained on `codes` to predict data.g: how much of the group a representation still holds.
    Not cached: the codes are one job's own (an ADT feature encoder)."""
    z, g, rows = _tensors(codes, data, recipe, ctx.device)
    model = recipe.model(z.shape[1], 1, ctx.device)
    _train(model, z, g, rows, recipe, ctx)
    return {split: accuracy(model, z, g, rows[split]).item() for split in ("val", "test")}


def _tensors(
    codes: np.ndarray, data: TaskData, recipe: Recipe, device: str
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    z = torch.from_numpy(np.ascontiguousarray(codes)).to(device, DTYPES[recipe.precision])
    rows = {split: torch.from_numpy(data.splits[split]).to(device) for split in ("train", "val", "test")}
    return z, torch.from_numpy(data.g).to(device), rows


def _train(
    model: StackedMLP, z: torch.Tensor, g: torch.Tensor, rows: dict[str, torch.Tensor], recipe: Recipe, ctx: Any
) -> FitResult:
    generator = ctx.stream("sensitive_classifier")
    model.reset([generator])
    return fit_stacked(
        model,
        z,
        g,
        rows["train"],
        rows["val"],
        [generator],
        **recipe.fit_kwargs(),
        log=ctx.log.debug,
        arithmetic=arithmetic(recipe, ctx),
    )
