"""Representation learners for DVGE and its baselines (vanilla VAE, FactorVAE) as cached
artifacts, and the sensitive classifier built on their codes."""

from fairbench.encoders.base import Latents, encoder_label, latent_codes, resolve_encoder
from fairbench.encoders.sensitive import Recipe, SensitiveClassifier, sensitive_classifier, sensitive_dims

__all__ = [
    "Latents",
    "Recipe",
    "SensitiveClassifier",
    "encoder_label",
    "latent_codes",
    "resolve_encoder",
    "sensitive_classifier",
    "sensitive_dims",
]
