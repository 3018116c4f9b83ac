"""Vanilla VAE (Kingma and Welling 2013): DVGE-N's non-disentangled encoder."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fairbench.encoders.base import EncoderTrainer


class VanillaVAETrainer(EncoderTrainer):
    """Maximise the ELBO: reconstruction + KL, Adam lr 1e-4 betas (0.9, 0.999)."""

    name = "vanilla_vae"
    label = "DVGE-N"
    defaults: dict = {}

    def step(self, next_batch: Callable[[], torch.Tensor]) -> dict[str, torch.Tensor]:
        with self.arithmetic.autocast():
            recon, kl, _ = self.elbo_terms(next_batch())
            loss = recon + kl
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return {"recon": recon.detach(), "kl": kl.detach()}
