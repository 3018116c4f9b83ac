"""The VAE networks of DVGE Tables 3 (64x64 images) and 4 (tables)."""

from __future__ import annotations

import math

import torch
from torch import nn

from fairbench.nets.layers import dvge_conv_encoder, dvge_tabular_encoder, normal_init


def conv_decoder(z_dim: int = 10, channels: int = 3) -> nn.Sequential:
    """DVGE Table 3 decoder: z (as a 1x1 map) -> 64x64 logits, one per pixel and channel."""
    return nn.Sequential(
        nn.Unflatten(1, (z_dim, 1, 1)),
        nn.Conv2d(z_dim, 256, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(256, 64, 4),
        nn.ReLU(),
        nn.ConvTranspose2d(64, 64, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(32, 32, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(32, channels, 4, 2, 1),
    )


def table_mlp(in_dim: int, out_dim: int, width: int = 1000) -> nn.Sequential:
    """DVGE Table 4 encoder/decoder: in-1000x5-out with LeakyReLU(0.2).

    Table 4 lists five hidden Linear layers for the encoder (Linear(20,1000), four
    Linear(1000,1000)); the decoder rows are elided and taken to mirror it.
    """
    return dvge_tabular_encoder(in_dim, out_dim, width)


class VAE(nn.Module):
    """Gaussian encoder q(z|x) = N(mu, exp(logvar)) and a decoder that returns logits
    (Bernoulli likelihood) or means (Gaussian likelihood).

    The last `deterministic` of the z_dim code dims are point masses (FFVAE's b): the encoder
    outputs only their value, and their log-variance reads -inf, so that a reparameterised
    sample equals the mean there.
    """

    def __init__(
        self, input_shape: tuple[int, ...], z_dim: int = 10, width: int = 1000, deterministic: int = 0
    ) -> None:
        super().__init__()
        self.input_shape, self.z_dim = tuple(input_shape), z_dim
        self.stochastic = z_dim - deterministic
        stats = z_dim + self.stochastic
        if len(self.input_shape) == 3:
            channels, height, width_px = self.input_shape
            if (height, width_px) != (64, 64):
                raise ValueError(f"the DVGE conv VAE takes 64x64 images, got {height}x{width_px}")
            self.encoder = dvge_conv_encoder(stats, channels)
            self.decoder = conv_decoder(z_dim, channels)
        elif len(self.input_shape) == 1:
            self.encoder = table_mlp(self.input_shape[0], stats, width)
            self.decoder = table_mlp(z_dim, self.input_shape[0], width)
        else:
            raise ValueError(f"unsupported input shape {self.input_shape}")
        if len(self.input_shape) == 3:
            # The released code: N(0, 0.02) for Linear/Conv2d; ConvTranspose2d keeps PyTorch's init.
            normal_init(self.encoder)
            normal_init(self.decoder[:2])
        # Tables keep PyTorch's default init: with N(0, 0.02) through six 1000-wide layers the
        # signal shrinks ~0.6x per layer and the Table 4 VAE collapses to the prior.

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stats = self.encoder(x)
        logvar = stats[:, self.z_dim :]
        if self.stochastic < self.z_dim:
            point = logvar.new_full((len(x), self.z_dim - self.stochastic), -math.inf)
            logvar = torch.cat([logvar, point], 1)
        return stats[:, : self.z_dim], logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, with eps (standard normal, the shape of mu) drawn by the caller from
    the training's own stream; point-mass dims (sigma 0) keep their mean."""
    return mu + eps * (0.5 * logvar).exp()
