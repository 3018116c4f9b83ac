"""DVGE's explanation maths: the focus (the gradient of a classifier's own prediction with
respect to the latent code z) and the clip of the perturbation (eq. 9)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


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
