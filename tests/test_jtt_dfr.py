"""JTT's error set and upsampling, DFR's balanced last-layer refit: their defining steps, and
that neither trains on group labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from contexts import run_context, synthetic_task

from fairbench.methods.dfr import DFR, balanced_subsample, worst_cell_accuracy
from fairbench.methods.jtt import JTT, upsampled_order

TINY = {"epochs": 3, "batch_size": 64}


def test_jtt_upsamples_each_error_row_lambda_up_times() -> None:
    order = upsampled_order(10, np.array([2, 7]), 5, torch.Generator().manual_seed(0))
    counts = np.bincount(order.numpy(), minlength=10)
    assert counts[2] == counts[7] == 5 and (np.delete(counts, [2, 7]) == 1).all() and len(order) == 18


def test_jtt_error_set_is_the_identification_models_mistakes(tmp_path: Path) -> None:
    data = synthetic_task()
    method = JTT(JTT.resolve({**TINY, "id_epochs": 1, "select": "last"}, "paper"))
    outcome = method.run(data, run_context(tmp_path))
    assert 0 < outcome.info["error_set"] < len(data.splits["train"])
    assert outcome.scores["test"].shape == (len(data.splits["test"]),)


def test_jtt_and_dfr_never_read_the_training_rows_groups(tmp_path: Path) -> None:
    """Groups of the training rows shuffled: the same model (groups serve validation only)."""
    data = synthetic_task()
    train = data.splits["train"]
    shuffled = {name: g.copy() for name, g in data.protected.items()}
    for g in shuffled.values():
        g[train] = np.random.default_rng(1).permutation(g[train])
    other = dataclasses.replace(data, protected=shuffled, g=shuffled[next(iter(shuffled))])
    for method in (
        JTT(JTT.resolve({**TINY, "select": "last"}, "paper")),
        DFR(DFR.resolve({**TINY, "retrains": 2}, "paper")),
    ):
        first = method.run(data, run_context(tmp_path)).scores["test"]
        again = type(method)(method.params).run(other, run_context(tmp_path)).scores["test"]
        np.testing.assert_array_equal(first, again)


def test_dfr_balances_the_cells_and_scores_the_worst_one() -> None:
    cells = np.array([0] * 10 + [1] * 3 + [2] * 6 + [3] * 4)
    rows = balanced_subsample(cells, np.random.default_rng(0))
    assert np.bincount(cells[rows]).tolist() == [3, 3, 3, 3] and len(set(rows)) == 12
    y = np.array([0, 0, 1, 1])
    assert worst_cell_accuracy(np.array([0, 1, 1, 1]), y, np.array([0, 0, 1, 1])) == 0.5


def test_dfr_fits_its_last_layer_on_validation_with_a_c_from_the_grid(tmp_path: Path) -> None:
    outcome = DFR(DFR.resolve({**TINY, "retrains": 2}, "paper")).run(synthetic_task(), run_context(tmp_path))
    assert outcome.info["dfr_c"] in DFR.hparams["c_grid"].default
    assert ((outcome.scores["test"] >= 0) & (outcome.scores["test"] <= 1)).all()


def test_dfr_needs_every_cell_in_validation(tmp_path: Path) -> None:
    data = synthetic_task()
    val = data.splits["val"]
    y = data.y.copy()
    y[val] = 0  # no positive validation row
    with pytest.raises(Exception, match="lacks a \\(class, group\\) cell"):
        DFR(DFR.resolve({**TINY, "retrains": 2}, "paper")).run(dataclasses.replace(data, y=y), run_context(tmp_path))
