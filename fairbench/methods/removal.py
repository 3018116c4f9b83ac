"""Sensitive dimensions removed (Creager et al. 2019; DVGE's comparison): g trained and
evaluated on the frozen VAE code with its sensitive dimensions zeroed.

FFVAE's and FD-VAE's encoders designate theirs (part "sensitive"). For encoders without
(vanilla VAE, FactorVAE) those are the dims most correlated (|Pearson r|) with the sensitive
group on the train split; how many is `removed_dims` (default: one per attribute the sensitive
expression reads).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fairbench.bounds import NON_NEGATIVE
from fairbench.data.base import TaskData
from fairbench.encoders import Latents
from fairbench.methods import papers
from fairbench.methods.base import HParam
from fairbench.methods.families.latent import (
    SHARED_BUDGETS,
    SHARED_HPARAMS,
    LatentCodeMethod,
    sensitive_dims,
    zero_dims,
)


class Removal(LatentCodeMethod):
    name = "removal"
    description = "baseline: train g on the VAE code with the sensitive dimensions zeroed"
    paper = papers.FFVAE
    hparams = {
        **{k: v for k, v in SHARED_HPARAMS.items() if k != "sens_epochs"},
        "removed_dims": HParam(0, "dims zeroed (0 = one per sensitive attribute)", bound=NON_NEGATIVE),
    }
    budgets = {name: {k: v for k, v in b.items() if k != "sens_epochs"} for name, b in SHARED_BUDGETS.items()}
    version = 2  # 2: the encoder draws its noise from its own stream (encoder artifact version 3)

    def g_codes(self, data: TaskData, latents: Latents) -> tuple[np.ndarray, dict[str, Any]]:
        p = self.params
        codes = latents.codes(p["latent"])
        count = p["removed_dims"] or max(1, len(data.sensitive_columns))
        # An encoder with designated sensitive dims (FFVAE's b) names them itself.
        dims = tuple(latents.parts.get("sensitive", ())) or sensitive_dims(codes, data.g, data.splits["train"], count)
        return zero_dims(codes, dims), {"removed_dims": list(dims)}
