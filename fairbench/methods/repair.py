"""REPAIR (Li & Vasconcelos, CVPR 2019): resample the training set so that a given representation
of the bias no longer predicts the class, then train the task model on what is left.

Representation bias of a set for a representation phi is B = 1 - L / H: L is the cross-entropy of
the best classifier predicting the class y from phi(x) (the "bias classifier"), H the entropy of
the class distribution (B = 0: phi tells nothing about y; B near 1: phi gives y away). REPAIR
gives every training row a weight w_i = sigmoid(theta_i), computes L and H on the weighted set
(z_i = w_i / mean(w) per row, q_c = class c's share of the total weight) and solves the minimax by
alternating SGD steps on each minibatch: the bias classifier minimises L, the weights minimise B,
i.e. they grow on rows the bias classifier gets wrong and shrink on rows it gets right. The task
model is then trained (here: `erm` with this method's network parameters) on the rows kept.

Paper defaults (its released Colored MNIST script): linear bias classifier, SGD lr 1e-3 with
momentum 0.9; weights theta_i = 0 at the start, plain SGD lr 10; 200 epochs; batch 128; keep the
rows with w > 0.5 (its default of five strategies).

Choices the paper leaves open for GBA's setting, made here:
- The representation. REPAIR's bias classifier reads a representation phi and predicts the
  *class*; on its Colored MNIST phi is the digit's colour (per-channel maximum of the image).
  GBA's datasets give the bias label instead, so `representation: bias` (the default) uses phi =
  one-hot bias value (the colour class on Colored MNIST, grey/colour on CIFAR-10S, Male on
  CelebA): a bias classifier that can only use the bias attribute. `representation: color` is the
  paper's colour feature, for colour-biased image sets. A classifier predicting the bias label from
  the images (then minimising its accuracy) is not REPAIR: reweighting cannot remove colour from an
  image, and B would no longer measure how much the bias gives away the class.
- The final step. `resample: threshold` (default, the paper's) keeps rows with w > `threshold`;
  `sample` keeps each row with probability w (seeded); `reweight` draws as many rows as the
  training split with replacement, P(row) proportional to w (the weights used as a sampling
  distribution, the expectation of a w-weighted loss). All three give a row list, so the task model
  is ERM on the REPAIRed training split; validation and test rows are never reweighted.
- Only the training split is reweighted (the paper's script learns weights over train + test).
- The task model: GBA gives no recipe, so LfF's Colored MNIST one (Adam lr 1e-3, batch 256, 100
  epochs); `arch` picks the network (default mlp3, GBA's Colored MNIST MLP; resnet18 for CIFAR-10S
  and CelebA). An epoch is one pass over the kept rows, so a threshold that keeps few rows also
  means few steps, as in the paper.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fairbench.bounds import FRACTION, POSITIVE, POSITIVE_INT
from fairbench.data.base import TaskData
from fairbench.errors import FairbenchError
from fairbench.methods import papers
from fairbench.methods.base import HParam, Method, Outcome, RunContext
from fairbench.methods.erm import ERM
from fairbench.methods.families.branched import common_hparams
from fairbench.train import Batch, Trainer

REPRESENTATIONS = ("bias", "color")
RESAMPLING = ("threshold", "sample", "reweight")


def representation(data: TaskData, kind: str) -> np.ndarray:
    """phi(x) for every row: the one-hot bias value, or the per-channel maximum of an image."""
    if kind == "bias":
        bias = data.require_bias("repair")
        return np.eye(int(bias.max()) + 1, dtype=np.float32)[bias]
    if data.x.ndim != 4:
        raise FairbenchError(
            f"repair: representation 'color' needs images, and '{data.dataset}' is tabular; use representation: bias"
        )
    return data.x.reshape(len(data.x), data.x.shape[1], -1).max(axis=2).astype(np.float32) / 255.0


def weighted_terms(
    logits: torch.Tensor, y: torch.Tensor, w_rows: torch.Tensor, w_all: torch.Tensor, class_mass: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, H) on a minibatch: the weighted cross-entropy mean_i z_i CE_i and the weighted class
    entropy mean_i -z_i log q_{y_i}, with z_i = w_i / mean(all weights) and q = class_mass / sum."""
    z = w_rows / w_all.mean()
    q = class_mass / class_mass.sum()
    return (z * F.cross_entropy(logits, y, reduction="none")).mean(), -(z * q[y].log()).mean()


class Minimax(nn.Module):
    """REPAIR's two players: the bias classifier on phi, and the per-row logits theta of the weights."""

    def __init__(self, phi_width: int, n_classes: int, rows: int, device: str) -> None:
        super().__init__()
        self.classifier = nn.Linear(phi_width, n_classes).to(device)
        self.theta = nn.Parameter(torch.zeros(rows, device=device))


def learn_weights(
    t: Trainer, phi: torch.Tensor, epochs: int, lr: float, weight_lr: float, batch_size: int
) -> tuple[np.ndarray, float]:
    """REPAIR's minimax on (phi, y) of the train rows (phi: one row per train row): returns the
    weights w in (0, 1) and the final bias B(w)."""
    y = t.y[t.rows("train")]
    model = Minimax(phi.shape[1], t.data.n_classes, len(y), t.device)
    optimiser = torch.optim.SGD(model.classifier.parameters(), lr=lr, momentum=0.9)
    weight_optimiser = torch.optim.SGD([model.theta], lr=weight_lr)
    one_hot = F.one_hot(y, t.data.n_classes).float()

    def update(batch: Batch) -> dict[str, torch.Tensor]:
        rows = batch.positions
        w = torch.sigmoid(model.theta)
        logits = model.classifier(phi[rows])
        # The classifier's step sees the weights as constants, the weights' step the classifier.
        loss, _ = weighted_terms(logits, y[rows], w[rows].detach(), w.detach(), one_hot.T @ w.detach())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        weighted, entropy = weighted_terms(logits.detach(), y[rows], w[rows], w, one_hot.T @ w)
        bias = 1 - weighted / entropy
        weight_optimiser.zero_grad(set_to_none=True)
        bias.backward()
        weight_optimiser.step()
        return {"classifier": loss, "bias": bias}

    t.fit(model, update, epochs=epochs, batch_size=batch_size, name="minimax")
    with torch.no_grad():
        w = torch.sigmoid(model.theta)
        loss, entropy = weighted_terms(model.classifier(phi), y, w, w, one_hot.T @ w)
    return w.cpu().numpy(), float(1 - loss / entropy)


def kept_rows(w: np.ndarray, mode: str, threshold: float, rng: np.random.Generator) -> np.ndarray:
    """Positions (into w) of the resampled training set."""
    if mode == "threshold":
        return np.flatnonzero(w > threshold)
    if mode == "sample":
        return np.flatnonzero(rng.random(len(w)) < w)
    return np.sort(rng.choice(len(w), size=len(w), replace=True, p=w / w.sum()))


class Repair(Method):
    name = "repair"
    description = "REPAIR: resample the training set so the bias representation stops predicting the class"
    paper = papers.REPAIR
    defaults_from = {
        "repair_lr": "released code",
        "weight_lr": "released code",
        "repair_epochs": "released code",
        "repair_batch_size": "released code",
        "threshold": "released code",
        "resample": "released code",
        "epochs": "our choice",
        "lr": "our choice",
        "batch_size": "our choice",
        "representation": "our choice",
    }
    hparams = {
        **common_hparams(arch="mlp3", epochs=100, lr=1e-3, batch_size=256, select="acc"),
        "representation": HParam(
            "bias",
            "what the bias classifier reads: bias (one-hot bias label) | color (per-channel max)",
            REPRESENTATIONS,
        ),
        "repair_epochs": HParam(200, "epochs of the weight/bias-classifier minimax", bound=POSITIVE_INT),
        "repair_lr": HParam(1e-3, "SGD (momentum 0.9) learning rate of the bias classifier", bound=POSITIVE),
        "weight_lr": HParam(10.0, "SGD learning rate of the per-row logits theta (w = sigmoid(theta))", bound=POSITIVE),
        "repair_batch_size": HParam(128, "minibatch size of the minimax", bound=POSITIVE_INT),
        "resample": HParam(
            "threshold",
            "final step: threshold (keep w > threshold) | sample (keep with prob. w) | reweight (n draws, P ~ w)",
            RESAMPLING,
        ),
        "threshold": HParam(0.5, "resample: threshold keeps the rows whose weight exceeds this", bound=FRACTION),
    }
    budgets = {"paper": {}, "quick": {"epochs": 20, "repair_epochs": 50}}

    def run(self, data: TaskData, ctx: RunContext) -> Outcome:
        p = self.params
        phi_all = representation(data, p["representation"])
        train = data.splits["train"]
        phi = torch.from_numpy(phi_all[train]).to(ctx.device)
        w, bias = learn_weights(
            Trainer(data, ctx), phi, p["repair_epochs"], p["repair_lr"], p["weight_lr"], p["repair_batch_size"]
        )
        keep = train[kept_rows(w, p["resample"], p["threshold"], ctx.numpy_generator())]
        if len(keep) < 2:
            raise FairbenchError(
                f"repair: resample '{p['resample']}' kept {len(keep)} of {len(train)} training rows "
                f"(largest weight {w.max():.3f}); lower `threshold` or use resample: reweight"
            )
        task = ERM({name: p[name] for name in ERM.hparams})
        outcome = task.run(dataclasses.replace(data, splits={**data.splits, "train": keep}), ctx)
        outcome.info |= {"repair_bias": bias, "kept_rows": int(len(keep)), "weight_mean": float(w.mean())}
        return outcome
