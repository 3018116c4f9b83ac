"""LfF, GroupDRO and DomainInd: their update rules by hand, and a training run on a tiny task."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from contexts import run_context
from torch import nn

from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.errors import FairbenchError
from fairbench.methods.base import RunContext
from fairbench.methods.domain_ind import DomainHeads
from fairbench.methods.group_dro import group_losses, update_group_weights
from fairbench.methods.lff import LossAverage, generalized_cross_entropy
from fairbench.registry import METHODS
from fairbench.train import Batch, Trainer, Validation, get_rule


def test_group_dro_weights_move_toward_the_worst_group() -> None:
    q = torch.full((3,), 1 / 3)
    losses = torch.tensor([0.5, 2.0, 0.5])
    new = update_group_weights(q, losses, eta=0.1)
    expected = np.exp(0.1 * np.array([0.5, 2.0, 0.5]))
    assert torch.allclose(new, torch.tensor(expected / expected.sum(), dtype=new.dtype))
    assert new[1] > q[1] and new[0] < q[0] and new[2] < q[2]
    assert float(new.sum()) == pytest.approx(1.0)


def test_group_losses_average_each_group_and_leave_absent_groups_at_zero() -> None:
    losses = torch.tensor([1.0, 3.0, 4.0, 2.0])
    groups = torch.tensor([0, 0, 2, 2])
    assert group_losses(losses, groups, 4).tolist() == [2.0, 0.0, 3.0, 0.0]


def test_worst_group_selection_breaks_ties_by_the_mean_cell_accuracy() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    bias = np.array([0, 0, 1, 1, 1, 0])
    scores = np.array([0.2, 0.7, 0.9, 0.8, 0.3, 0.9])  # P(y = 1): correct on rows 0, 3, 5
    # cells (0,0): 1/2, (0,1): 0/1, (1,1): 1/2, (1,0): 1/1
    data = SimpleNamespace(dataset="toy", y=y, bias=bias, splits={"val": np.arange(6)})
    validation = Validation(1, data, lambda: scores)
    assert get_rule("worst").score(validation).key == pytest.approx((-0.0, -0.5))
    assert get_rule("unbiased").score(validation).key == pytest.approx((-0.5,))


def test_gce_equals_its_formula_and_its_gradient_is_p_y_q_times_cross_entropys() -> None:
    q = 0.7
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], requires_grad=True)
    y = torch.tensor([0, 2])
    p_y = np.array([np.exp(2.0) / np.exp([2.0, 0.5, -1.0]).sum(), np.exp(0.3) / np.exp([0.1, 0.2, 0.3]).sum()])
    gce = generalized_cross_entropy(logits, y, q)
    assert np.allclose(gce.detach().numpy(), (1 - p_y**q) / q)

    (gce_grad,) = torch.autograd.grad(gce.sum(), logits)
    (ce_grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), logits)
    assert torch.allclose(gce_grad, torch.tensor(p_y**q, dtype=torch.float32)[:, None] * ce_grad, atol=1e-6)


def test_loss_average_starts_at_the_first_loss_then_moves_by_alpha_and_is_normalised_per_class() -> None:
    y = torch.tensor([0, 0, 1, 1, 1])
    average = LossAverage(y, train=torch.tensor([0, 1, 2, 3]), n_classes=2, alpha=0.7)
    average.update(torch.tensor([0, 1, 2, 3]), torch.tensor([1.0, 2.0, 4.0, 1.0]))
    average.update(torch.tensor([0, 2]), torch.tensor([3.0, 0.0]))
    # row 0: 0.7 * 1 + 0.3 * 3 = 1.6; row 2: 0.7 * 4 = 2.8; rows 1, 3 keep their first loss
    assert torch.allclose(average.value[:4], torch.tensor([1.6, 2.0, 2.8, 1.0]))
    # class maxima over the training rows: 2.0 (class 0), 2.8 (class 1)
    rows = torch.tensor([0, 1, 2, 3])
    assert torch.allclose(average.normalised(rows, y[rows]), torch.tensor([0.8, 1.0, 1.0, 1 / 2.8]))


def test_domain_ind_inference_sums_the_heads() -> None:
    torch.manual_seed(0)
    n_domains, k = 3, 4
    net = nn.Linear(5, n_domains * k)
    x = torch.randn(6, 5)
    heads = [x @ net.weight[d * k : (d + 1) * k].T + net.bias[d * k : (d + 1) * k] for d in range(n_domains)]
    with torch.no_grad():
        summed = DomainHeads(net, n_domains, k, "logits")(x)
        mean_probability = torch.softmax(DomainHeads(net, n_domains, k, "probabilities")(x), dim=1)
    assert torch.allclose(summed, sum(heads), atol=1e-6)
    assert torch.allclose(mean_probability, sum(torch.softmax(h, dim=1) for h in heads) / n_domains, atol=1e-6)


def test_domain_ind_trains_each_head_only_on_its_domain(tmp_path: Path) -> None:
    method = METHODS.get("domain_ind")(METHODS.get("domain_ind").resolve({}, "paper"))
    task = toy_task()
    method.check(task)
    net = nn.Linear(task.x.shape[1], method.n_bias * 3)
    model = DomainHeads(net, method.n_bias, 3, "logits")
    rows = torch.from_numpy(np.flatnonzero(task.bias == 0)[:3])  # three rows of domain 0
    method.loss(model, Batch(Trainer(task, run_context(tmp_path)), rows, rows)).backward()
    assert net.weight.grad[:3].abs().sum() > 0
    assert net.weight.grad[3:].abs().sum() == 0


def toy_task(bias: str | None = "s") -> TaskData:
    """The synthetic dataset's 3-class `grade` target, biased by the group `s` (2 values)."""
    return build_task(open_dataset("synthetic", options={"n": 600}), None, "grade", "s", seed=0, bias=bias)


def context(tmp_path) -> RunContext:
    return run_context(tmp_path)


@pytest.mark.parametrize("name", ["lff", "group_dro", "domain_ind"])
def test_each_method_trains_and_returns_class_probabilities(name: str, tmp_path) -> None:
    data = toy_task()
    cls = METHODS.get(name)
    outcome = cls(cls.resolve({"epochs": 3, "batch_size": 32}, "paper")).run(data, context(tmp_path))
    for split in ("val", "test"):
        scores = outcome.scores[split]
        assert scores.shape == (len(data.splits[split]), 3)
        assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["group_dro", "domain_ind"])
def test_methods_that_train_on_bias_labels_say_how_to_give_them(name: str, tmp_path) -> None:
    cls = METHODS.get(name)
    with pytest.raises(FairbenchError, match="`bias:` key"):
        cls(cls.resolve({"epochs": 1}, "paper")).run(toy_task(bias=None), context(tmp_path))
