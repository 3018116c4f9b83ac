"""Building blocks: MLPs, the DVGE paper's networks (Tables 3 and 4), gradient reversal."""

from __future__ import annotations

import torch
from torch import nn


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by -scale backward (Ganin et al. 2016).

    Written with plain operations, not a custom autograd.Function: a Function's gradient was
    lost when torch.compile traced it under vmap (the stacked, compiled engine). The forward
    adds an exact zero to x (its values are x's, bit for bit), and the backward is the
    product -scale * grad, as a Function's would be."""
    constant = x.detach()
    return constant + (-scale) * (x - constant)


def mlp(
    sizes: list[int], batchnorm: bool = False, activation: str = "relu", last_activation: bool = False
) -> nn.Sequential:
    """Linear layers of the given sizes; each hidden one followed by [BatchNorm] and the activation."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(sizes) - 2 or last_activation:
            if batchnorm:
                layers.append(nn.BatchNorm1d(fan_out))
            layers.append(nn.LeakyReLU(0.2) if activation == "leaky_relu" else nn.ReLU())
    return nn.Sequential(*layers)


def normal_init(module: nn.Module, std: float = 0.02) -> nn.Module:
    """N(0, std) weights and zero biases, as the DVGE code initialises its MLPs."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def dvge_mlp(in_dim: int = 10, out_dim: int = 2, width: int = 1000, depth: int = 5) -> nn.Sequential:
    """DVGE Tables 3/4 discriminator / classifier: in-1000x5-out, LeakyReLU(0.2), N(0, 0.02) init."""
    return normal_init(mlp([in_dim, *[width] * depth, out_dim], activation="leaky_relu"))


def dvge_tabular_encoder(in_dim: int, out_dim: int, width: int = 1000) -> nn.Sequential:
    """DVGE Table 4 encoder: in-1000x5-out with LeakyReLU(0.2) (out = 2 z_dim for a VAE)."""
    return mlp([in_dim, *[width] * 5, out_dim], activation="leaky_relu")


def dvge_conv_encoder(out_dim: int, channels: int = 3) -> nn.Sequential:
    """DVGE Table 3 encoder for 64x64 images (out = 2 z_dim for a VAE)."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(64, 256, 4, 1),
        nn.ReLU(),
        nn.Conv2d(256, out_dim, 1),
        nn.Flatten(),
    )
