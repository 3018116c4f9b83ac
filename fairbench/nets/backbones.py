"""Image backbones of GBA's experiments, each cut into a feature extractor F and a head factory
(the classifier C and the discriminator D read F's features; nets/branched.py assembles them)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from fairbench.nets.layers import mlp
from fairbench.nets.resnet import FEATURES, resnet18_split

Head = Callable[[int], nn.Module]  # number of outputs -> a fresh head on F's features

MLP_WIDTH = 100  # LfF's Colored MNIST MLP: three hidden layers of 100 units


def resnet18_backbone(input_shape: tuple[int, ...]) -> tuple[nn.Module, Head]:
    """GBA's ResNet-18 (torchvision, random init) with its last fully connected layer replaced by
    two: F = the convolution stages and global average pool (512 features, non-negative after
    the last ReLU, so GBA's 0/1 mask drops features); a head = Linear(512, 512), ReLU,
    Linear(512, outputs). GBA gives no width for the first of its two layers; 512 keeps
    ResNet-18's feature width, so the replacement neither narrows nor widens what C and D see.
    Small inputs get `resnet18_split`'s stem (see there)."""
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ValueError(f"arch 'resnet18' needs square (channels, side, side) images, not {input_shape}")
    trunk = nn.Sequential(resnet18_split(input_shape[1], input_shape[0]).g, nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def head(outputs: int) -> nn.Module:
        return nn.Sequential(nn.Linear(FEATURES, FEATURES), nn.ReLU(), nn.Linear(FEATURES, outputs))

    return trunk, head


class Scale(nn.Module):
    """Multiply the input by a fixed factor (no parameters)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


def mlp3_backbone(input_shape: tuple[int, ...]) -> tuple[nn.Module, Head]:
    """LfF's Colored MNIST MLP: F = flatten (3x28x28 = 2352 inputs), divide by 255 and three
    hidden layers of 100 units with ReLU; a head = one Linear(100, outputs), LfF's classifier
    layer (D is given the same form as C). The division is LfF's: its MLP divides by 255 the
    images that torchvision's ToTensor has already scaled to [0, 1], so its first layer reads
    pixels in [0, 1/255]. With Adam at lr 1e-3 this slows the first layer's learning of shape
    against colour: measured on the full Colored MNIST at 95% skew (one seed, 100 epochs), test
    accuracy 0.805 with it against 0.903 without (LfF reports 77.63)."""
    layers = mlp([int(np.prod(input_shape)), *[MLP_WIDTH] * 3], last_activation=True)
    trunk = nn.Sequential(nn.Flatten(), Scale(1 / 255), layers)

    def head(outputs: int) -> nn.Module:
        return nn.Linear(MLP_WIDTH, outputs)

    return trunk, head


BACKBONES: dict[str, Callable[[tuple[int, ...]], tuple[nn.Module, Head]]] = {
    "resnet18": resnet18_backbone,
    "mlp3": mlp3_backbone,
}
