"""The base class of methods trained on a cached encoder's latent codes."""

from __future__ import annotations

from typing import Any

from fairbench.encoders import resolve_encoder
from fairbench.methods.base import Method


class LatentCodeMethod(Method):
    """A method trained on a cached encoder's latent codes (dvge, removal, ffvae, fdvae)."""

    @classmethod
    def resolve(cls, params: dict[str, Any], budget: str, where: str = "") -> dict[str, Any]:
        """Also fills and checks the encoder config, so a typo fails at validation time."""
        resolved = super().resolve(params, budget, where)
        resolved["encoder"] = resolve_encoder(resolved["encoder"], where)
        return resolved
