"""Seeded index splits shared by the datasets' protocols."""

from __future__ import annotations

import numpy as np


def stratified_split(strata: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Split row indices into parts of the given fractions, stratified by `strata`.

    Every stratum is shuffled with a generator seeded by `seed` and cut by the fractions,
    so part sizes match the fractions within one row per stratum. Indices come back sorted.
    """
    if abs(sum(fractions.values()) - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    for value in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == value))
        bounds = np.round(np.cumsum(list(fractions.values())) * len(rows)).astype(int)
        for name, start, stop in zip(fractions, np.r_[0, bounds[:-1]], bounds):
            parts[name].append(rows[start:stop])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def carve_validation(
    train: np.ndarray, strata: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Take a stratified validation part out of a fixed training range."""
    inner = stratified_split(strata[train], {"train": 1 - fraction, "val": fraction}, seed)
    return train[inner["train"]], train[inner["val"]]
