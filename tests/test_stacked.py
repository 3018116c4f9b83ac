"""Stacked MLP training: members equal solo runs; focus and clip primitives."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fairbench.execution.stacking import should_stack
from fairbench.methods.families.latent.explanation import clip_perturbation, predicted_logit_focus, predicted_loss_focus
from fairbench.nets.layers import mlp
from fairbench.nets.stacked import StackedMLP, onednn_available
from fairbench.train.seeding import stream
from fairbench.train.stacked import fit_stacked


def _problem(
    n: int = 240, d: int = 6, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = (z[:, 0] + 0.5 * z[:, 1] > 0).long()
    fd = torch.randn(n, d, generator=g, dtype=torch.float64)
    return z.to(dtype), y, fd.to(dtype)


def _train(
    etas: list[tuple[float, float]], seeds: list[int], dtype: torch.dtype = torch.float64
) -> tuple[StackedMLP, object]:
    z, y, fd = _problem(dtype=dtype)
    members = len(etas)
    model = StackedMLP([z.shape[1], 24, 24, 2], members, dtype=dtype)
    generators = [stream(s, "g") for s in seeds]
    model.reset(generators)
    eta1 = torch.tensor([e[0] for e in etas], dtype=dtype).view(-1, 1, 1)
    eta2 = torch.tensor([e[1] for e in etas], dtype=dtype).view(-1, 1, 1)

    def perturb(zb: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        v = eta1 * fd[rows] - eta2 * predicted_logit_focus(model, zb)
        return zb + clip_perturbation(v, zb)

    fit = fit_stacked(
        model,
        z,
        y,
        torch.arange(160),
        torch.arange(160, 200),
        generators,
        epochs=4,
        batch_size=32,
        lr=1e-2,
        betas=(0.5, 0.9),
        perturb=perturb,
    )
    return model, fit


@pytest.mark.parametrize(
    ("dtype", "atol"),
    # float32 on a CPU runs the per-member oneDNN kernels: the same kernels stacked or solo.
    [(torch.float64, 1e-12), (torch.float32, 1e-6)],
    ids=["float64", "float32"],
)
def test_stacked_members_equal_solo_runs(dtype: torch.dtype, atol: float) -> None:
    etas, seeds = [(0.1, 0.0), (1.0, 0.4), (2.0, 2.0)], [0, 0, 7]
    stacked, fit = _train(etas, seeds, dtype)
    for m, (eta, seed) in enumerate(zip(etas, seeds, strict=True)):
        solo, solo_fit = _train([eta], [seed], dtype)
        for a, b in zip(stacked.parameters(), solo.parameters(), strict=True):
            torch.testing.assert_close(a[m], b[0], rtol=0, atol=atol)
        assert fit.selected_epoch[m] == solo_fit.selected_epoch[0]
        assert fit.val_acc[m] == solo_fit.val_acc[0]


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN linear")
def test_onednn_linear_equals_batched_matmul_forward_and_backward() -> None:
    model = StackedMLP([7, 33, 33, 2], 3).reset([stream(i) for i in range(3)])
    x = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(0), requires_grad=True)
    results = []
    for reference in (False, True):
        out = model(x) if not reference else _baddbmm_forward(model, x)
        grads = torch.autograd.grad((out**2).sum(), [x, *model.parameters()])
        results.append((out, *grads))
    for ours, reference in zip(*results, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def _baddbmm_forward(model: StackedMLP, x: torch.Tensor) -> torch.Tensor:
    for index, (weight, bias) in enumerate(zip(model.weights, model.biases, strict=True)):
        x = torch.baddbmm(bias.unsqueeze(1), x, weight)
        x = torch.nn.functional.leaky_relu(x, model.negative_slope) if index < len(model.weights) - 1 else x
    return x


def test_auto_stacks_on_gpus_only_and_on_off_force_it() -> None:
    assert should_stack("auto", "cuda") and should_stack("auto", "cuda:1")
    assert not should_stack("auto", "cpu")
    for device in ("cpu", "cuda:0"):
        assert should_stack("on", device) and not should_stack("off", device)
    with pytest.raises(ValueError, match="use one of auto, on, off"):
        should_stack("sometimes", "cpu")


def test_members_with_different_streams_differ() -> None:
    stacked, _ = _train([(0.1, 0.0), (0.1, 0.0)], [0, 1])
    assert not torch.equal(stacked.weights[0][0], stacked.weights[0][1])


def test_member_state_matches_an_nn_linear_stack() -> None:
    model = StackedMLP([5, 7, 7, 2], 3, dtype=torch.float64).reset([stream(i) for i in range(3)])
    net = mlp([5, 7, 7, 2], activation="leaky_relu").double()
    net.load_state_dict(model.member_state(2))
    x = torch.randn(4, 5, dtype=torch.float64)
    torch.testing.assert_close(net(x), model(x.expand(3, -1, -1))[2])


def central_difference(f, z: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """d f(z, i) / d z[i, j] for every row i and coordinate j, by central differences."""
    out = torch.zeros_like(z)
    for i in range(len(z)):
        for j in range(z.shape[1]):
            up, down = z.clone(), z.clone()
            up[i, j] += h
            down[i, j] -= h
            out[i, j] = (f(up, i) - f(down, i)) / (2 * h)
    return out


def test_focus_equals_finite_difference_of_the_predicted_logit() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.LeakyReLU(0.2), nn.Linear(16, 3)).double()
    z = torch.randn(5, 4, dtype=torch.float64)
    focus = predicted_logit_focus(net, z)
    assert not focus.requires_grad
    predicted = net(z).argmax(1)
    # The class stays the one predicted at z (argmax of the model's own output).
    numeric = central_difference(lambda x, i: net(x)[i, predicted[i]], z)
    assert (numeric - focus).abs().max() < 1e-7


def test_focus_rows_are_independent_of_the_batch() -> None:
    model = StackedMLP([4, 8, 2], 2, dtype=torch.float64).reset([stream(0), stream(1)])
    z = torch.randn(2, 6, 4, dtype=torch.float64)
    whole = predicted_logit_focus(model, z)
    part = predicted_logit_focus(model, z[:, 2:4])
    torch.testing.assert_close(whole[:, 2:4], part)


def test_clip_bounds_every_coordinate() -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(50, 10, generator=g) * 3
    z[0, 0] = 0.0  # eps = 0: no perturbation at all
    v = torch.randn(50, 10, generator=g) * 10
    clipped = clip_perturbation(v, z, 0.1)
    assert (clipped.abs() <= 0.1 * z.abs() + 1e-7).all()
    assert clipped[0, 0] == 0
    small = v.abs() <= 0.1 * z.abs()
    assert torch.equal(clipped[small], v[small])
    assert torch.equal(clipped.sign()[~small & (z != 0)], v.sign()[~small & (z != 0)])


def test_loss_focus_equals_finite_difference_of_the_cross_entropy() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 8), nn.LeakyReLU(0.2), nn.Linear(8, 2)).double()
    z = torch.randn(4, 3, dtype=torch.float64)
    focus = predicted_loss_focus(net, z)
    predicted = net(z).argmax(1)
    ce = torch.nn.functional.cross_entropy
    numeric = central_difference(lambda x, i: ce(net(x)[i : i + 1], predicted[i : i + 1]), z)
    assert (numeric - focus).abs().max() < 1e-7
    # Two classes: the loss focus points against the logit focus of the predicted class.
    z = z.clone().requires_grad_(True)
    logit = net(z)
    margin = logit.gather(1, predicted[:, None]) - logit.gather(1, 1 - predicted[:, None])
    # d CE / dz = -(1 - p_c) d(margin)/dz for two classes: opposite to the margin gradient.
    margin_grad = torch.autograd.grad(margin.sum(), z)[0]
    assert ((focus * margin_grad).sum(1) < 0).all()
