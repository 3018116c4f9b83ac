"""`compile` (fairbench.train.Arithmetic.compiled): the training steps compiled with
torch.compile give the numbers they give eagerly, up to the rounding of fused kernels.

On a CPU torch.compile generates C++ (inductor), so these tests compile for real; the CUDA graphs
of mode "reduce-overhead" need a GPU (bench/bench_gpu.py measures them there). Compiling takes
seconds per graph, hence the small networks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from contexts import run_context

from fairbench import predictions
from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.encoders import resolve_encoder
from fairbench.encoders.training import train_encoder, train_encoders
from fairbench.errors import FairbenchError
from fairbench.registry import METHODS
from fairbench.train import Arithmetic
from fairbench.train.engine import COMPILE_TORCH

# torch releases before COMPILE_TORCH run (the refusal is tested below); these need the compiler
compiles = pytest.mark.skipif(
    torch.__version__ < COMPILE_TORCH, reason=f"compiling the engine's steps needs torch >= {COMPILE_TORCH}"
)


def _run_stacked(name: str, params: dict[str, Any], tasks: list[TaskData], root: Path, compile: bool) -> list:
    cls = METHODS.get(name)
    ctxs = [dataclasses.replace(run_context(root, seed), compile=compile) for seed in range(len(tasks))]
    return cls.run_stacked([cls.resolve(params, "quick")] * len(tasks), tasks, ctxs)


def _graphs_compiled() -> int:
    """Graphs torch.compile captured since the last call (so a test sees its run compiled)."""
    from torch._dynamo.utils import counters

    captured = counters["stats"]["unique_graphs"]
    counters.clear()
    return captured


def _close(compiled: list, eager: list, atol: float) -> None:
    for a, b in zip(compiled, eager, strict=True):
        for split in ("val", "test"):
            np.testing.assert_allclose(a.scores[split], b.scores[split], rtol=0, atol=atol)


@compiles
def test_uncompiled_steps_are_the_functions_themselves() -> None:
    def step() -> None: ...

    assert Arithmetic("fp32", "cpu").compiled(step) is step
    assert Arithmetic("fp32", "cpu", compile=True).compiled(step) is not step


@compiles
def test_compiled_stacked_members_train_as_eager_ones(tmp_path: Path, float64: None) -> None:
    """fit_members: GBA's loss (a torch.func.grad inside, the mask) under vmap, compiled."""
    images = open_dataset("synthetic_images", None, {"n": 80})
    tasks = [build_task(images, None, "Attractive", "Male", seed, "Male") for seed in (0, 1)]
    params = {"arch": "mlp3", "epochs": 2, "batch_size": 32}
    _graphs_compiled()
    runs = [_run_stacked("gba", params, tasks, tmp_path / str(c), compile=c) for c in (True, False)]
    assert _graphs_compiled() > 0
    _close(*runs, atol=1e-6)


@compiles
def test_a_compiled_solo_training_trains_as_an_eager_one(tmp_path: Path, float64: None) -> None:
    """The engine's step alone (Trainer.fit, TrainedMethod.update): GBA's loss compiled on a Batch."""
    task = build_task(open_dataset("synthetic_images", None, {"n": 80}), None, "Attractive", "Male", 0, "Male")
    cls = METHODS.get("gba")
    params = cls.resolve({"arch": "mlp3", "epochs": 2, "batch_size": 32}, "quick")
    _graphs_compiled()
    runs = [[cls(params).run(task, dataclasses.replace(run_context(tmp_path, 0), compile=c))] for c in (True, False)]
    assert _graphs_compiled() > 0
    _close(*runs, atol=1e-6)


@compiles
def test_compiled_encoders_and_dvge_train_as_eager_ones(tmp_path: Path, float64: None) -> None:
    """The encoders stacked (FactorVAE: two phases, the permutation) and alone, then DVGE's d and
    g (fit_stacked, the perturbation) on their codes."""
    task = build_task(open_dataset("synthetic", None, {"n": 120}), None, "y", "s", 0)
    config = resolve_encoder({"name": "factor_vae", "width": 16, "batch_size": 16})
    _graphs_compiled()
    stacked = {c: train_encoders([task] * 2, [config] * 2, 6, [0, 1], "cpu", print, "fp32", c) for c in (True, False)}
    alone = {c: train_encoder(task, config, 6, 0, "cpu", print, "fp32", c) for c in (True, False)}
    assert _graphs_compiled() >= 4  # each phase's loss, stacked and alone
    for compiled, eager in [*zip(stacked[True], stacked[False], strict=True), (alone[True], alone[False])]:
        for (name, got), expected in zip(compiled[0].state_dict().items(), eager[0].state_dict().values(), strict=True):
            np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=1e-9, err_msg=name)
    params = {
        "encoder_iters": 6,
        "epochs": 2,
        "sens_epochs": 2,
        "width": 16,
        "encoder": {"name": "factor_vae", "width": 16, "batch_size": 16},
    }
    runs = [_run_stacked("dvge", params, [task, task], tmp_path / str(c), compile=c) for c in (True, False)]
    assert _graphs_compiled() > 0
    _close(*runs, atol=1e-6)


SUITE = """\
name: compiled
seeds: [0, 1]
budget: quick
stack: on
experiments:
  - {dataset: synthetic, target: y, sensitive: s, options: {n: 200}}
methods:
  - method: erm
    params: {arch: grad, epochs: 2, batch_size: 32}
"""


@compiles
@pytest.mark.parametrize("how", [("--compile",), ("--set", "compile=true")])
def test_a_run_compiles_when_told_and_keeps_the_job_ids(how: tuple[str, ...], tmp_path: Path, fairbench) -> None:
    suite = tmp_path / "compiled.yaml"
    suite.write_text(SUITE)
    tables = {}
    for mode, flags in (("compiled", how), ("eager", ())):
        out = tmp_path / mode
        result = fairbench("run", suite, "--results", out, "--device", "cpu", *flags)
        assert result.code == 0, result.err
        tables[mode] = pd.read_csv(out / "results.csv").sort_values(["job_id", "split", "metric"], ignore_index=True)
        logs = "".join(path.read_text() for path in (out / "logs").glob("*.log"))
        assert ("on cpu, steps compiled" in logs) == (mode == "compiled")
    assert list(tables["compiled"]["job_id"]) == list(tables["eager"]["job_id"])
    # the kept scores, not the metrics: after two epochs every score is near 0.5, where float32
    # rounding (1e-3 here) flips predictions and moves accuracy by whole rows
    for job_id in tables["eager"]["job_id"].unique():
        compiled, eager = (predictions.load(tmp_path / mode, job_id) for mode in ("compiled", "eager"))
        for split in ("val", "test"):
            np.testing.assert_allclose(compiled[split].scores, eager[split].scores, rtol=0, atol=1e-2)


def test_an_older_torch_is_refused_in_one_line_before_anything_runs(
    tmp_path: Path, fairbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before COMPILE_TORCH, torch.compile ran the stacked steps eagerly (2.3 to 2.6, measured)
    or failed to lower them (2.8 on a CPU): `compile` says so instead of pretending."""
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion("2.8.0+cpu"))
    with pytest.raises(FairbenchError, match=f"compile: needs torch >= {COMPILE_TORCH}; this is torch 2.8.0"):
        Arithmetic("fp32", "cpu", compile=True)
    assert Arithmetic("fp32", "cpu").compiled(len) is len  # eager runs as before
    suite = tmp_path / "compiled.yaml"
    suite.write_text(SUITE)
    result = fairbench("run", suite, "--results", tmp_path / "out", "--device", "cpu", "--compile")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        f"error: compile: needs torch >= {COMPILE_TORCH}; this is torch 2.8.0+cpu: upgrade torch, or run without "
        "--compile (compile: false)"
    ]
    assert not (tmp_path / "out").exists()  # nothing written
    assert fairbench("run", suite, "--results", tmp_path / "eager", "--device", "cpu").code == 0
