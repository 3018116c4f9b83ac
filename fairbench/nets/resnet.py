"""ResNet-18 (torchvision, random init) split into a feature extractor g and a label predictor f,
and the discriminator that reads g's features (FAAP's deployed models and its D)."""

from __future__ import annotations

import torch
from torch import nn

from fairbench.torchvision_compat import import_torchvision

FEATURES = 512  # channels of ResNet-18's last convolution block
SMALL_INPUT = 32  # below this side the ImageNet stem is replaced (see `resnet18_split`)


class SplitClassifier(nn.Module):
    """f(g(x)): g maps images to the last convolution block's feature map, f maps that to 2 logits."""

    def __init__(self, g: nn.Module, f: nn.Module) -> None:
        super().__init__()
        self.g, self.f = g, f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(self.g(x))


def resnet18_split(size: int, channels: int = 3) -> SplitClassifier:
    """torchvision's ResNet-18 (random init, 2 classes) for size x size inputs, cut after layer4.

    g = stem, layer1..layer4 (output: the (N, 512, h, w) map of the last convolution); f = global
    average pool and the fully connected layer. From 32 pixels up the ImageNet stem is kept
    (layer4 sees size/32: 7x7 at 224, 1x1 at 32). Below 32 that stem would leave layer3 and
    layer4 a single pixel framed by padding, so its 7x7 stride-2 convolution becomes a 3x3 stride-1 one
    (max-pool kept): layer4 sees size/16, e.g. 1x1 at 16 pixels, at the cost of the ImageNet
    stem at twice the side. Other channel counts than 3 get a first convolution of that width.
    """
    models = import_torchvision().models
    net = models.resnet18(weights=None, num_classes=2)
    if size < SMALL_INPUT or channels != 3:
        small = size < SMALL_INPUT
        net.conv1 = nn.Conv2d(channels, 64, 3 if small else 7, 1 if small else 2, 1 if small else 3, bias=False)
    g = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    f = nn.Sequential(net.avgpool, nn.Flatten(), net.fc)
    return SplitClassifier(g, f)


def feature_discriminator(channels: int = FEATURES, hidden: int = 256) -> nn.Sequential:
    """Predicts the protected attribute (2 logits) from a (N, channels, h, w) feature map:
    global average pool, then a one-hidden-layer MLP."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, 2)
    )
