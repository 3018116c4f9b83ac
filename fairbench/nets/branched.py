"""A trunk with a task branch and attribute branches (one per protected attribute) behind
gradient reversal."""

from __future__ import annotations

import torch
from torch import nn

from fairbench.nets.backbones import BACKBONES
from fairbench.nets.layers import dvge_conv_encoder, dvge_mlp, dvge_tabular_encoder, mlp, reverse_gradient

ARCHITECTURES = ("grad", "dvge", *BACKBONES)


class BranchedNet(nn.Module):
    """trunk -> task head; trunk -> reverse_gradient -> each attribute head.

    `forward` returns (task logits, [attribute logits, one per attribute head]); the list is empty
    for a net without attribute heads (ERM)."""

    def __init__(self, trunk: nn.Module, task_head: nn.Module, attribute_heads: list[nn.Module]) -> None:
        super().__init__()
        self.trunk, self.task_head = trunk, task_head
        self.attribute_heads = nn.ModuleList(attribute_heads)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.trunk(x)
        reversed_features = reverse_gradient(features) if len(self.attribute_heads) else features
        return self.task_head(features), [head(reversed_features) for head in self.attribute_heads]


def build_branched(
    arch: str,
    input_shape: tuple[int, ...],
    n_classes: int = 2,
    attribute_counts: tuple[int, ...] = (),
    z_dim: int = 10,
) -> BranchedNet:
    """A net with a `n_classes`-way task head and one attribute head per entry of
    `attribute_counts` (its number of values).

    `grad`: GRAD's net (two 40-unit layers with batch norm + ReLU per part; tables only).
    `dvge`: DVGE Table 3/4 feature encoder (to z_dim) with Table 3/4 MLP branches.
    `resnet18`, `mlp3`: GBA's image backbones (nets/backbones.py) with their own heads."""
    if arch == "grad":
        if len(input_shape) != 1:
            raise ValueError("arch 'grad' is for tabular inputs; use arch 'dvge' for images")
        trunk = mlp([input_shape[0], 40, 40], batchnorm=True, last_activation=True)

        def head(outputs: int) -> nn.Module:
            return nn.Sequential(mlp([40, 40], batchnorm=True, last_activation=True), nn.Linear(40, outputs))

    elif arch == "dvge":
        if len(input_shape) == 1:
            trunk = dvge_tabular_encoder(input_shape[0], z_dim)
        else:
            trunk = dvge_conv_encoder(z_dim, channels=input_shape[0])

        def head(outputs: int) -> nn.Module:
            return dvge_mlp(z_dim, outputs)

    elif arch in BACKBONES:
        trunk, head = BACKBONES[arch](input_shape)

    else:
        raise ValueError(f"unknown architecture '{arch}' (valid: {', '.join(ARCHITECTURES)})")
    return BranchedNet(trunk, head(n_classes), [head(count) for count in attribute_counts])
