"""`fairbench data describe`: group sizes, base rates and the task's inherent bias per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fairbench.data.base import check_task, open_dataset
from fairbench.metrics import dp_perfect


def describe_task(
    dataset: str,
    target: str,
    sensitive: str,
    protocol: str | None,
    seed: int,
    data_dir: Path | None,
    options: dict[str, Any],
    split: str = "all",
) -> list[dict[str, Any]]:
    """One row per split: sizes, group sizes, base rates P(y=1 | g) and dp_perfect.

    Needs only the attribute table, never the model inputs (images stay undecoded). Only the
    split asked for must have rows and both groups ("all": the whole table), so a partial
    download can be described; with "all", an empty split shows n = 0 and NaN rates."""
    task = check_task(open_dataset(dataset, data_dir, options), protocol, target, sensitive, seed, check=(split,))
    protocol, y, g, splits = task.protocol, task.y, next(iter(task.protected.values())), task.splits
    parts = {"all": np.arange(len(y)), **splits} if split == "all" else {split: splits[split]}
    rows = []
    for name, index in parts.items():
        yy, gg = y[index], g[index]
        rows.append(
            {
                "split": name,
                "protocol": protocol,
                "n": int(len(index)),
                "n_group1": int(gg.sum()),
                "n_group0": int(len(gg) - gg.sum()),
                "base_rate": float(yy.mean()) if len(yy) else float("nan"),
                "base_rate_group1": float(yy[gg == 1].mean()) if gg.any() else float("nan"),
                "base_rate_group0": float(yy[gg == 0].mean()) if (gg == 0).any() else float("nan"),
                "dp_perfect": dp_perfect(yy, gg),
            }
        )
    return rows


def describe_columns(
    dataset: str, data_dir: Path | None, options: dict[str, Any], seed: int = 0
) -> list[dict[str, Any]]:
    """One row per column usable in targets and sensitive expressions: its type, number of
    distinct values and a few example values (reads the attribute table only)."""
    opened = open_dataset(dataset, data_dir, options)
    frame = opened.frame(seed)
    rows = []
    for column in opened.column_names():
        values = frame[column]
        examples = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values.dropna().unique()[:4])
        rows.append(
            {"column": column, "type": str(values.dtype), "distinct": int(values.nunique()), "examples": examples}
        )
    return rows
