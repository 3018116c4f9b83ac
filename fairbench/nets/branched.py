"""A trunk with a task branch and an optional attribute branch behind gradient reversal."""

from __future__ import annotations

import torch
from torch import nn

from fairbench.nets.layers import dvge_conv_encoder, dvge_mlp, dvge_tabular_encoder, mlp, reverse_gradient

ARCHITECTURES = ("grad", "dvge")


class BranchedNet(nn.Module):
    """trunk -> task head; trunk -> reverse_gradient -> attribute head (when present)."""

    def __init__(self, trunk: nn.Module, task_head: nn.Module, attribute_head: nn.Module | None) -> None:
        super().__init__()
        self.trunk, self.task_head, self.attribute_head = trunk, task_head, attribute_head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.trunk(x)
        attribute = None
        if self.attribute_head is not None:
            attribute = self.attribute_head(reverse_gradient(features))
        return self.task_head(features), attribute


def build_branched(
    arch: str, input_shape: tuple[int, ...], with_attribute: bool, task_outputs: int = 2, z_dim: int = 10
) -> BranchedNet:
    """`grad`: GRAD's net (two 40-unit layers with batch norm + ReLU per part; tables only).
    `dvge`: DVGE Table 3/4 feature encoder (to z_dim) with Table 3/4 MLP branches.
    The task head has `task_outputs` outputs, the attribute head two."""
    if arch == "grad":
        if len(input_shape) != 1:
            raise ValueError("arch 'grad' is for tabular inputs; use arch 'dvge' for images")
        trunk = mlp([input_shape[0], 40, 40], batchnorm=True, last_activation=True)

        def head(outputs: int = 2) -> nn.Module:
            return nn.Sequential(mlp([40, 40], batchnorm=True, last_activation=True), nn.Linear(40, outputs))

    elif arch == "dvge":
        if len(input_shape) == 1:
            trunk = dvge_tabular_encoder(input_shape[0], z_dim)
        else:
            trunk = dvge_conv_encoder(z_dim, channels=input_shape[0])

        def head(outputs: int = 2) -> nn.Module:
            return dvge_mlp(z_dim, outputs)

    else:
        raise ValueError(f"unknown architecture '{arch}' (valid: {', '.join(ARCHITECTURES)})")
    return BranchedNet(trunk, head(task_outputs), head() if with_attribute else None)
