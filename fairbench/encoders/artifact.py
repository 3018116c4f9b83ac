"""An encoder as a cached artifact: trained once on the train split, then frozen, with the latent
codes of every row (posterior mean, log-variance and one seeded reparameterised sample).

The cache key is (data.input_key, encoder config, training settings, seed): for the label-free
encoders (DVGE's) it holds no target or sensitive attribute, so changing either reuses the
encoder (DVGE's flexibility). An encoder trained with labels (FFVAE, FD-VAE) declares which
(`supervision`), and its key holds those expressions too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairbench.data.base import TaskData
from fairbench.encoders.base import Batch, Latents, attribute_count, batch_stream, task_labels
from fairbench.encoders.catalog import TRAINERS, resolve_encoder
from fairbench.encoders.networks import VAE
from fairbench.train import Arithmetic, as_input, seed_everything, to_float

ARTIFACT_VERSION = 2  # 2: tables use the per-feature-scaled Gaussian


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


def train_encoder(
    data: TaskData,
    config: dict[str, Any],
    iterations: int,
    seed: int,
    device: str,
    log: Callable[[str], Any],
    precision: str = "fp32",
) -> tuple[VAE, list[dict[str, float]]]:
    """Train a VAE of `config` on the train split for `iterations` steps in the engine's
    arithmetic (`precision`); return it and a loss log (the losses read every 1/20 of the run)."""
    generator = seed_everything(seed)
    arithmetic = Arithmetic(precision, device)
    kind = TRAINERS[config["name"]]
    deterministic = kind.deterministic(config, attribute_count(data))
    vae = arithmetic.place(VAE(tuple(data.x.shape[1:]), config["z_dim"], config["width"], deterministic))
    trainer = kind(vae, config, device, arithmetic)
    x = to_float(data.x, device)
    labels = {k: torch.from_numpy(v).to(device) for k, v in task_labels(data, kind.supervision).items()}
    if x.dim() == 2:
        # Constant features get unit scale rather than a division by zero.
        std = x[torch.from_numpy(data.splits["train"]).to(device)].std(0)
        trainer.feature_std = torch.where(std > 0, std, torch.ones_like(std))
    stream_ = batch_stream(torch.from_numpy(data.splits["train"]).to(device), config["batch_size"], generator)

    def next_batch() -> Batch:
        rows = next(stream_)
        inputs = arithmetic.layout(as_input(x[rows]))
        return (inputs, {k: v[rows] for k, v in labels.items()}) if labels else inputs

    history: list[dict[str, float]] = []
    every = max(1, iterations // 20)
    started = time.perf_counter()
    vae.train()
    for iteration in range(1, iterations + 1):
        losses = trainer.step(next_batch)
        if iteration % every == 0 or iteration == iterations:
            losses = {name: value.item() for name, value in losses.items()}
            history.append({"iteration": iteration, **losses})
            log(
                f"{config['name']} {iteration}/{iterations} "
                + " ".join(f"{k} {v:.3f}" for k, v in losses.items())
                + f" ({time.perf_counter() - started:.0f} s)"
            )
    vae.eval()
    return vae, history


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
    config = resolve_encoder(config)
    precision = getattr(ctx, "precision", "fp32")
    key = encoder_key(data, config, iterations, ctx.seed, precision)

    def build(folder: Path) -> None:
        ctx.log.info(f"training encoder {config['name']} for {iterations} iterations ({precision}) -> {folder.name}")
        vae, history = train_encoder(data, config, iterations, ctx.seed, ctx.device, ctx.log.info, precision)
        mean, logvar = encode_all(vae, data, ctx.device)
        # One seeded reparameterised sample per row: the released code's dumped codes.
        eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(ctx.seed)).numpy()
        sample = (mean + eps * np.exp(0.5 * logvar)).astype(np.float32)
        torch.save(vae.state_dict(), folder / "encoder.pt")
        np.save(folder / "mean.npy", mean)
        np.save(folder / "logvar.npy", logvar)
        np.save(folder / "sample.npy", sample)
        (folder / "train_log.json").write_text(json.dumps(history, indent=1))

    folder, built_now = ctx.cache.get("encoder", key, build)
    return Latents(
        mean=np.load(folder / "mean.npy"),
        logvar=np.load(folder / "logvar.npy"),
        sample=np.load(folder / "sample.npy"),
        folder=folder,
        built_now=built_now,
        config=config,
        parts=TRAINERS[config["name"]].parts(config, attribute_count(data)),
    )
