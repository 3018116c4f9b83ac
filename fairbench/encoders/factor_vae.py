"""FactorVAE (Kim and Mnih 2018): DVGE-D's disentangled encoder.

ELBO + gamma x total correlation, the TC estimated by a discriminator that tells codes q(z)
from codes whose dimensions are permuted independently across a second batch (samples of
prod_j q(z_j)). The discriminator trains on DETACHED codes: the released code feeds it the
VAE's live codes, whose graph the VAE step has already changed in place, which PyTorch >= 1.5
rejects (and which would leak the discriminator's loss into the encoder).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from fairbench.encoders.base import Batch, EncoderTrainer, inputs_of
from fairbench.encoders.networks import VAE, reparameterise
from fairbench.nets.layers import dvge_mlp
from fairbench.train import Arithmetic


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Permute every dimension independently across the batch (one permutation per column)."""
    order = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return z.gather(0, order)


class FactorVAETrainer(EncoderTrainer):
    """VAE Adam lr 1e-4 (0.9, 0.999); discriminator 10-1000x5-2 LeakyReLU(0.2), Adam 1e-5 (0.5, 0.9)."""

    name = "factor_vae"
    label = "DVGE-D"
    defaults: dict[str, Any] = {"gamma": 6.4, "lr_d": 1e-5, "beta1_d": 0.5, "beta2_d": 0.9}

    def __init__(self, vae: VAE, settings: dict[str, Any], device: str, arithmetic: Arithmetic | None = None) -> None:
        super().__init__(vae, settings, device, arithmetic)
        self.discriminator = dvge_mlp(vae.z_dim, 2, settings["width"]).to(device)
        self.optimiser_d = torch.optim.Adam(
            self.discriminator.parameters(),
            lr=settings["lr_d"],
            betas=(settings["beta1_d"], settings["beta2_d"]),
        )

    def vae_terms(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(the encoder's loss without the TC term, its named terms, the live sampled code)."""
        recon, kl, z = self.elbo_terms(inputs_of(batch))
        return recon + kl, {"recon": recon, "kl": kl}, z

    def permuted(self, z: torch.Tensor) -> torch.Tensor:
        """Samples of the factorised distribution the TC compares the joint with."""
        return permute_dims(z)

    def step(self, next_batch: Callable[[], Batch]) -> dict[str, torch.Tensor]:
        with self.arithmetic.autocast():
            loss, terms, z = self.vae_terms(next_batch())
            d_z = self.discriminator(z)
            # Logit of "joint" minus logit of "permuted": the density-ratio estimate of the TC.
            tc = (d_z[:, 0] - d_z[:, 1]).mean()
            loss = loss + self.settings["gamma"] * tc
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()

        with self.arithmetic.autocast():
            with torch.no_grad():
                mu, logvar = self.vae.encode(inputs_of(next_batch()))
                z_perm = self.permuted(reparameterise(mu, logvar))
            joint = self.discriminator(z.detach())
            permuted = self.discriminator(z_perm)
            zeros = torch.zeros(len(joint), dtype=torch.long, device=joint.device)
            d_loss = 0.5 * (F.cross_entropy(joint, zeros) + F.cross_entropy(permuted, torch.ones_like(zeros)))
        self.optimiser_d.zero_grad(set_to_none=True)  # also drops what the VAE loss left in D
        d_loss.backward()
        self.optimiser_d.step()
        return {**{k: v.detach() for k, v in terms.items()}, "tc": tc.detach(), "d_loss": d_loss.detach()}
