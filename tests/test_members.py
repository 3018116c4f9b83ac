"""Stacked members (fairbench/train/members.py): every method that stacks seeds, trained as one
batched model, gives each member the numbers it gets alone.

In float32 a batched matmul rounds differently from a plain one, and Adam turns the rounding of
a gradient that is exactly zero in theory (a linear bias before batch norm) into steps of the
learning rate's size, so float32 members agree only to about 1e-3 after a few epochs. The
comparison therefore runs in float64, where rounding is far below what a mistake (a member
reading another's batch, weights or values) would show: there the outputs agree to float32's
resolution."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from contexts import run_context

from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.methods.families.latent import LatentCodeMethod
from fairbench.methods.families.trained import SMALL_NETWORKS, TrainedMethod
from fairbench.registry import METHODS

# The methods that stack seeds (the latent-code methods stack their encoders:
# tests/test_encoder_stacking.py)
STACKING = sorted(
    name
    for name in METHODS.names()
    if METHODS.get(name).stacks_seeds and not issubclass(METHODS.get(name), LatentCodeMethod)
)

# REPAIR's default threshold keeps a different number of rows per seed, and ERM on training sets
# of different sizes trains one by one (tested below)
SETTINGS = {"repair": {"resample": "reweight"}}


def _task(seed: int, n: int = 200) -> TaskData:
    return build_task(open_dataset("synthetic", None, {"n": n}), None, "y", "s", seed, "s")


def _params(cls: type[TrainedMethod], **values: Any) -> dict[str, Any]:
    """Two quick epochs of 4 batches on the method's default network where it is small and not DVGE's
    1000-wide MLPs (tested once, below), else GRAD's."""
    arch = cls.hparams["arch"].default
    epochs = {name: 2 for name in cls.hparams if name.endswith("epochs")}  # every stage's
    values = {"arch": arch if arch in SMALL_NETWORKS - {"dvge"} else "grad", **epochs, "batch_size": 32, **values}
    return cls.resolve({**SETTINGS.get(cls.name, {}), **values}, "quick")


def _grid(cls: type[TrainedMethod]) -> list[dict[str, float]]:
    """Two values of every stackable parameter that its bound admits (the members' values differ
    in each)."""

    def admitted(name: str) -> list[float]:
        bound = cls.hparams[name].bound
        return [v for v in (0.3, 2.0, 0.7) if bound is None or bound.admits(v)][:2]

    return [dict(zip(cls.stackable, values, strict=True)) for values in zip(*map(admitted, cls.stackable))] or [{}]


def _assert_same(stacked: Any, solo: Any) -> None:
    for split in ("val", "test"):
        np.testing.assert_allclose(stacked.scores[split], solo.scores[split], rtol=0, atol=1e-6)
    assert stacked.info == solo.info
    assert [(r.split, r.metric, r.tags) for r in stacked.metrics] == [(r.split, r.metric, r.tags) for r in solo.metrics]
    np.testing.assert_allclose([r.value for r in stacked.metrics], [r.value for r in solo.metrics], atol=1e-6)


def test_some_methods_stack_and_keep_the_engines_step() -> None:
    assert {"erm", "adt", "grad_pred", "gba", "domain_ind", "filter_drop", "repair"} <= set(STACKING)
    for name in STACKING:
        cls = METHODS.get(name)
        if not issubclass(cls, TrainedMethod):
            continue  # REPAIR: its own two stages (run_stacked)
        # fit_members runs the engine's step on the method's loss: an own `update` would be skipped
        assert cls.update is TrainedMethod.update, f"{name} overrides update and cannot stack"


# A stack's members: (parameters, seed); the tasks by seed.
Members = list[tuple[dict[str, Any], int]]


def _run_stacked(
    cls: type[TrainedMethod],
    members: Members,
    tasks: dict[int, TaskData],
    root: Path,
    log: logging.Logger | None = None,
) -> list:
    params, seeds = zip(*members, strict=True)
    return cls.run_stacked(list(params), [tasks[s] for s in seeds], [run_context(root, s, log) for s in seeds])


class _Lines(logging.Handler):
    """A log (at INFO) whose messages a test reads."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.log = logging.getLogger(name)
        self.log.setLevel(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> _Lines:
        self.log.addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        self.log.removeHandler(self)


def _assert_stacked_equals_solo(
    cls: type[TrainedMethod], members: Members, tasks: dict[int, TaskData], root: Path
) -> None:
    with _Lines(f"stack {cls.name}") as lines:
        outcomes = _run_stacked(cls, members, tasks, root, lines.log)
    # a stack that fell back to training one by one would pass trivially
    assert lines.lines and not [line for line in lines.lines if "one by one" in line]
    for (params, seed), outcome in zip(members, outcomes, strict=True):
        _assert_same(outcome, cls(params).run(tasks[seed], run_context(root, seed)))


@pytest.mark.parametrize("name", STACKING)
def test_stacked_members_equal_solo_runs(name: str, tmp_path: Path, float64: None) -> None:
    cls = METHODS.get(name)
    tasks = {seed: _task(seed) for seed in (0, 1)}
    # seeds x grid: each member its own data (stacked tensors); one seed's grid: shared tensors
    for seeds in ((0, 1), (1,)):
        members = [(_params(cls, **values), seed) for values in _grid(cls) for seed in seeds]
        _assert_stacked_equals_solo(cls, members, tasks, tmp_path)


@pytest.mark.parametrize("arch", sorted(SMALL_NETWORKS - {"grad"}))
def test_every_small_network_stacks(arch: str, tmp_path: Path, float64: None) -> None:
    cls = METHODS.get("erm")
    members = [(_params(cls, arch=arch), seed) for seed in (0, 1)]
    _assert_stacked_equals_solo(cls, members, {seed: _task(seed, n=100) for seed in (0, 1)}, tmp_path)


@pytest.mark.parametrize(("name", "arch"), [("gba", "mlp3"), ("adt", "dvge")])
def test_image_members_stack(name: str, arch: str, tmp_path: Path, float64: None) -> None:
    """uint8 images gathered per member and scaled in the member's batch; GBA's mask and DVGE's
    Table 3 convolutions under vmap."""
    cls = METHODS.get(name)
    images = open_dataset("synthetic_images", None, {"n": 80})
    tasks = {seed: build_task(images, None, "Attractive", "Male", seed) for seed in (0, 1)}
    members = [(_params(cls, arch=arch, lam=lam), seed) for lam in (0.3, 2.0) for seed in (0, 1)]
    _assert_stacked_equals_solo(cls, members, tasks, tmp_path)


def test_members_of_different_shapes_train_one_by_one(tmp_path: Path) -> None:
    cls = METHODS.get("erm")
    params = [_params(cls)] * 2
    tasks = [_task(0), _task(0, n=240)]
    stacked = cls.run_stacked(params, tasks, [run_context(tmp_path, 0)] * 2)
    for p, task, outcome in zip(params, tasks, stacked, strict=True):
        solo = cls(p).run(task, run_context(tmp_path, 0))
        for split in ("val", "test"):
            np.testing.assert_array_equal(outcome.scores[split], solo.scores[split])


def test_members_whose_batches_differ_train_one_by_one(tmp_path: Path) -> None:
    from fairbench.methods.erm import ERM
    from fairbench.train import Trainer, minibatches

    class Uneven(ERM):
        """ERM whose seed 1 draws batches of another size."""

        def batches(self, t: Trainer, n: int) -> Iterator[torch.Tensor]:
            return minibatches(n, 32 if t.seed == 0 else 48, t.generator)

    members = [(_params(Uneven), seed) for seed in (0, 1)]
    tasks = {seed: _task(seed) for seed in (0, 1)}
    for (params, seed), outcome in zip(members, _run_stacked(Uneven, members, tasks, tmp_path), strict=True):
        solo = Uneven(params).run(tasks[seed], run_context(tmp_path, seed))
        for split in ("val", "test"):
            np.testing.assert_array_equal(outcome.scores[split], solo.scores[split])


def test_repair_task_models_of_different_sizes_train_one_by_one_after_a_stacked_minimax(
    tmp_path: Path, float64: None
) -> None:
    cls = METHODS.get("repair")
    params = _params(cls, resample="threshold")
    tasks = {seed: _task(seed) for seed in (0, 1)}
    with _Lines("repair threshold") as lines:
        outcomes = _run_stacked(cls, [(params, 0), (params, 1)], tasks, tmp_path, lines.log)
    assert [o.info["kept_rows"] for o in outcomes][0] != [o.info["kept_rows"] for o in outcomes][1]
    assert "minimax seed 1 epoch 2/2" in "\n".join(lines.lines)
    assert [line for line in lines.lines if "one by one: the members' train rows differ in shape" in line]
    for seed, outcome in enumerate(outcomes):
        _assert_same(outcome, cls(params).run(tasks[seed], run_context(tmp_path, seed)))


def test_stacked_members_differ_from_each_other(tmp_path: Path, float64: None) -> None:
    """The equality above is not that of identical members: seeds and values change the numbers."""
    cls = METHODS.get("adt")
    members = [(_params(cls, lam=lam), seed) for lam in (0.3, 2.0) for seed in (0, 1)]
    outcomes = _run_stacked(cls, members, {seed: _task(seed) for seed in (0, 1)}, tmp_path)
    scores = [o.scores["test"] for o in outcomes]
    assert all(not np.allclose(a, b) for i, a in enumerate(scores) for b in scores[i + 1 :])


STACKED_SUITE = """\
name: stacked
seeds: [0, 1]
budget: quick
experiments:
  - {dataset: synthetic, target: y, sensitive: s, options: {n: 300}}
methods:
  - method: erm
    params: {arch: dvge, epochs: 2, batch_size: 32}
  - method: adt
    params: {arch: dvge, epochs: 2, batch_size: 32}
    grid: {lam: [0.5, 2.0]}
  - method: ffvae
    params: {encoder_iters: 10, epochs: 2, sens_epochs: 2, width: 16, encoder: {width: 16, batch_size: 32}}
    grid: {alpha: [1.0, 4.0]}
"""


def test_a_run_stacks_seeds_and_grid_points_and_records_each_job(tmp_path: Path, fairbench) -> None:
    import pandas as pd

    suite = tmp_path / "stacked.yaml"
    suite.write_text(STACKED_SUITE)
    tables = {}
    for mode in ("on", "off"):
        out = tmp_path / mode
        result = fairbench("run", suite, "--results", out, "--device", "cpu", "--stack", mode)
        assert result.code == 0, result.err
        tables[mode] = pd.read_csv(out / "results.csv").sort_values(["job_id", "split", "metric"], ignore_index=True)
    on, off = tables["on"], tables["off"]
    assert len(on) == len(off) > 0 and list(on["job_id"]) == list(off["job_id"]) and on["job_id"].nunique() == 10
    # float32: the members' rounding differs from solo runs' (the float64 tests above are exact);
    # here it moved calibration by under 0.01 and no prediction
    np.testing.assert_allclose(on["value"], off["value"], atol=0.02)
    logs = [path.read_text() for path in (tmp_path / "on" / "logs").glob("*.log")]
    assert sum("unit of 4 job(s): adt synthetic/y/s seed=0,1 split_seed=0,1" in log for log in logs) == 4
    assert sum("unit of 2 job(s): erm synthetic/y/s seed=0,1 split_seed=0,1" in log for log in logs) == 2
    assert all("seed 1 lam 2 epoch 2/2" in log for log in logs if "adt" in log)
    # FFVAE's 2 seeds x 2 alphas: one stack of four encoders, then one g per seed's split
    assert sum("unit of 4 job(s): ffvae synthetic/y/s seed=0,1 split_seed=0,1" in log for log in logs) == 4
    assert all("ffvae x4 [seed 1 alpha 4.0] 10/10" in log for log in logs if "ffvae" in log)


def test_a_network_with_one_tensor_under_two_names_is_not_stacked(tmp_path: Path) -> None:
    from torch import nn

    from fairbench.train import Member, Trainer, Unstackable, fit_members

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)
            self.b.weight = self.a.weight

    t = Trainer(_task(0), run_context(tmp_path))
    member = Member(t, Tied(), {}, lambda: np.zeros(0), lambda n: iter(()))
    with pytest.raises(Unstackable, match="two names"):
        fit_members([member, member], lambda model, batch, values: torch.zeros(()), torch.optim.SGD, epochs=1)


def test_auto_stacks_seeds_on_a_gpu_and_trains_them_one_by_one_on_a_cpu(tmp_path: Path) -> None:
    from fairbench.plan import expand
    from fairbench.runner import plan_units
    from fairbench.suite import load_suite

    suite = tmp_path / "stacked.yaml"
    suite.write_text(STACKED_SUITE)
    jobs = expand(load_suite(suite)[0])
    assert [len(unit) for unit in plan_units(jobs, "auto", "cuda:1")] == [2, 4, 4]
    assert [len(unit) for unit in plan_units(jobs, "auto", "cpu")] == [1] * 10
