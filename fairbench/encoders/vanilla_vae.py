"""Vanilla VAE (Kingma and Welling 2013): DVGE-N's non-disentangled encoder."""

from __future__ import annotations

import torch

from fairbench.encoders.base import Batch, Draws, EncoderTrainer, Values


class VanillaVAETrainer(EncoderTrainer):
    """Maximise the ELBO: reconstruction + KL, Adam lr 1e-4 betas (0.9, 0.999)."""

    name = "vanilla_vae"
    label = "DVGE-N"
    defaults: dict = {}

    def phase_loss(
        self, phase: int, batch: Batch, noise: Draws, carry: Draws, values: Values
    ) -> tuple[torch.Tensor, Draws, Draws]:
        recon, kl, _ = self.elbo_terms(batch, noise["eps"], values)  # type: ignore[arg-type]
        return recon + kl, {"recon": recon, "kl": kl}, {}
