"""FFVAE (Creager et al., ICML 2019, "Flexibly Fair Representation Learning by
Disentanglement"): a FactorVAE whose last dims b are the sensitive attributes' logits.

Code [z, b]: z is sampled and regularised by the KL to N(0, I) as in any VAE; b holds one
deterministic logit per sensitive attribute (not sampled, no KL, no prior). Loss:
  recon(x | [z, b]) + KL(q(z|x) || N(0, I)) + alpha BCE(b, a) + gamma TC([z, b])
with a the attributes (0/1), BCE summed over attributes and averaged over the batch, and the
TC estimated as in FactorVAE by a discriminator that tells codes [z, b] from codes whose b
dims are each permuted across a second batch (z kept whole): samples of q(z) prod_j q(b_j).
The discriminator trains on detached codes (see factor_vae), so its loss never reaches the
encoder; only the gamma TC term, through the live codes, does.

Choices the paper leaves open, as made here:
- the sensitive attributes: every comparison or binary column the suite's sensitive expression
  combines (`alter > 25 and gastarb == 1` -> two b dims; `Male` -> one), each a 0/1 label;
- z_dim counts all code dims: b takes the last ones (DVGE appendix B: "the last one or two of
  the 10 dims"), z the rest;
- networks and optimisers are DVGE's Tables 3/4 and Appendix B (as DVGE compared them), alpha
  and gamma swept 1.0..6.4; defaults alpha 1.0, gamma 6.4 (FactorVAE's released value).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from fairbench.encoders.base import Batch, Draws, Values
from fairbench.encoders.factor_vae import FactorVAETrainer, permute_dims
from fairbench.errors import FairbenchError


class FFVAETrainer(FactorVAETrainer):
    """FactorVAE's networks and optimisers, with b supervised (alpha) and permuted alone (gamma)."""

    name = "ffvae"
    label = "FFVAE"
    defaults: dict[str, Any] = {**FactorVAETrainer.defaults, "alpha": 1.0}
    supervision = ("sensitive",)
    weights = ("alpha", "gamma")

    @classmethod
    def parts(cls, config: dict[str, Any], attributes: int) -> dict[str, list[int]]:
        cls.deterministic(config, attributes)
        free = config["z_dim"] - attributes
        return {"z": list(range(free)), "sensitive": list(range(free, config["z_dim"]))}

    @classmethod
    def deterministic(cls, config: dict[str, Any], attributes: int) -> int:
        if attributes >= config["z_dim"]:
            raise FairbenchError(
                f"encoder ffvae: z_dim {config['z_dim']} leaves no room besides {attributes} sensitive dims; "
                "raise z_dim"
            )
        return attributes

    def vae_terms(self, batch: Batch, eps: torch.Tensor, values: Values) -> tuple[torch.Tensor, Draws, torch.Tensor]:
        x, labels = batch  # type: ignore[misc]
        recon, kl, code = self.elbo_terms(x, eps, values)
        b = code[:, self.vae.stochastic :]
        bce = F.binary_cross_entropy_with_logits(b, labels["a"].to(b.dtype), reduction="sum") / len(x)
        loss = recon + kl + values["alpha"] * bce
        return loss, {"recon": recon, "kl": kl, "bce": bce}, code

    def permuted(self, z: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        split = self.vae.stochastic
        return torch.cat([z[:, :split], permute_dims(z[:, split:], uniform[:, split:])], 1)
