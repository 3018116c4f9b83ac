"""Representation learners for DVGE and its baselines (vanilla VAE, FactorVAE, FFVAE, FD-VAE),
trained once and kept as cached artifacts with the latent codes of every row.

Modules import one way: `base` (the shared trainer, losses, `Latents`) <- the concrete encoders
<- `catalog` (the encoders by name) <- `training` (one encoder alone, or several as one stacked
model) <- `artifact` (caching the codes).
"""

from fairbench.encoders.artifact import latent_codes, latent_codes_many
from fairbench.encoders.base import Latents
from fairbench.encoders.catalog import encoder_label, resolve_encoder

__all__ = ["Latents", "encoder_label", "latent_codes", "latent_codes_many", "resolve_encoder"]
