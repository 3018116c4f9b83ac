"""Deployed models (FAAP section 5.1) as cached artifacts: a ResNet-18 split into g and f,
trained in one of four ways on a seeded share of the train split, then frozen.

Kinds:
- `normal`: cross-entropy on the target.
- `fair`: adversarial fair training (Zhang et al. 2018, FAAP's [30]): a discriminator on g's
  features predicts the protected attribute behind the gradient-reversal layer, so g learns
  to hide it; loss CE(f(g(x)), y) + adv_weight x CE(D(reverse(g(x))), z).
- `RG`: the same with the reversal turned the other way (scale -1: the gradient reaches g
  unchanged), so g learns to expose the attribute: the "reversed gradient" unfair model.
- `LF`: cross-entropy on labels flipped at random: a share `flip_rate` of the training rows
  whose label differs from their group's majority label get that majority label. Flipping
  uniformly at random would be symmetric label noise, which leaves y as independent of the
  group as before; the paper's LF models are meant to strengthen the spurious correlation
  between target and protected attribute (its Table 1: DP and DEO rise), so the flips go
  towards each group's majority. The paper gives no rate; 0.2 is our default: enough to
  raise DP and DEO, while every (group, label) cell keeps most of its true labels.

Paper recipe: 30 epochs, batch 64, Adam lr 5e-4, images resized to 224 (`size`); the job's
precision (bf16 autocast: a model of its own, keyed by it). The train
split is cut at random (seeded) into `fraction` for the deployed model and the rest for
FAAP (CelebA: two equal halves). The artifact key holds the task (inputs, target, sensitive),
the whole training config, the seed and a version: a second suite reuses the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fairbench.data.base import TaskData
from fairbench.errors import FairbenchError
from fairbench.nets.layers import reverse_gradient
from fairbench.nets.resnet import SplitClassifier, feature_discriminator, resnet18_split
from fairbench.train import Batch, JobContext, Trainer, as_input

KINDS = ("normal", "fair", "LF", "RG")
ARTIFACT_VERSION = 2  # 2: the ImageNet stem from 32 pixels up
# Gradient-reversal scale per adversarial kind: +1 hides the attribute, -1 passes the
# discriminator's gradient to g unchanged, strengthening it.
_REVERSAL = {"fair": 1.0, "RG": -1.0}


@dataclass(frozen=True)
class DeployedConfig:
    """Everything that determines a deployed model besides the task and the seed."""

    kind: str = "normal"
    size: int = 224
    epochs: int = 30
    batch_size: int = 64
    lr: float = 5e-4
    adv_weight: float = 1.0  # fair / RG: weight of the discriminator's loss
    flip_rate: float = 0.2  # LF: share of the group-minority labels flipped
    fraction: float = 0.5  # share of the train split that trains the deployed model

    def check(self) -> DeployedConfig:
        if self.kind not in KINDS:
            raise FairbenchError(f"deployed model kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not 0 < self.fraction < 1:
            raise FairbenchError(
                f"deployed_fraction must be in (0, 1), not {self.fraction}: the rest of the train split trains FAAP"
            )
        if not 0 <= self.flip_rate <= 1:
            raise FairbenchError(f"flip_rate must be in [0, 1], not {self.flip_rate}")
        if self.size < 8:
            raise FairbenchError(f"size must be at least 8 pixels, not {self.size}")
        return self


@dataclass
class Deployed:
    """A frozen deployed model (eval mode, no gradients to its parameters) and its artifact."""

    net: SplitClassifier
    config: DeployedConfig
    folder: Path
    built_now: bool

    @property
    def key(self) -> str:
        return self.folder.name


def prepare(batch: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 or float images to floats in [0, 1] at size x size (bilinear, antialiased)."""
    x = as_input(batch)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def split_train(rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut train rows at random into (deployed model's, FAAP's), sorted; seeded."""
    order = np.random.default_rng([seed, 5]).permutation(rows)
    cut = int(round(fraction * len(rows)))
    if cut == 0 or cut == len(rows):
        raise FairbenchError(
            f"deployed_fraction {fraction} of {len(rows)} train rows leaves one side empty; use more data"
        )
    return np.sort(order[:cut]), np.sort(order[cut:])


def flip_labels(y: np.ndarray, g: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """LF labels: a random share `rate` of the rows whose label is not their group's majority
    label get that majority label (see the module docstring)."""
    flipped = y.copy()
    rng = np.random.default_rng([seed, 7])
    for group in np.unique(g):
        in_group = g == group
        majority = int(y[in_group].mean() >= 0.5)
        minority = np.flatnonzero(in_group & (y != majority))
        chosen = rng.choice(minority, size=int(round(rate * len(minority))), replace=False)
        flipped[chosen] = majority
    return flipped


def deployed_key(data: TaskData, config: DeployedConfig, seed: int, precision: str = "fp32") -> dict[str, Any]:
    key = {
        "version": ARTIFACT_VERSION,
        "dataset": data.dataset,
        "input_key": data.input_key,
        "target": data.target,
        "sensitive": data.sensitive,
        "config": asdict(config),
        "seed": seed,
    }
    if precision != "fp32":  # fp32 models keep the keys they had before precision was a setting
        key["precision"] = precision
    return key


class DeployedTraining(torch.nn.Module):
    """What trains when a deployed model is built: the network, and for the fair / RG kinds the
    attribute discriminator behind the reversal layer."""

    def __init__(self, net: SplitClassifier, discriminator: torch.nn.Module | None) -> None:
        super().__init__()
        self.net, self.discriminator = net, discriminator


def train_deployed(
    data: TaskData, config: DeployedConfig, ctx: JobContext
) -> tuple[SplitClassifier, list[dict[str, float]]]:
    """Train one deployed model of `config.kind` on its share of the train split (seeded from ctx.seed)."""
    t = Trainer(data, ctx)
    net = resnet18_split(config.size, data.x.shape[1]).to(ctx.device)
    discriminator = feature_discriminator().to(ctx.device) if config.kind in _REVERSAL else None
    model = DeployedTraining(net, discriminator)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    rows = split_train(data.splits["train"], config.fraction, ctx.seed)[0]
    labels = data.y
    if config.kind == "LF":
        labels = data.y.copy()
        labels[rows] = flip_labels(data.y[rows], data.g[rows], config.flip_rate, ctx.seed)
        ctx.log.info(f"LF: {int((labels[rows] != data.y[rows]).sum())} of {len(rows)} labels flipped")
    y = torch.from_numpy(labels).to(ctx.device)
    z = torch.from_numpy(data.g).to(ctx.device)

    def update(batch: Batch) -> dict[str, torch.Tensor]:
        with t.autocast():
            features = net.g(prepare(t.x[batch.rows], config.size))
            task = F.cross_entropy(net.f(features), y[batch.rows])
            loss, attribute = task, torch.zeros((), device=task.device)
            if discriminator is not None:
                reversed_features = reverse_gradient(features, _REVERSAL[config.kind])
                attribute = F.cross_entropy(discriminator(reversed_features), z[batch.rows])
                loss = task + config.adv_weight * attribute
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return {"task_loss": task, "attribute_loss": attribute}

    fit = t.fit(
        model,
        update,
        epochs=config.epochs,
        batch_size=config.batch_size,
        train_rows=rows,
        min_batch=2,
        name=f"deployed {config.kind}",
    )
    return net.eval(), fit.history


def load_deployed(data: TaskData, config: DeployedConfig, ctx: Any) -> Deployed:
    """The deployed model for (task, config, ctx.seed, ctx.precision): trained once under the
    cache's lock, then read back; returned frozen. `ctx` is a RunContext (device, seed,
    precision, cache, log)."""
    config = config.check()
    key = deployed_key(data, config, ctx.seed, ctx.precision)

    def build(folder: Path) -> None:
        ctx.log.info(f"training deployed model {config.kind}")
        net, history = train_deployed(data, config, ctx)
        torch.save(net.state_dict(), folder / "model.pt")
        (folder / "train_log.json").write_text(json.dumps(history, indent=1))

    folder, built_now = ctx.cache.get("deployed", key, build)
    net = resnet18_split(config.size, data.x.shape[1])
    net.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    net = net.to(ctx.device).eval().requires_grad_(False)
    ctx.log.info(f"deployed model {config.kind}: {folder.name} ({'built' if built_now else 'reused'})")
    return Deployed(net, config, folder, built_now)


@torch.no_grad()
def predict(
    net: SplitClassifier,
    x: torch.Tensor,
    rows: np.ndarray,
    size: int,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """P(y = 1) of the deployed model on `rows` of `x`, each batch passed through `transform`
    (e.g. a perturbation) after resizing."""
    out = []
    for start in range(0, len(rows), batch_size):
        index = torch.from_numpy(rows[start : start + batch_size]).to(x.device)
        batch = prepare(x[index], size)
        if transform is not None:
            batch = transform(batch)
        out.append(torch.softmax(net(batch).float(), dim=1)[:, 1].cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)
