"""Stacked training: M same-shaped MLP classifiers trained as one model.

Weights live in (M, fan_in, fan_out) tensors and every operation is per member (batched
matmuls, elementwise activations, a per-member loss summed over members, elementwise Adam),
so member m's trajectory depends only on its own initial weights, batches and
hyperparameters. Training a member inside a stack therefore equals training it alone, up to
floating-point differences between batched-matmul kernels, which is what makes a
hyperparameter sweep (DVGE's eta grid, seeds) cost about one model on a GPU. On a CPU,
float32 layers run one oneDNN GEMM per member (`OneDNNLinear`), and stacking does not pay:
`should_stack` decides per device type whether the executor stacks a sweep.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# A perturbation hook: (features of the batch (M, B, D), row indices (M, B)) -> inputs (M, B, D).
Perturb = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def stream(seed: int, *labels: Any) -> torch.Generator:
    """A CPU generator seeded from (seed, labels): one named, reproducible RNG stream."""
    digest = hashlib.sha256(json.dumps([seed, *labels], sort_keys=True, default=str).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


STACK_MODES = ("auto", "on", "off")

# Device types on which a stacked sweep trains faster than its members one after another.
# CUDA: one small model leaves the GPU idle, M members fill it. CPU: a 64 x 1000 x 1000
# product already keeps the cores busy, so stacking only adds memory traffic (a 20-member DVGE
# grid trained at 0.59-0.77x the speed of its members one by one; bench/bench_stacked.py),
# and solo units also spread over --workers.
STACKING_PAYS = frozenset({"cuda"})


def should_stack(mode: str, device: str) -> bool:
    """Train stackable sweep members as one model on `device` ("cpu", "cuda:1", ...)?

    mode "on" / "off" force it; "auto" stacks where stacking pays: a fixed rule per device
    type, not a timing, so that the plan never depends on the load of a shared machine.
    """
    if mode not in STACK_MODES:
        raise ValueError(f"stack mode {mode!r}: use one of {', '.join(STACK_MODES)}")
    return mode == "on" or (mode == "auto" and device.split(":")[0] in STACKING_PAYS)


@functools.cache
def onednn_available() -> bool:
    """Whether this torch build has oneDNN's float32 linear (x86 CPU builds do)."""
    try:
        torch.ops.mkldnn._linear_pointwise(torch.ones(1, 1), torch.ones(1, 1), None, "none", [], "")
    except (AttributeError, RuntimeError, TypeError):
        return False
    return True


def _onednn_matmul(a: torch.Tensor, b_t: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b_t.T (+ bias) through oneDNN; any strides."""
    return torch.ops.mkldnn._linear_pointwise(a, b_t, bias, "none", [], "")


class OneDNNLinear(torch.autograd.Function):
    """Stacked x @ w + b, (M, B, a) x (M, a, b) + (M, b), as one oneDNN GEMM per member.

    Why: torch's float32 CPU matmul goes through MKL, which runs its AVX2 kernels on AMD CPUs;
    oneDNN runs AVX-512 and is 2.2-2.4x faster on the 64x1000x1000 products of a DVGE step
    (bench/bench_dvge_step.py). Per member, not batched: the same kernels run whatever the
    stack's size, so a member's numbers do not depend on what it is stacked with. Results
    equal baddbmm's up to float32 rounding (a different summation order).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _per_member(lambda m: _onednn_matmul(x[m], weight[m].t(), bias[m]), len(weight))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        members = len(weight)
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = _per_member(lambda m: _onednn_matmul(grad[m], weight[m]), members) if need_x else None
        grad_w = _per_member(lambda m: _onednn_matmul(x[m].t(), grad[m].t()), members) if need_w else None
        grad_b = grad.sum(1) if need_b else None
        return grad_x, grad_w, grad_b


def _per_member(compute: Callable[[int], torch.Tensor], members: int) -> torch.Tensor:
    if members == 1:
        return compute(0).unsqueeze(0)
    return torch.stack([compute(m) for m in range(members)])


class StackedMLP(nn.Module):
    """M independent MLPs sizes[0]-...-sizes[-1] with LeakyReLU between layers.

    Input (M, B, sizes[0]) -> logits (M, B, sizes[-1]). Layer l of member m computes
    x @ weights[l][m] + biases[l][m], i.e. nn.Linear with its weight transposed.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        members: int,
        negative_slope: float = 0.2,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.sizes, self.members, self.negative_slope = list(sizes), members, negative_slope
        self.weights = nn.ParameterList(
            nn.Parameter(torch.zeros(members, a, b, dtype=dtype, device=device))
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(members, b, dtype=dtype, device=device)) for b in sizes[1:]
        )

    @torch.no_grad()
    def reset(self, generators: Sequence[torch.Generator], std: float = 0.02) -> StackedMLP:
        """N(0, std) weights, zero biases (the DVGE code's init), member m drawn from generators[m].

        Draws are float32 on the CPU whatever the dtype/device, so a member starts from the same
        weights in float64 tests, on a GPU, alone or in a stack.
        """
        if len(generators) != self.members:
            raise ValueError(f"{len(generators)} generators for {self.members} members")
        for m, generator in enumerate(generators):
            for weight, bias in zip(self.weights, self.biases, strict=True):
                fan_in, fan_out = weight.shape[1:]
                draw = torch.randn(fan_out, fan_in, generator=generator) * std  # nn.Linear's layout
                weight[m].copy_(draw.t())
                bias[m].zero_()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        onednn = x.device.type == "cpu" and x.dtype == torch.float32 and onednn_available()
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = OneDNNLinear.apply(x, weight, bias) if onednn else torch.baddbmm(bias.unsqueeze(1), x, weight)
            if index < last:
                x = F.leaky_relu(x, self.negative_slope)
        return x

    @torch.no_grad()
    def logits(self, features: torch.Tensor, rows: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Logits (M, len(rows), out) for shared (N, D) or per-member (M, N, D) features."""
        out = [
            self(gather(features, rows[start : start + chunk], self.members))
            for start in range(0, len(rows), chunk)
        ]
        return torch.cat(out, dim=1)

    def member_state(self, m: int) -> dict[str, torch.Tensor]:
        """Member m's weights as an nn.Linear stack's state dict (keys `<2l>.weight`/`.bias`)."""
        state = {}
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            state[f"{2 * index}.weight"] = weight[m].detach().t().clone()
            state[f"{2 * index}.bias"] = bias[m].detach().clone()
        return state


def gather(features: torch.Tensor, rows: torch.Tensor, members: int) -> torch.Tensor:
    """Rows of shared (N, D) or per-member (M, N, D) features: rows (B,) or (M, B) -> (M, B, D)."""
    if rows.dim() == 1:
        rows = rows.unsqueeze(0).expand(members, -1)
    if features.dim() == 2:
        return features[rows]
    return features[torch.arange(members, device=rows.device).unsqueeze(1), rows]


def _input_gradient_only(model: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model with its parameters detached, for a focus, which needs d/dz only: a custom
    autograd Function (OneDNNLinear) cannot tell that autograd.grad(..., z) will discard its
    weight gradients, and would compute them (a third of a DVGE step)."""
    if not isinstance(model, nn.Module):
        return model
    detached = {name: p.detach() for name, p in model.named_parameters()}
    return lambda z: torch.func.functional_call(model, detached, (z,))


def predicted_logit_focus(model: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. z of the predicted class's logit, summed over the batch, detached.

    The predicted class is the argmax of the model's own output (no labels), as the released
    DVGE FullGrad code does; rows are independent (no batch norm), so the sum gives every row
    its own gradient. No create_graph: the focus is a constant in the training loss.
    """
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        out = _input_gradient_only(model)(z)
        picked = out.gather(-1, out.detach().argmax(-1, keepdim=True)).sum()
        (grad,) = torch.autograd.grad(picked, z)
    return grad


def predicted_loss_focus(model: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. z of the cross-entropy against the model's own prediction, summed over
    the batch, detached: the sign convention of the paper's section 4.4 rationale (+F_d raises
    d's loss, -F_g lowers g's), opposite in direction to `predicted_logit_focus`."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        out = _input_gradient_only(model)(z)
        loss = F.cross_entropy(out.flatten(0, -2), out.detach().argmax(-1).flatten(), reduction="sum")
        (grad,) = torch.autograd.grad(loss, z)
    return grad


FOCI: dict[str, Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], torch.Tensor]] = {
    "logit": predicted_logit_focus,
    "loss": predicted_loss_focus,
}


def clip_perturbation(v: torch.Tensor, z: torch.Tensor, ratio: float = 0.1) -> torch.Tensor:
    """DVGE eq. 9: each coordinate of v clipped into [-eps, eps] with eps = ratio * |z|."""
    eps = ratio * z.abs()
    return torch.maximum(torch.minimum(v, eps), -eps)


def adam(params: Any, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam, fused where the device supports it: the update is memory-bound on 10-1000x5-2
    MLPs, and the fused kernel is ~4x faster on CPU (40 -> 10 ms per member-step here)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


@dataclass
class FitResult:
    """Per member: the selected epoch (1-based), its validation accuracy, and per-epoch
    accuracies (epochs x M) on the validation rows and on any monitored row sets."""

    selected_epoch: list[int]
    val_acc: list[float]
    history: dict[str, list[list[float]]] = field(default_factory=dict)


@torch.no_grad()
def accuracy(
    model: StackedMLP, features: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """Per-member accuracy (M,) on `rows`; labels (N,) shared or (M, N) per member."""
    predicted = model.logits(features, rows).argmax(-1)
    target = labels[rows] if labels.dim() == 1 else labels[:, rows]
    return (predicted == target).double().mean(-1)


def fit_stacked(
    model: StackedMLP,
    features: torch.Tensor,
    labels: torch.Tensor,
    train_rows: torch.Tensor,
    val_rows: torch.Tensor,
    generators: Sequence[torch.Generator],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    betas: tuple[float, float],
    perturb: Perturb | None = None,
    select: str = "acc",
    max_steps_per_epoch: int = 0,
    val_features: torch.Tensor | None = None,
    monitor: dict[str, torch.Tensor] | None = None,
    log: Callable[[str], Any] | None = None,
) -> FitResult:
    """Train every member with cross-entropy, each on its own shuffled minibatches.

    features: (N, D) shared or (M, N, D) per member; labels (N,). Member m shuffles the train
    rows with generators[m] every epoch. `perturb` turns a batch's features into the inputs the
    loss sees (DVGE's z'); selection and evaluation use `val_features` (default `features`)
    unperturbed. select = "acc": keep each member's epoch of best validation accuracy (the
    earliest on ties); "last": the final epoch. Weights are left at the selected epoch.
    """
    members = model.members
    if len(generators) != members:
        raise ValueError(f"{len(generators)} generators for {members} members")
    device = train_rows.device
    val_features = features if val_features is None else val_features
    optimiser = adam(model.parameters(), lr, betas)
    best = torch.full((members,), -1.0, dtype=torch.float64, device=device)
    best_epoch = [0] * members
    best_state = [p.detach().clone() for p in model.parameters()]
    history: dict[str, list[list[float]]] = {"val": [], **{name: [] for name in monitor or {}}}
    for epoch in range(1, epochs + 1):
        orders = torch.stack([torch.randperm(len(train_rows), generator=g) for g in generators]).to(device)
        steps = range(0, len(train_rows), batch_size)
        if max_steps_per_epoch:
            steps = steps[:max_steps_per_epoch]
        for start in steps:
            rows = train_rows[orders[:, start : start + batch_size]]  # (M, B)
            inputs = gather(features, rows, members)
            if perturb is not None:
                inputs = perturb(inputs, rows)
            logits = model(inputs)
            # Mean over each member's batch, summed over members: member m's gradient is
            # exactly the gradient of its own loss.
            loss = F.cross_entropy(logits.flatten(0, 1), labels[rows].flatten(), reduction="none")
            loss = loss.view(members, -1).mean(1).sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        current = accuracy(model, val_features, labels, val_rows)
        history["val"].append(current.tolist())
        for name, rows in (monitor or {}).items():
            history[name].append(accuracy(model, val_features, labels, rows).tolist())
        improved = current > best if select == "acc" else torch.ones_like(current, dtype=torch.bool)
        if improved.any():
            with torch.no_grad():
                for saved, param in zip(best_state, model.parameters(), strict=True):
                    saved[improved] = param[improved]
            best = torch.where(improved, current, best)
            for m in improved.nonzero().flatten().tolist():
                best_epoch[m] = epoch
        if log is not None:
            log(f"epoch {epoch}/{epochs} val acc {[round(v, 4) for v in current.tolist()]}")
    with torch.no_grad():
        for saved, param in zip(best_state, model.parameters(), strict=True):
            param.copy_(saved)
    return FitResult(selected_epoch=best_epoch, val_acc=best.tolist(), history=history)
