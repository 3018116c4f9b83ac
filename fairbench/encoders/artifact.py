"""An encoder as a cached artifact: trained once on the train split, then frozen, with the latent
codes of every row (posterior mean, log-variance and one seeded reparameterised sample).

The cache key is (data.input_key, encoder config, training settings, seed): for the label-free
encoders (DVGE's) it holds no target or sensitive attribute, so changing either reuses the
encoder (DVGE's flexibility). An encoder trained with labels (FFVAE, FD-VAE) declares which
(`supervision`), and its key holds those expressions too.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairbench.artifacts import key_hash
from fairbench.data.base import TaskData
from fairbench.encoders.base import Latents, attribute_count
from fairbench.encoders.catalog import TRAINERS, resolve_encoder
from fairbench.encoders.networks import VAE
from fairbench.encoders.training import train_encoders
from fairbench.train import as_input, to_float

# 2: tables use the per-feature-scaled Gaussian; 3: each training draws its noise from its own stream
ARTIFACT_VERSION = 3


def encoder_key(
    data: TaskData, config: dict[str, Any], iterations: int, seed: int, precision: str = "fp32"
) -> dict[str, Any]:
    key = {
        "version": ARTIFACT_VERSION,
        "input_key": data.input_key,
        "encoder": config,
        "iterations": iterations,
        "seed": seed,
    }
    if precision != "fp32":  # fp32 encoders keep the keys they had before precision was a setting
        key["precision"] = precision
    supervision = TRAINERS[config["name"]].supervision
    expressions = {"target": data.target, "sensitive": data.sensitive}
    if supervision:
        key["task"] = {part: expressions[part] for part in supervision}
    return key


@torch.no_grad()
def encode_all(vae: VAE, data: TaskData, device: str, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and log-variance of every row."""
    vae.eval()
    x = to_float(data.x, device)
    means, logvars = [], []
    for start in range(0, len(x), chunk):
        mu, logvar = vae.encode(as_input(x[start : start + chunk]))
        means.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
    return torch.cat(means).numpy(), torch.cat(logvars).numpy()


def latent_codes(data: TaskData, config: dict[str, Any], iterations: int, ctx: Any) -> Latents:
    """The encoder artifact for (data inputs, config, iterations, seed): built once, then read.

    `ctx` is a RunContext (device, seed, cache, log).
    """
    return latent_codes_many([data], [config], iterations, [ctx])[0]


def latent_codes_many(
    tasks: Sequence[TaskData], configs: Sequence[dict[str, Any]], iterations: int, ctxs: Sequence[Any]
) -> list[Latents]:
    """`latent_codes` of several members (task, config, job context each; one device and
    precision): the encoders not yet built train together (`train_encoders`: stacked where
    they can be), each stored under its own key, as if it had trained alone."""
    configs = [resolve_encoder(config) for config in configs]
    first = ctxs[0]
    precision = first.precision
    keys = [
        encoder_key(task, config, iterations, ctx.seed, precision)
        for task, config, ctx in zip(tasks, configs, ctxs, strict=True)
    ]
    keys_hash = [key_hash(key) for key in keys]

    def build(missing: list[int]) -> list[Callable[[Path], None]]:
        names = ", ".join(f"{configs[i]['name']} (seed {ctxs[i].seed}) -> {keys_hash[i]}" for i in missing)
        first.log.info(f"training {names} for {iterations} iterations ({precision})")
        trained = train_encoders(
            [tasks[i] for i in missing],
            [configs[i] for i in missing],
            iterations,
            [ctxs[i].seed for i in missing],
            first.device,
            first.log.info,
            precision,
            first.compile,
        )
        return [
            functools.partial(_store, vae, history, tasks[i], ctxs[i].seed, first.device)
            for i, (vae, history) in zip(missing, trained, strict=True)
        ]

    built = first.cache.get_many("encoder", keys, build)
    return [
        Latents(
            mean=np.load(folder / "mean.npy"),
            logvar=np.load(folder / "logvar.npy"),
            sample=np.load(folder / "sample.npy"),
            folder=folder,
            built_now=built_now,
            config=config,
            parts=TRAINERS[config["name"]].parts(config, attribute_count(task)),
        )
        for (folder, built_now), task, config in zip(built, tasks, configs, strict=True)
    ]


def _store(vae: VAE, history: list[dict[str, float]], data: TaskData, seed: int, device: str, folder: Path) -> None:
    """Write a trained encoder's artifact: its weights, every row's codes, its loss log."""
    mean, logvar = encode_all(vae, data, device)
    # One seeded reparameterised sample per row: the released code's dumped codes.
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed)).numpy()
    sample = (mean + eps * np.exp(0.5 * logvar)).astype(np.float32)
    torch.save(vae.state_dict(), folder / "encoder.pt")
    np.save(folder / "mean.npy", mean)
    np.save(folder / "logvar.npy", logvar)
    np.save(folder / "sample.npy", sample)
    (folder / "train_log.json").write_text(json.dumps(history, indent=1))
