"""The encoders by name: each VAE variant's trainer, the full config of a named encoder, its label.

The top of the package but `artifact`: it imports every concrete encoder; they import `base` (and
FFVAE FactorVAE), never this module.
"""

from __future__ import annotations

from typing import Any

from fairbench.encoders.base import COMMON_DEFAULTS, LIKELIHOODS, EncoderTrainer
from fairbench.encoders.factor_vae import FactorVAETrainer
from fairbench.encoders.fdvae import FDVAETrainer
from fairbench.encoders.ffvae import FFVAETrainer
from fairbench.encoders.vanilla_vae import VanillaVAETrainer
from fairbench.errors import FairbenchError, did_you_mean

TRAINERS: dict[str, type[EncoderTrainer]] = {
    cls.name: cls for cls in (VanillaVAETrainer, FactorVAETrainer, FFVAETrainer, FDVAETrainer)
}


def resolve_encoder(config: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The full encoder config: the encoder's defaults overridden by `config`, checked and typed."""
    name = config.get("name")
    if name not in TRAINERS:
        raise FairbenchError(f"{where}encoder: unknown name {name!r}{did_you_mean(str(name), TRAINERS)}")
    defaults = {**COMMON_DEFAULTS, **TRAINERS[name].defaults}
    resolved: dict[str, Any] = {"name": name, **defaults}
    for key, value in config.items():
        if key == "name":
            continue
        if key not in defaults:
            raise FairbenchError(f"{where}encoder '{name}' has no setting '{key}'{did_you_mean(key, defaults)}")
        kind = type(defaults[key])
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise FairbenchError(f"{where}encoder.{key}: expected {kind.__name__}, got {value!r}")
        resolved[key] = value
    if resolved["likelihood"] not in LIKELIHOODS:
        raise FairbenchError(f"{where}encoder.likelihood: {resolved['likelihood']!r} is not one of {LIKELIHOODS}")
    return resolved


def encoder_label(config: dict[str, Any]) -> str:
    """DVGE-D (disentangled, FactorVAE), DVGE-N (non-disentangled, vanilla VAE), or the
    baseline's own label (FFVAE, FD-VAE)."""
    return TRAINERS[config["name"]].label
