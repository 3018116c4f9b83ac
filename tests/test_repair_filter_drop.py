"""REPAIR and Filter-Drop: their core steps against hand computations, and runs on a tiny task."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from contexts import run_context, synthetic_task
from torch import nn

from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.errors import FairbenchError
from fairbench.methods.filter_drop import FilterDrop, FilterDropNet, bias_scores, filters_to_drop
from fairbench.methods.repair import Repair, kept_rows, representation, weighted_terms


def test_repair_weighted_loss_and_entropy_match_a_hand_count() -> None:
    # w = sigmoid(theta) = 1/2, 3/4, 1/4: z = w / mean(w) = 1, 3/2, 1/2; class weight 1/2 vs 1 -> q = 1/3, 2/3.
    w = torch.sigmoid(torch.tensor([0.0, math.log(3), -math.log(3)]))
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3)], [math.log(3), 0.0]])
    y = torch.tensor([0, 1, 1])
    loss, entropy = weighted_terms(logits, y, w, w, torch.tensor([0.5, 1.0]))
    # CE per row: ln 2, -ln 3/4, -ln 1/4.
    assert loss.item() == pytest.approx((math.log(2) + 1.5 * math.log(4 / 3) + 0.5 * math.log(4)) / 3)
    assert entropy.item() == pytest.approx((math.log(3) + 1.5 * math.log(3 / 2) + 0.5 * math.log(3 / 2)) / 3)


def test_repair_weights_move_against_the_bias_classifier(tmp_path: Path) -> None:
    # Two classes, bias = class on 90% of the rows; phi = one-hot bias.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    aligned = rng.random(400) < 0.9
    bias = np.where(aligned, y, 1 - y)
    # Classifier lr 1e-2, not the paper's 1e-3: 400 rows make 4 steps an epoch, not the paper's ~550.
    task = dataclasses.replace(synthetic_task(), y=y, bias=bias, splits={"train": np.arange(400)})
    repair = Repair(Repair.resolve({"repair_epochs": 100, "repair_lr": 1e-2}, "paper"))
    w, final_bias = repair.learn_weights(task, run_context(tmp_path)).weights()
    # Unweighted, the best bias classifier (class = bias) is right on the aligned rows: B = 1 - h(0.1) / ln 2.
    before = 1 - (-(0.1 * math.log(0.1) + 0.9 * math.log(0.9))) / math.log(2)
    assert before == pytest.approx(0.531, abs=1e-3)
    assert final_bias < 0.05 < before
    assert w[~aligned].mean() > 0.5 > w[aligned].mean()
    # That classifier's accuracy on the weighted set is the aligned rows' share of the weight.
    assert w[aligned].sum() / w.sum() < 0.6 < aligned.mean()


def test_repair_minimax_takes_the_jobs_precision_alone_and_stacked(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 150)
    bias = np.where(rng.random(300) < 0.9, y, 1 - y)
    task = dataclasses.replace(synthetic_task(), y=y, bias=bias, splits={"train": np.arange(300)})
    params = Repair.resolve({"repair_epochs": 20, "repair_lr": 1e-2}, "paper")

    def contexts(precision: str) -> list:
        return [dataclasses.replace(run_context(tmp_path, seed), precision=precision) for seed in (0, 1)]

    alone = {p: Repair(params).learn_weights(task, contexts(p)[0]).weights()[0] for p in ("fp32", "bf16")}
    stacked = Repair.learn_weights_stacked([Repair(params), Repair(params)], [task, task], contexts("bf16"))
    w = stacked[0].weights()[0]
    assert not np.array_equal(alone["bf16"], alone["fp32"])  # bf16 autocast reaches the minimax alone
    # ... as it does in a stack: a bf16 member is nearer the bf16 game alone than the fp32 one
    assert np.abs(w - alone["bf16"]).max() < np.abs(w - alone["fp32"]).max()


def test_repair_final_steps_keep_the_rows_their_rule_says() -> None:
    w = np.array([0.9, 0.2, 0.6, 0.5, 0.01])
    np.testing.assert_array_equal(kept_rows(w, "threshold", 0.5, np.random.default_rng(0)), [0, 2])
    draws = np.random.default_rng(1).random(5)
    np.testing.assert_array_equal(kept_rows(w, "sample", 0.5, np.random.default_rng(1)), np.flatnonzero(draws < w))
    drawn = kept_rows(w, "reweight", 0.5, np.random.default_rng(2))
    assert len(drawn) == 5 and set(drawn) <= {0, 1, 2, 3, 4}
    many = np.concatenate([kept_rows(w, "reweight", 0.5, np.random.default_rng(s)) for s in range(4000)])
    np.testing.assert_allclose(np.bincount(many, minlength=5) / len(many), w / w.sum(), atol=0.02)


def test_repair_representations_are_the_one_hot_bias_or_the_channel_maxima() -> None:
    data = _grades()
    np.testing.assert_array_equal(representation(data, "bias"), np.eye(2)[data.bias])
    with pytest.raises(FairbenchError, match="needs images"):
        representation(data, "color")
    image = np.zeros((1, 3, 2, 2), dtype=np.uint8)
    image[0, :, 1, 0] = [255, 51, 0]  # the stroke's colour
    image[0, 1, 0, 1] = 102
    data.x = image
    np.testing.assert_allclose(representation(data, "color"), [[1.0, 0.4, 0.0]])


def _linear(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def _drop_net() -> FilterDropNet:
    # Four filters = the inputs; the bias head reads filters 0 (strongly) and 1 (weakly).
    task = _linear([[3.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]], [0.0, 0.0])
    bias = _linear([[0.5, 0.1, 0.0, 0.0], [-0.5, -0.1, 0.0, 0.0]], [0.0, 0.0])
    return FilterDropNet(nn.Identity(), task, bias, 4)


def test_filter_drop_scores_filters_by_the_bias_heads_sensitivity() -> None:
    net = _drop_net()
    f = torch.tensor([[1.0, 2.0, 5.0, 1.0], [2.0, -1.0, 0.0, 3.0]])
    b = torch.tensor([0, 1])
    # Two-class linear head: d log p(b | f) / d f = (W_b - W_other) (1 - p(b | f)), W_0 - W_1 = (1, 0.2, 0, 0).
    margin = (f[:, 0] + 0.2 * f[:, 1]) * torch.tensor([1.0, -1.0])  # logit of b minus the other's
    grad = torch.tensor([[1.0, 0.2, 0.0, 0.0]]) * torch.tensor([[1.0], [-1.0]]) * torch.sigmoid(-margin)[:, None]
    expected = (f * grad).abs().mean(dim=0)
    scores = bias_scores(net, f, b)
    torch.testing.assert_close(scores, expected)
    assert scores[2] == scores[3] == 0 and scores[0] > scores[1] > 0
    assert filters_to_drop(scores, 0.25).tolist() == [0]
    assert sorted(filters_to_drop(scores, 0.5).tolist()) == [0, 1]


def test_filter_drop_zeroes_exactly_the_dropped_filters() -> None:
    net = _drop_net()
    x = torch.tensor([[1.0, 7.0, 0.5, 2.0], [0.2, -3.0, 0.1, 0.0]])
    before, _ = net(x)
    assert before.argmax(dim=1).tolist() == [0, 0]
    net.drop(torch.tensor([0]))
    assert net.keep.tolist() == [0.0, 1.0, 1.0, 1.0]
    task, attribute = net(x)
    # Class head by hand on (0, x1, x2, x3): logits (x2, x3); the bias head sees only filter 0.
    torch.testing.assert_close(task, torch.stack([x[:, 2], x[:, 3]], dim=1))
    torch.testing.assert_close(attribute, torch.stack([0.5 * x[:, 0], -0.5 * x[:, 0]], dim=1))
    assert task.argmax(dim=1).tolist() == [1, 0]


def _grades(bias: str | None = "s") -> TaskData:
    """A generated 3-class task (synthetic's `grade`), biased by the group s."""
    return build_task(open_dataset("synthetic", None, {"n": 400}), None, "grade", "s", 0, bias=bias)


TINY = {"arch": "grad", "epochs": 2, "batch_size": 64}


@pytest.mark.parametrize(
    ("method", "params"),
    [
        (Repair, {"repair_epochs": 5, "repair_lr": 1e-2, "resample": "reweight"}),
        (FilterDrop, {"attribute_epochs": 2, "drop": 0.25}),
    ],
    ids=["repair", "filter_drop"],
)
def test_methods_return_class_probabilities_on_a_three_class_task(method, params, tmp_path: Path) -> None:
    data = _grades()
    outcome = method(method.resolve({**TINY, **params}, "paper")).run(data, run_context(tmp_path))
    for split in ("val", "test"):
        scores = outcome.scores[split]
        assert scores.shape == (len(data.splits[split]), 3)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    if method is FilterDrop:
        assert len(outcome.info["dropped_filters"]) == 10  # a quarter of the grad trunk's 40 units
    else:
        assert outcome.info["kept_rows"] == len(data.splits["train"])


@pytest.mark.parametrize("method", [Repair, FilterDrop], ids=["repair", "filter_drop"])
def test_methods_without_a_bias_label_say_to_give_the_bias_key(method, tmp_path: Path) -> None:
    with pytest.raises(FairbenchError, match=r"`bias:` key"):
        method(method.resolve(TINY, "paper")).run(_grades(bias=None), run_context(tmp_path))


def test_repair_threshold_that_keeps_nothing_says_what_to_change(tmp_path: Path) -> None:
    params = Repair.resolve({**TINY, "repair_epochs": 1, "threshold": 1.0}, "paper")
    with pytest.raises(FairbenchError, match="lower `threshold` or use resample: reweight"):
        Repair(params).run(_grades(), run_context(tmp_path))
