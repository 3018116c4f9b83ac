"""Representation learners for DVGE and its baselines (vanilla VAE, FactorVAE, FFVAE, FD-VAE),
trained once and kept as cached artifacts with the latent codes of every row."""

from fairbench.encoders.base import Latents, encoder_label, latent_codes, resolve_encoder

__all__ = ["Latents", "encoder_label", "latent_codes", "resolve_encoder"]
