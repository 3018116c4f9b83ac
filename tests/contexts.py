"""What tests give a method's `run` directly (outside the runner): a context and a small task."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from fairbench.artifacts import ArtifactCache
from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.methods.base import RunContext


def run_context(root: Path, seed: int = 0, log: logging.Logger | None = None) -> RunContext:
    """A CPU job's context whose artifact cache and working folder are `root`."""
    return RunContext("cpu", seed, ArtifactCache(root), log or logging.getLogger("test"), root)


def synthetic_task(sensitive: str = "s", target: str = "y") -> TaskData:
    """The 300-row synthetic task (split seed 0)."""
    return build_task(open_dataset("synthetic", None, {"n": 300}), None, target, sensitive, 0)


def step_noise(trainer: Any, batch_size: int) -> dict[str, torch.Tensor]:
    """One training step's random draws for an encoder trainer (`EncoderTrainer.noise`), from
    the global generator."""
    draw = {"normal": torch.randn, "uniform": torch.rand}
    return {name: draw[kind](shape) for name, (kind, shape) in trainer.noise(batch_size).items()}
