"""Perturbation generators: image-to-image networks whose output is an additive perturbation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.InstanceNorm2d(channels, affine=True), nn.ReLU(inplace=True)]


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            *_block(nn.Conv2d(channels, channels, 3, bias=False), channels),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class AdvGANGenerator(nn.Module):
    """The generator family of AdvGAN (Xiao et al. 2018, "Generating adversarial examples with
    adversarial networks", FAAP's reference [26]), itself the ResNet image-to-image generator of
    Johnson et al. / CycleGAN at small width: an encoder of three convolutions (8, 16, 32
    channels, the last two stride 2), `blocks` residual blocks at 32 channels, a decoder of two
    stride-2 transposed convolutions (16, 8) and a 3x3 convolution back to the image channels;
    instance norm and ReLU throughout. The output is tanh scaled by `bound`, so every value of
    the perturbation lies in [-bound, bound]. Any input side works (the output is resized to it
    when the side is not a multiple of 4).
    """

    def __init__(self, channels: int = 3, bound: float = 1.0, blocks: int = 4) -> None:
        super().__init__()
        self.bound = bound
        self.net = nn.Sequential(
            *_block(nn.Conv2d(channels, 8, 3, 1, 1, bias=False), 8),
            *_block(nn.Conv2d(8, 16, 3, 2, 1, bias=False), 16),
            *_block(nn.Conv2d(16, 32, 3, 2, 1, bias=False), 32),
            *(_Residual(32) for _ in range(blocks)),
            *_block(nn.ConvTranspose2d(32, 16, 3, 2, 1, output_padding=1, bias=False), 16),
            *_block(nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1, bias=False), 8),
            nn.Conv2d(8, channels, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.bound * torch.tanh(out)
