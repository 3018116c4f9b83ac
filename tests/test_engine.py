"""The training engine: seeding, minibatches, checkpoint selection, early stop, the epoch log,
several players, and the selection-rule registry every method's `select` is named from."""

from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from contexts import run_context, synthetic_task
from torch import nn

from fairbench.errors import FairbenchError
from fairbench.methods import TrainedMethod, training_hparams
from fairbench.registry import METHODS
from fairbench.train import SELECTION_RULES, Batch, Trainer, descend, get_rule

FAMILIES = ("methods.families.trained", "methods.families.branched", "methods.families.classifier")


class Linear(TrainedMethod):
    """The smallest engine-trained method: logistic regression on x."""

    name = "linear_test"
    description = "logistic regression (test)"
    hparams = training_hparams(epochs=6, lr=0.05, batch_size=32, select="acc")

    def build(self, t: Trainer) -> nn.Module:
        return nn.Linear(t.data.x.shape[1], 2)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(model(batch.x), batch.y)


def _fit(tmp_path: Path, **params: object) -> tuple[nn.Module, Trainer, object]:
    method = Linear(Linear.resolve(params, "paper"))
    return method.train(synthetic_task(), run_context(tmp_path))


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    method = Linear(Linear.resolve({}, "paper"))
    first = method.train(synthetic_task(), run_context(tmp_path, seed=1))[0].weight
    again = Linear(method.params).train(synthetic_task(), run_context(tmp_path, seed=1))[0].weight
    other = Linear(method.params).train(synthetic_task(), run_context(tmp_path, seed=2))[0].weight
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_the_kept_checkpoint_is_the_best_validation_epoch_and_its_weights_are_loaded(tmp_path: Path) -> None:
    model, t, fit = _fit(tmp_path, epochs=8)
    accuracies = [epoch["val_acc"] for epoch in fit.history]
    assert len(accuracies) == 8 and fit.epoch == int(np.argmax(accuracies)) + 1  # earliest of the best
    scores = Linear(Linear.resolve({}, "paper")).scorer(model, t)("val")
    val = t.data.splits["val"]
    assert ((scores > 0.5) == t.data.y[val]).mean() == pytest.approx(accuracies[fit.epoch - 1])


def test_last_scores_nothing_and_keeps_the_final_epoch(tmp_path: Path) -> None:
    _, _, fit = _fit(tmp_path, epochs=3, select="last")
    assert fit.epoch == 3 and all("val_acc" not in epoch for epoch in fit.history)


def test_early_stop_after_patience_epochs_without_a_better_score(tmp_path: Path) -> None:
    t = Trainer(synthetic_task(), run_context(tmp_path))
    model = nn.Linear(t.data.x.shape[1], 2)
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # nothing changes: no epoch after the first is better

    def update(batch: Batch) -> torch.Tensor:
        return descend(frozen, F.cross_entropy(model(batch.x), batch.y))

    def score() -> np.ndarray:
        return torch.softmax(model(t.x[t.rows("val")]), 1)[:, 1].detach().numpy()

    fit = t.fit(model, update, epochs=20, batch_size=64, select="acc", score_val=score, patience=3)
    assert fit.epoch == 1 and len(fit.history) == 4


def test_batches_cover_the_training_rows_once_and_small_ones_are_skipped(tmp_path: Path) -> None:
    t = Trainer(synthetic_task(), run_context(tmp_path))
    n = len(t.data.splits["train"])
    seen: list[torch.Tensor] = []
    model = nn.Linear(1, 1)

    def update(batch: Batch) -> torch.Tensor:
        seen.append(batch.rows)
        return torch.zeros(())

    t.fit(model, update, epochs=1, batch_size=n - 1)
    assert sorted(torch.cat(seen).tolist()) == sorted(t.data.splits["train"].tolist())
    seen.clear()
    t.fit(model, update, epochs=1, batch_size=n - 1, min_batch=2)  # the lone last row is skipped
    assert len(seen) == 1 and len(seen[0]) == n - 1


def test_several_players_step_their_own_optimisers_and_every_loss_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("engine_test")
    t = Trainer(synthetic_task(), run_context(tmp_path, log=log))
    players = nn.ModuleDict({"a": nn.Linear(t.data.x.shape[1], 2), "b": nn.Linear(t.data.x.shape[1], 2)})
    opt_a = torch.optim.SGD(players["a"].parameters(), lr=0.1)
    b_before = players["b"].weight.detach().clone()

    def update(batch: Batch) -> dict[str, torch.Tensor]:
        loss_a = descend(opt_a, F.cross_entropy(players["a"](batch.x), batch.y))
        with torch.no_grad():  # b only watches this step
            loss_b = F.cross_entropy(players["b"](batch.x), batch.y)
        return {"a": loss_a, "b": loss_b}

    with caplog.at_level(logging.INFO, logger="engine_test"):
        fit = t.fit(players, update, epochs=2, batch_size=50, name="players")
    assert torch.equal(players["b"].weight, b_before)
    assert set(fit.history[0]) == {"epoch", "a", "b"}
    assert fit.history[1]["a"] < fit.history[0]["a"]
    assert caplog.messages[0].startswith("players epoch 1/2 | a ") and caplog.messages[0].endswith("kept epoch 1")


def test_every_methods_select_parameter_names_registered_rules() -> None:
    for name in METHODS.names():
        select = METHODS.get(name).hparams.get("select")
        if select is not None:
            assert select.choices and set(select.choices) <= set(SELECTION_RULES), name
            assert all(rule in select.help for rule in select.choices), name


def test_an_unknown_rule_is_a_one_line_error_with_a_suggestion() -> None:
    with pytest.raises(FairbenchError, match="unknown selection rule 'acx' \\(did you mean 'acc'\\?\\)"):
        get_rule("acx")


def test_methods_train_through_the_engine_not_a_loop_of_their_own() -> None:
    """The engine owns the loop and the seed: no method module (nor the deployed models it
    builds) iterates over minibatches itself or seeds a generator."""
    modules = {inspect.getmodule(METHODS.get(name)) for name in METHODS.names()}
    modules |= {importlib.import_module(f"fairbench.{name}") for name in ("deployed", *FAMILIES)}
    for module in modules:
        source = inspect.getsource(module)
        assert "for batch in minibatches(" not in source and "seed_everything" not in source, module.__name__
        assert "manual_seed" not in source and "default_rng(ctx.seed" not in source, module.__name__


def test_precision_settings_train_and_the_cpu_default_is_fp32(tmp_path: Path) -> None:
    """bf16 autocast runs the same loop (fp32 master weights); fp32 is the default and gives the
    same numbers as before any setting existed; an unknown precision is refused."""
    default = Linear(Linear.resolve({"epochs": 2}, "paper")).train(synthetic_task(), run_context(tmp_path))[0]
    ctx = run_context(tmp_path)
    ctx.precision = "bf16"
    half = Linear(Linear.resolve({"epochs": 2}, "paper")).train(synthetic_task(), ctx)[0]
    assert half.weight.dtype == torch.float32 and not torch.equal(half.weight, default.weight)
    torch.testing.assert_close(half.weight, default.weight, atol=0.05, rtol=0.05)
    ctx.precision = "fp16"
    with pytest.raises(ValueError, match="precision 'fp16'"):
        Trainer(synthetic_task(), ctx)


def test_precision_is_a_suite_key_part_of_non_fp32_job_ids_and_a_results_column(tmp_path: Path) -> None:
    from fairbench.plan import expand
    from fairbench.runner import run_suite
    from fairbench.store import load_results
    from fairbench.suite import load_suite

    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(
        "name: p\nseeds: [0]\nbudget: quick\nexperiments: [{dataset: synthetic, target: y, sensitive: s, "
        "options: {n: 300}}]\nmethods: [{method: erm, params: {epochs: 1}}]\n"
    )
    fp32, _ = load_suite(suite_file)
    bf16, _ = load_suite(suite_file, ["precision=bf16"])
    (job32,), (job16,) = expand(fp32), expand(bf16)
    assert job32.precision == "fp32" and "precision" not in job32.identity()  # ids from before are kept
    assert job16.precision == "bf16" and job16.job_id != job32.job_id
    run_suite(bf16, tmp_path / "out")
    assert set(load_results(tmp_path / "out")["precision"]) == {"bf16"}
