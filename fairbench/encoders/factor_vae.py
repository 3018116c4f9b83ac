"""FactorVAE (Kim and Mnih 2018): DVGE-D's disentangled encoder.

ELBO + gamma x total correlation, the TC estimated by a discriminator that tells codes q(z)
from codes whose dimensions are permuted independently across a second batch (samples of
prod_j q(z_j)). The discriminator trains on DETACHED codes: the released code feeds it the
VAE's live codes, whose graph the VAE step has already changed in place, which PyTorch >= 1.5
rejects (and which would leak the discriminator's loss into the encoder).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fairbench.encoders.base import Batch, Draws, EncoderTrainer, Phase, Values, inputs_of
from fairbench.encoders.networks import VAE, reparameterise
from fairbench.nets.layers import dvge_mlp


def permute_dims(z: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Permute every dimension independently across the batch (one permutation per column),
    the permutations the ranks of `uniform` (draws of z's shape)."""
    return z.gather(0, uniform.argsort(dim=0))


class FactorVAETrainer(EncoderTrainer):
    """VAE Adam lr 1e-4 (0.9, 0.999); discriminator 10-1000x5-2 LeakyReLU(0.2), Adam 1e-5 (0.5, 0.9)."""

    name = "factor_vae"
    label = "DVGE-D"
    defaults: dict[str, Any] = {"gamma": 6.4, "lr_d": 1e-5, "beta1_d": 0.5, "beta2_d": 0.9}
    # The VAE's step on one batch, then the discriminator's on the next.
    phases = (Phase(("vae",)), Phase(("discriminator",), "lr_d", ("beta1_d", "beta2_d"), fresh_batch=True))
    weights = ("gamma",)

    def extra_nets(self, vae: VAE, settings: dict[str, Any]) -> dict[str, nn.Module]:
        return {"discriminator": dvge_mlp(vae.z_dim, 2, settings["width"])}

    def noise(self, batch_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        shape = (batch_size, self.vae.z_dim)
        # eps: the VAE's batch; eps_d and order: the discriminator's batch and its permutations
        return {"eps": ("normal", shape), "eps_d": ("normal", shape), "order": ("uniform", shape)}

    def vae_terms(self, batch: Batch, eps: torch.Tensor, values: Values) -> tuple[torch.Tensor, Draws, torch.Tensor]:
        """(the encoder's loss without the TC term, its named terms, the live sampled code)."""
        recon, kl, z = self.elbo_terms(inputs_of(batch), eps, values)
        return recon + kl, {"recon": recon, "kl": kl}, z

    def permuted(self, z: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """Samples of the factorised distribution the TC compares the joint with."""
        return permute_dims(z, uniform)

    def phase_loss(
        self, phase: int, batch: Batch, noise: Draws, carry: Draws, values: Values
    ) -> tuple[torch.Tensor, Draws, Draws]:
        discriminator = self.nets["discriminator"]
        if phase == 0:
            loss, terms, z = self.vae_terms(batch, noise["eps"], values)
            d_z = discriminator(z)
            # Logit of "joint" minus logit of "permuted": the density-ratio estimate of the TC.
            tc = (d_z[:, 0] - d_z[:, 1]).mean()
            return loss + values["gamma"] * tc, {**terms, "tc": tc}, {"z": z.detach()}
        with torch.no_grad():
            mu, logvar = self.vae.encode(inputs_of(batch))
            z_perm = self.permuted(reparameterise(mu, logvar, noise["eps_d"]), noise["order"])
        joint = discriminator(carry["z"])
        permuted = discriminator(z_perm)
        zeros = torch.zeros(len(joint), dtype=torch.long, device=joint.device)
        d_loss = 0.5 * (F.cross_entropy(joint, zeros) + F.cross_entropy(permuted, torch.ones_like(zeros)))
        return d_loss, {"d_loss": d_loss}, {}
