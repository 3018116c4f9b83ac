"""VFAE and ALFR: the MMD penalty, the reversed adversary gradient, end-to-end runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from contexts import run_context

from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.errors import FairbenchError
from fairbench.methods.alfr import ALFR, ALFRNet
from fairbench.methods.vfae import VFAE, group_mmd, mmd
from fairbench.registry import METHODS
from fairbench.train import selection

TINY: dict[str, Any] = {"epochs": 3, "width": 16, "z_dim": 4, "batch_size": 64}


def _task(n: int = 400, target: str = "y", sensitive: str | list[str] = "s") -> TaskData:
    return build_task(open_dataset("synthetic", None, {"n": n}), None, target, sensitive, 0)


def test_mmd_is_zero_for_identical_samples() -> None:
    a = torch.randn(64, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert mmd(a, a).item() == pytest.approx(0.0, abs=1e-12)
    assert mmd(a, a.flip(0)).item() == pytest.approx(0.0, abs=1e-12)


def test_mmd_grows_with_a_mean_shift() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(200, 4, generator=generator, dtype=torch.float64)
    b = torch.randn(200, 4, generator=generator, dtype=torch.float64)
    values = [mmd(a, b + shift).item() for shift in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)]
    assert all(later > earlier for earlier, later in zip(values, values[1:])), values
    # Far apart, the cross term vanishes: MMD^2 tends to mean k(a, a) + mean k(b, b).
    apart = mmd(a, b + 100.0).item()
    assert apart == pytest.approx((mmd(a, a + 100.0).item() + mmd(b, b + 100.0).item()) / 2, rel=1e-9)
    assert values[0] < 0.2 * apart and values[-1] > 0.9 * apart


def test_group_mmd_sums_the_pairs_of_every_attribute() -> None:
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(30, 3, generator=generator, dtype=torch.float64)
    binary = torch.arange(30) % 2
    three = torch.arange(30) % 3
    pairs = mmd(z[three == 0], z[three == 1]) + mmd(z[three == 0], z[three == 2]) + mmd(z[three == 1], z[three == 2])
    expected = mmd(z[binary == 0], z[binary == 1]) + pairs
    assert group_mmd(z, [binary, three]).item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_alfr_adversary_sits_behind_a_reversed_gradient(beta: float) -> None:
    torch.manual_seed(0)
    model = ALFRNet(6, [2], width=8, z_dim=4, beta=beta).double()
    x = torch.randn(20, 6, dtype=torch.float64)
    s = torch.randint(0, 2, (20,))
    encoder = list(model.encoder.parameters())
    adversary = list(model.adversaries[0].parameters())

    _, _, adversary_loss = model.losses(x, torch.zeros(20, dtype=torch.long), [s], "both")
    reversed_grads = torch.autograd.grad(adversary_loss, encoder + adversary)
    plain_loss = F.cross_entropy(model.adversaries[0](model.encoder(x)), s)
    plain_grads = torch.autograd.grad(plain_loss, encoder + adversary)

    for got, plain in zip(reversed_grads[: len(encoder)], plain_grads[: len(encoder)]):
        assert plain.abs().max() > 0
        torch.testing.assert_close(got, -beta * plain)
    # The adversary itself learns to predict s: its gradient is not reversed or scaled.
    for got, plain in zip(reversed_grads[len(encoder) :], plain_grads[len(encoder) :]):
        torch.testing.assert_close(got, plain)


def test_alfr_alternates_its_players() -> None:
    """Edwards & Storkey's alternating steps: the adversary's step moves only the adversary (its
    cross-entropy on z); the encoder's step leaves it frozen and gives the encoder -beta times
    the adversary's gradient, plus the reconstruction's and the predictor's."""
    torch.manual_seed(0)
    beta = 2.5
    model = ALFRNet(6, [2], width=8, z_dim=4, beta=beta).double()
    x, y, s = torch.randn(20, 6, dtype=torch.float64), torch.randint(0, 2, (20,)), torch.randint(0, 2, (20,))
    encoder, adversary = list(model.encoder.parameters()), list(model.adversaries[0].parameters())
    plain = F.cross_entropy(model.adversaries[0](model.encoder(x)), s)

    reconstruction, prediction, loss = model.losses(x, y, [s], "adversary")
    assert reconstruction.item() == prediction.item() == 0
    assert all(g is None for g in torch.autograd.grad(loss, encoder, allow_unused=True))
    wanted = torch.autograd.grad(plain, adversary, retain_graph=True)
    for got, want in zip(torch.autograd.grad(loss, adversary), wanted):
        torch.testing.assert_close(got, want)

    reconstruction, prediction, loss = model.losses(x, y, [s], "encoder")
    assert all(g is None for g in torch.autograd.grad(loss, adversary, allow_unused=True))
    for got, want in zip(torch.autograd.grad(loss, encoder), torch.autograd.grad(plain, encoder)):
        torch.testing.assert_close(got, -beta * want)
    assert reconstruction.item() > 0 and prediction.item() > 0


def test_alfr_has_one_adversary_per_protected_attribute() -> None:
    model = ALFRNet(6, [2, 3], width=8, z_dim=4, beta=1.0)
    _, attributes = model(torch.randn(5, 6))
    assert [logits.shape[1] for logits in attributes] == [2, 3]


@pytest.mark.parametrize(
    ("method", "params"),
    [("vfae", {}), ("vfae", {"head": "logistic"}), ("alfr", {}), ("alfr", {"select": "last"})],
)
def test_trains_end_to_end_and_returns_probabilities(method: str, params: dict[str, Any], tmp_path: Path) -> None:
    data = _task()
    cls = METHODS.get(method)
    outcome = cls(cls.resolve({**TINY, **params}, "paper")).run(data, run_context(tmp_path))
    for split in ("val", "test"):
        scores = outcome.scores[split]
        assert scores.shape == (len(data.splits[split]),)
        assert np.all((scores >= 0) & (scores <= 1)) and np.isfinite(scores).all()
        assert scores.std() > 0
    assert 1 <= outcome.info["selected_epoch"] <= TINY["epochs"]


@pytest.mark.parametrize("cls", [VFAE, ALFR])
def test_same_seed_same_scores(cls: type, tmp_path: Path) -> None:
    data = _task(300)
    params = cls.resolve(TINY, "paper")
    first = cls(params).run(data, run_context(tmp_path, seed=3)).scores
    second = cls(params).run(data, run_context(tmp_path, seed=3)).scores
    other = cls(params).run(data, run_context(tmp_path, seed=4)).scores
    for split in ("val", "test"):
        np.testing.assert_array_equal(first[split], second[split])
    assert not np.array_equal(first["test"], other["test"])


@pytest.mark.parametrize("cls", [VFAE, ALFR])
def test_several_protected_attributes(cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _task(sensitive=["s", "x0 > 0"])
    seen: list[list[str]] = []
    real = selection.mean_discrimination

    def spy(scores: np.ndarray, data: TaskData, rows: np.ndarray, attributes: list[str]) -> float:
        seen.append(attributes)
        return real(scores, data, rows, attributes)

    monkeypatch.setattr(selection, "mean_discrimination", spy)
    outcome = cls(cls.resolve(TINY, "paper")).run(data, run_context(tmp_path))
    assert outcome.scores["test"].shape == (len(data.splits["test"]),)
    # Selection averages over both attributes unless `protect` names one.
    assert seen and all(attributes == ["s", "x0 > 0"] for attributes in seen)
    seen.clear()
    cls(cls.resolve({**TINY, "protect": ["x0 > 0"]}, "paper")).run(data, run_context(tmp_path))
    assert seen and all(attributes == ["x0 > 0"] for attributes in seen)


@pytest.mark.parametrize("cls", [VFAE, ALFR])
def test_a_multiclass_target_is_a_clear_error(cls: type, tmp_path: Path) -> None:
    with pytest.raises(FairbenchError, match=f"method '{cls.name}' needs a binary target; 'grade' has 3 classes"):
        cls(cls.resolve(TINY, "paper")).run(_task(target="grade"), run_context(tmp_path))
