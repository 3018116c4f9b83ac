"""What every encoder shares: the common settings, the trainer base class with its ELBO terms,
the reconstruction loss, the task labels a supervised encoder trains on, the batch stream, and
`Latents` (the codes an encoder artifact holds). The bottom of the package: it imports no encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fairbench.data.base import TaskData
from fairbench.encoders.networks import VAE, reparameterise
from fairbench.errors import FairbenchError
from fairbench.expressions import Expression
from fairbench.train import Arithmetic

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
# What one training step reads besides its batches: its random draws by name (`noise`), or the
# member's own values (`values`: loss weights, the tables' feature scale) by name.
Draws = dict[str, torch.Tensor]
Values = dict[str, float | torch.Tensor]


@dataclass(frozen=True)
class Phase:
    """One optimiser step of a training step: the networks it updates (keys of
    `EncoderTrainer.nets`), the settings naming its learning rate and betas, and whether it
    draws a batch of its own (else it reuses the previous phase's)."""

    nets: tuple[str, ...]
    lr: str = "lr"
    betas: tuple[str, str] = ("beta1", "beta2")
    fresh_batch: bool = False


class EncoderTrainer:
    """One VAE variant: its defaults, its label in DVGE's naming, its networks and its training
    step, written once for a training alone and for members stacked under vmap
    (fairbench.encoders.training): a step's randomness comes in as `noise` (each training's own
    stream), and what may differ between stacked members as `values`."""

    name: ClassVar[str]
    label: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    # The task parts the encoder trains on ("target", "sensitive"): its batches carry those
    # labels (see `task_labels`) and its artifact key holds those expressions.
    supervision: ClassVar[tuple[str, ...]] = ()
    # The optimiser steps of one training step, in order.
    phases: ClassVar[tuple[Phase, ...]] = (Phase(("vae",)),)
    # Settings that only weigh loss terms: members of a stack may differ in them.
    weights: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def parts(cls, config: dict[str, Any], attributes: int) -> dict[str, list[int]]:
        """Named groups of code dims (a part named "sensitive" is the designated sensitive dims);
        `attributes` is the number of sensitive attributes of the task."""
        return {"z": list(range(config["z_dim"]))}

    @classmethod
    def deterministic(cls, config: dict[str, Any], attributes: int) -> int:
        """How many trailing code dims are point masses rather than sampled."""
        return 0

    def __init__(self, vae: VAE, settings: dict[str, Any], device: str, arithmetic: Arithmetic | None = None) -> None:
        self.settings, self.device = settings, device
        # The engine's arithmetic: each phase's forward and loss run under its autocast, compiled
        # where it says so.
        self.arithmetic = arithmetic or Arithmetic("fp32", device)
        self.compiled_phase_loss = self.arithmetic.compiled(self.phase_loss)
        self.nets = nn.ModuleDict({"vae": vae, **self.extra_nets(vae, settings)}).to(device)
        # The tables' per-feature train std (`feature_std`, the Gaussian likelihood's unit) is
        # added by the training.
        self.values: Values = {name: settings[name] for name in self.weights}
        self.optimisers = [
            torch.optim.Adam(
                [p for net in phase.nets for p in self.nets[net].parameters()],
                lr=settings[phase.lr],
                betas=(settings[phase.betas[0]], settings[phase.betas[1]]),
            )
            for phase in self.phases
        ]

    @property
    def vae(self) -> VAE:
        return self.nets["vae"]  # type: ignore[return-value]

    def extra_nets(self, vae: VAE, settings: dict[str, Any]) -> dict[str, nn.Module]:
        """The networks trained beside the VAE (a discriminator, heads), built after it."""
        return {}

    def noise(self, batch_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        """The random draws of one step: name -> ("normal" | "uniform", shape)."""
        return {"eps": ("normal", (batch_size, self.vae.z_dim))}

    def phase_loss(
        self, phase: int, batch: Batch, noise: Draws, carry: Draws, values: Values
    ) -> tuple[torch.Tensor, Draws, Draws]:
        """Phase `phase`'s (loss, named terms, what the next phase reads). Reads the networks
        through `self.nets` only (a stack swaps their weights) and draws nothing itself."""
        raise NotImplementedError

    def step(self, next_batch: Callable[[], Batch], noise: Draws) -> dict[str, torch.Tensor]:
        """One training step alone; the named losses as detached tensors (read only when
        logged, so that a step never waits for the device)."""
        terms: dict[str, torch.Tensor] = {}
        carry: Draws = {}
        batch: Batch | None = None
        for index, (phase, optimiser) in enumerate(zip(self.phases, self.optimisers, strict=True)):
            if batch is None or phase.fresh_batch:
                batch = next_batch()
            with self.arithmetic.autocast():
                loss, named, carry = self.compiled_phase_loss(index, batch, noise, carry, self.values)
            optimiser.zero_grad(set_to_none=True)  # also drops what an earlier phase left there
            loss.backward()
            optimiser.step()
            terms |= {name: value.detach() for name, value in named.items()}
        return terms

    def elbo_terms(
        self, x: torch.Tensor, eps: torch.Tensor, values: Values
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction loss, KL, sampled z) for a batch, both losses averaged over the batch.
        The KL covers the sampled dims only (point-mass dims have no prior)."""
        mu, logvar = self.vae.encode(x)
        z = reparameterise(mu, logvar, eps)
        recon = reconstruction_loss(self.vae.decode(z), x, self.settings, values.get("feature_std"))
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
    out: torch.Tensor, x: torch.Tensor, settings: dict[str, Any], feature_std: float | torch.Tensor | None = None
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
