"""Stacked MLPs: M same-shaped MLP classifiers held as one model.

Weights live in (M, fan_in, fan_out) tensors and every operation is per member (batched
matmuls, elementwise activations), so member m's outputs depend only on its own weights. On a
CPU, float32 layers run one oneDNN GEMM per member (`OneDNNLinear`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


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
        # a compiled step fuses baddbmm itself (oneDNN's op has no compiled lowering)
        eager = not torch.compiler.is_compiling()
        onednn = eager and x.device.type == "cpu" and x.dtype == torch.float32 and onednn_available()
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = OneDNNLinear.apply(x, weight, bias) if onednn else torch.baddbmm(bias.unsqueeze(1), x, weight)
            if index < last:
                x = F.leaky_relu(x, self.negative_slope)
        return x

    @torch.no_grad()
    def logits(self, features: torch.Tensor, rows: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Logits (M, len(rows), out) for shared (N, D) or per-member (M, N, D) features."""
        out = [
            self(gather(features, rows[start : start + chunk], self.members)) for start in range(0, len(rows), chunk)
        ]
        return torch.cat(out, dim=1)

    def member_state(self, m: int) -> dict[str, torch.Tensor]:
        """Member m's weights as an nn.Linear stack's state dict (keys `<2l>.weight`/`.bias`)."""
        state = {}
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            state[f"{2 * index}.weight"] = weight[m].detach().t().clone()
            state[f"{2 * index}.bias"] = bias[m].detach().clone()
        return state


def member_features(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """The members' (N, D) features as `gather` reads them: the one tensor itself when every
    member has the same (shared), else stacked (M, N, D)."""
    return parts[0] if all(part is parts[0] for part in parts) else torch.stack(list(parts))


def gather(features: torch.Tensor, rows: torch.Tensor, members: int) -> torch.Tensor:
    """Rows of shared (N, D) or per-member (M, N, D) features: rows (B,) or (M, B) -> (M, B, D)."""
    if rows.dim() == 1:
        rows = rows.unsqueeze(0).expand(members, -1)
    if features.dim() == 2:
        return features[rows]
    return features[torch.arange(members, device=rows.device).unsqueeze(1), rows]
