"""The job's random streams. The engine seeds Python, NumPy and torch from the job's seed when a
training starts, and hands out named streams, so a method never seeds anything itself."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def stream(seed: int, *labels: Any) -> torch.Generator:
    """A CPU generator seeded from (seed, labels): one named, reproducible RNG stream, the same
    for a member trained alone or inside a stack."""
    digest = hashlib.sha256(json.dumps([seed, *labels], sort_keys=True, default=str).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
