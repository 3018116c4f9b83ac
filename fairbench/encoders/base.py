"""Encoders as cached artifacts: config resolution, the shared training loop, latent codes.

An encoder is trained without labels on the train split, then frozen; its latent codes for
every row (posterior mean, log-variance and one seeded reparameterised sample) are stored with
it. The cache key is (data.input_key, encoder config, training settings, seed): for the
label-free encoders (DVGE's) it holds no target or sensitive attribute, so changing either
reuses the encoder (DVGE's flexibility). An encoder trained with labels (FFVAE, FD-VAE)
declares which (`supervision`), and its key holds those expressions too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from fairbench.data.base import TaskData
from fairbench.encoders.networks import VAE, reparameterise
from fairbench.errors import FairbenchError, did_you_mean
from fairbench.expressions import Expression
from fairbench.train import as_input, seed_everything, to_float

ARTIFACT_VERSION = 2  # 2: tables use the per-feature-scaled Gaussian
LIKELIHOODS = ("auto", "bernoulli", "gaussian")

# Settings every encoder has (the paper's VAE recipe, Appendix B).
COMMON_DEFAULTS: dict[str, Any] = {
    "z_dim": 10,
    "width": 1000,  # hidden width of the Table 4 MLPs (tables only)
    # auto: Bernoulli for images (the paper), Gaussian with std `sigma` x each feature's train
    # std for tables (see `reconstruction_loss` for why).
    "likelihood": "auto",
    "sigma": 0.25,
    "batch_size": 64,
    "lr": 1e-4,
    "beta1": 0.9,
    "beta2": 0.999,
}


# A training batch: the inputs, or (inputs, labels by name) for an encoder with `supervision`.
Batch = torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]


class EncoderTrainer:
    """One VAE variant: its defaults, its label in DVGE's naming, and one training step."""

    name: ClassVar[str]
    label: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    # The task parts the encoder trains on ("target", "sensitive"): its batches carry those
    # labels (see `task_labels`) and its artifact key holds those expressions.
    supervision: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def parts(cls, config: dict[str, Any], attributes: int) -> dict[str, list[int]]:
        """Named groups of code dims (a part named "sensitive" is the designated sensitive dims);
        `attributes` is the number of sensitive attributes of the task."""
        return {"z": list(range(config["z_dim"]))}

    @classmethod
    def deterministic(cls, config: dict[str, Any], attributes: int) -> int:
        """How many trailing code dims are point masses rather than sampled."""
        return 0

    def __init__(self, vae: VAE, settings: dict[str, Any], device: str) -> None:
        self.vae, self.settings, self.device = vae, settings, device
        # Per-feature train std (tables): the Gaussian likelihood's unit; set by train_encoder.
        self.feature_std: torch.Tensor | None = None
        self.optimiser = torch.optim.Adam(
            vae.parameters(), lr=settings["lr"], betas=(settings["beta1"], settings["beta2"])
        )

    def step(self, next_batch: Callable[[], Batch]) -> dict[str, float]:
        raise NotImplementedError

    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction loss, KL, sampled z) for a batch, both losses averaged over the batch.
        The KL covers the sampled dims only (point-mass dims have no prior)."""
        mu, logvar = self.vae.encode(x)
        z = reparameterise(mu, logvar)
        recon = reconstruction_loss(self.vae.decode(z), x, self.settings, self.feature_std)
        mu, logvar = mu[:, : self.vae.stochastic], logvar[:, : self.vae.stochastic]
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
        return recon, kl, z


def inputs_of(batch: Batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, tuple) else batch


def task_labels(data: TaskData, supervision: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-row labels an encoder trains on: `y` (target) for "target"; `g` (the group) and `a`
    (N x attributes: each comparison or column the sensitive expression combines, as 0/1) for
    "sensitive"."""
    labels: dict[str, np.ndarray] = {}
    if "target" in supervision:
        labels["y"] = data.y
    if "sensitive" in supervision:
        labels["g"] = data.g
        atoms = Expression(data.sensitive).atoms()
        labels["a"] = np.stack([atom.evaluate(data.attributes) for atom in atoms], 1).astype(np.float32)
    return labels


def attribute_count(data: TaskData) -> int:
    """How many sensitive attributes the task's group combines (FFVAE: one b dim each)."""
    return len(Expression(data.sensitive).atoms())


def reconstruction_loss(
    out: torch.Tensor, x: torch.Tensor, settings: dict[str, Any], feature_std: torch.Tensor | None = None
) -> torch.Tensor:
    """-log p(x|z) (up to a constant) summed over pixels/features, averaged over the batch.

    Images: Bernoulli (BCE with logits), as the paper and its released code. Tables
    ([0, 1]-scaled codes and ratios): Gaussian with std `sigma` x the feature's train std.
    Why: a Bernoulli likelihood on non-binary values leaves an irreducible floor (5.9 of 11.4
    nats on South German Credit) and rewards a code only by the features' total correlation,
    so the Table 4 VAE collapses to the prior (measured: KL < 0.01 nats after 3000
    iterations); a Gaussian with one fixed std encodes only the widest-spread attributes and
    favours the widest-spread ones. Scaling by each feature's spread asks every attribute for
    the same relative precision, whatever the range its [0, 1] encoding happens to use.
    """
    likelihood = settings["likelihood"]
    if likelihood == "auto":
        likelihood = "bernoulli" if x.dim() == 4 else "gaussian"
    out, target = out.flatten(1), x.flatten(1)
    if likelihood == "bernoulli":
        return F.binary_cross_entropy_with_logits(out, target, reduction="sum") / len(x)
    scale = settings["sigma"] if feature_std is None else settings["sigma"] * feature_std
    return 0.5 * ((out - target) / scale).pow(2).sum() / len(x)


def trainers() -> dict[str, type[EncoderTrainer]]:
    from fairbench.encoders.factor_vae import FactorVAETrainer
    from fairbench.encoders.fdvae import FDVAETrainer
    from fairbench.encoders.ffvae import FFVAETrainer
    from fairbench.encoders.vanilla_vae import VanillaVAETrainer

    return {cls.name: cls for cls in (VanillaVAETrainer, FactorVAETrainer, FFVAETrainer, FDVAETrainer)}


def resolve_encoder(config: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The full encoder config: the encoder's defaults overridden by `config`, checked and typed."""
    available = trainers()
    name = config.get("name")
    if name not in available:
        raise FairbenchError(f"{where}encoder: unknown name {name!r}{did_you_mean(str(name), available)}")
    defaults = {**COMMON_DEFAULTS, **available[name].defaults}
    resolved: dict[str, Any] = {"name": name, **defaults}
    for key, value in config.items():
        if key == "name":
            continue
        if key not in defaults:
            raise FairbenchError(
                f"{where}encoder '{name}' has no setting '{key}'{did_you_mean(key, defaults)}"
            )
        kind = type(defaults[key])
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise FairbenchError(f"{where}encoder.{key}: expected {kind.__name__}, got {value!r}")
        resolved[key] = value
    if resolved["likelihood"] not in LIKELIHOODS:
        raise FairbenchError(
            f"{where}encoder.likelihood: {resolved['likelihood']!r} is not one of {LIKELIHOODS}"
        )
    return resolved


def encoder_label(config: dict[str, Any]) -> str:
    """DVGE-D (disentangled, FactorVAE), DVGE-N (non-disentangled, vanilla VAE), or the
    baseline's own label (FFVAE, FD-VAE)."""
    return trainers()[config["name"]].label


def batch_stream(rows: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled full batches of `rows` (the last partial batch of a pass is dropped,
    as the released code's loader does; FactorVAE needs equal-sized batches)."""
    batch_size = min(batch_size, len(rows))
    while True:
        order = torch.randperm(len(rows), generator=generator).to(rows.device)
        for start in range(0, len(rows) - batch_size + 1, batch_size):
            yield rows[order[start : start + batch_size]]


@dataclass
class Latents:
    """Latent codes of every row of a task (row order of `data.x`) and where they are stored."""

    mean: np.ndarray
    logvar: np.ndarray
    sample: np.ndarray
    folder: Path
    built_now: bool
    config: dict[str, Any]
    parts: dict[str, list[int]]  # named groups of dims (EncoderTrainer.parts)

    def codes(self, latent: str) -> np.ndarray:
        """`mean` (the default) or `sample` (one seeded draw per row, as the released code)."""
        if latent not in ("mean", "sample"):
            raise FairbenchError(f"latent must be 'mean' or 'sample', got {latent!r}")
        return self.mean if latent == "mean" else self.sample

    @property
    def key(self) -> str:
        return self.folder.name


def encoder_key(data: TaskData, config: dict[str, Any], iterations: int, seed: int) -> dict[str, Any]:
    key = {
        "version": ARTIFACT_VERSION,
        "input_key": data.input_key,
        "encoder": config,
        "iterations": iterations,
        "seed": seed,
    }
    supervision = trainers()[config["name"]].supervision
    expressions = {"target": data.target, "sensitive": data.sensitive}
    if supervision:
        key["task"] = {part: expressions[part] for part in supervision}
    return key


def train_encoder(
    data: TaskData, config: dict[str, Any], iterations: int, seed: int, device: str, log: Callable[[str], Any]
) -> tuple[VAE, list[dict[str, float]]]:
    """Train a VAE of `config` on the train split for `iterations` steps; return it and a loss log."""
    generator = seed_everything(seed)
    kind = trainers()[config["name"]]
    deterministic = kind.deterministic(config, attribute_count(data))
    vae = VAE(tuple(data.x.shape[1:]), config["z_dim"], config["width"], deterministic).to(device)
    trainer = kind(vae, config, device)
    x = to_float(data.x, device)
    labels = {k: torch.from_numpy(v).to(device) for k, v in task_labels(data, kind.supervision).items()}
    if x.dim() == 2:
        # Constant features get unit scale rather than a division by zero.
        std = x[torch.from_numpy(data.splits["train"]).to(device)].std(0)
        trainer.feature_std = torch.where(std > 0, std, torch.ones_like(std))
    stream_ = batch_stream(torch.from_numpy(data.splits["train"]).to(device), config["batch_size"], generator)

    def next_batch() -> Batch:
        rows = next(stream_)
        if labels:
            return as_input(x[rows]), {k: v[rows] for k, v in labels.items()}
        return as_input(x[rows])

    history: list[dict[str, float]] = []
    every = max(1, iterations // 20)
    started = time.perf_counter()
    vae.train()
    for iteration in range(1, iterations + 1):
        losses = trainer.step(next_batch)
        if iteration % every == 0 or iteration == iterations:
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
    key = encoder_key(data, config, iterations, ctx.seed)

    def build(folder: Path) -> None:
        ctx.log.info(f"training encoder {config['name']} for {iterations} iterations -> {folder.name}")
        vae, history = train_encoder(data, config, iterations, ctx.seed, ctx.device, ctx.log.info)
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
        parts=trainers()[config["name"]].parts(config, attribute_count(data)),
    )
