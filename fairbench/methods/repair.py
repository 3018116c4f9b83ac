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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fairbench.bounds import FRACTION, POSITIVE, POSITIVE_INT
from fairbench.data.base import TaskData, TaskShape
from fairbench.errors import FairbenchError
from fairbench.methods import papers
from fairbench.methods.base import HParam, Method, Outcome, RunContext, Work, check_stack
from fairbench.methods.erm import ERM
from fairbench.methods.families.branched import common_hparams
from fairbench.methods.families.trained import SMALL_NETWORKS
from fairbench.train import Member, Trainer, Unstackable, fit_members, minibatches

REPRESENTATIONS = ("bias", "color")
# The minimax's rows per second at its batch of 128 (bench/bench_gpu.py), for dry-run estimates.
MINIMAX_WORKLOAD = "repair:minimax"
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
    """REPAIR's two players over the training rows: the bias classifier on phi, and the per-row
    logits theta of the weights. The rows' phi and classes are buffers, so that each member of a
    stack holds its own."""

    def __init__(self, phi: torch.Tensor, y: torch.Tensor, n_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(phi.shape[1], n_classes).to(phi.device)
        self.theta = nn.Parameter(torch.zeros(len(y), dtype=phi.dtype, device=phi.device))
        self.register_buffer("phi", phi)
        self.register_buffer("y", y)
        self.register_buffer("one_hot", F.one_hot(y, n_classes).to(phi.dtype))

    def objectives(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both players' objectives on the training rows at `rows`: the classifier's weighted
        cross-entropy L (the weights held constant) and the bias B = 1 - L / H (the classifier's
        logits held constant). Their sum, descended once, steps each player on its own
        objective's gradient at the same point, as REPAIR's alternating steps do."""
        w = torch.sigmoid(self.theta)
        logits = self.classifier(self.phi[rows])
        y = self.y[rows]
        loss, _ = weighted_terms(logits, y, w[rows].detach(), w.detach(), self.one_hot.T @ w.detach())
        weighted, entropy = weighted_terms(logits.detach(), y, w[rows], w, self.one_hot.T @ w)
        bias = 1 - weighted / entropy
        return {"loss": loss + bias, "classifier": loss, "bias": bias}

    @torch.no_grad()
    def weights(self) -> tuple[np.ndarray, float]:
        """The weights w in (0, 1) of the training rows and the bias B(w) of the whole set."""
        w = torch.sigmoid(self.theta)
        loss, entropy = weighted_terms(self.classifier(self.phi), self.y, w, w, self.one_hot.T @ w)
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
    stacks_seeds = True

    @classmethod
    def stacking_text(cls) -> str:
        small = ", ".join(f"`{arch}`" for arch in sorted(SMALL_NETWORKS))
        return (
            "seeds train together: their minimax games as one batched model, then their task models as one "
            f"where the resampled training sets have one size (`resample: reweight`) and `arch` is {small}."
        )

    def work(self, shape: TaskShape) -> list[Work] | None:
        """The minimax's passes over the training rows, then the task model's (ERM's), which
        stack only under `resample: reweight`. The task model's passes are over every training
        row: an upper bound under `threshold` and `sample`, which keep fewer."""
        task = ERM(self.task_params()).work(shape)
        if task is None:
            return None
        reweight = self.params["resample"] == "reweight"
        minimax = Work(MINIMAX_WORKLOAD, self.params["repair_epochs"] * shape.train_rows, stackable=True)
        return [minimax, *(dataclasses.replace(w, stackable=w.stackable and reweight) for w in task)]

    def run(self, data: TaskData, ctx: RunContext) -> Outcome:
        """The minimax on the engine, the resampling, then ERM on the rows kept."""
        repaired, info = self.resample(self.learn_weights(data, ctx), data, ctx)
        return self.task_outcome(ERM(self.task_params()).run(repaired, ctx), info)

    def learn_weights(self, data: TaskData, ctx: RunContext) -> Minimax:
        """Seed, build the players, and play the minimax on the engine's loop."""
        p = self.params
        model, t = self.players(data, ctx)
        optimizer = self.optimizer(model)
        t.fit(
            model,
            lambda batch: t.descend(optimizer, model.objectives, batch.positions),
            epochs=p["repair_epochs"],
            batch_size=p["repair_batch_size"],
            name="minimax",
        )
        return model

    @classmethod
    def run_stacked(cls, params: list[dict[str, Any]], data: list[TaskData], ctxs: list[RunContext]) -> list[Outcome]:
        """The members' minimax games as one batched model, then their ERM task models stacked
        where their resampled training sets have one size (else one by one)."""
        check_stack(cls, params, ctxs)
        methods = [cls(p) for p in params]
        try:
            players = cls.learn_weights_stacked(methods, data, ctxs)
        except Unstackable as reason:
            ctxs[0].log.info(f"{len(params)} members trained one by one: {reason}")
            return super().run_stacked(params, data, ctxs)
        repaired = [m.resample(model, d, ctx) for m, model, d, ctx in zip(methods, players, data, ctxs, strict=True)]
        outcomes = ERM.run_stacked([m.task_params() for m in methods], [r for r, _ in repaired], ctxs)
        return [m.task_outcome(o, info) for m, o, (_, info) in zip(methods, outcomes, repaired, strict=True)]

    @staticmethod
    def learn_weights_stacked(methods: list[Repair], data: list[TaskData], ctxs: list[RunContext]) -> list[Minimax]:
        """`learn_weights` of every member at once: their minimax games as one batched model
        (raises Unstackable where they cannot be)."""
        players = [m.players(d, ctx) for m, d, ctx in zip(methods, data, ctxs, strict=True)]
        p = methods[0].params
        members = [
            Member(
                trainer=t,
                model=model,
                values={},
                score_val=None,
                batches=lambda n, t=t: minibatches(n, p["repair_batch_size"], t.generator),
                name=f"minimax seed {t.seed}",
            )
            for model, t in players
        ]
        fit_members(
            members,
            lambda model, batch, values: model.objectives(batch.positions),
            methods[0].optimizer,
            epochs=p["repair_epochs"],
        )
        return [model for model, _ in players]

    def players(self, data: TaskData, ctx: RunContext) -> tuple[Minimax, Trainer]:
        """Seed (the engine's Trainer), then build the minimax's players on the training rows."""
        train = data.splits["train"]
        phi = representation(data, self.params["representation"])[train]
        t = Trainer(data, ctx)
        model = Minimax(
            torch.from_numpy(phi).to(t.device, torch.get_default_dtype()), t.y[t.rows("train")], data.n_classes
        )
        return model, t

    def optimizer(self, model: Minimax) -> torch.optim.Optimizer:
        """SGD with momentum 0.9 for the bias classifier, plain SGD for the weights' logits."""
        p = self.params
        return torch.optim.SGD(
            [
                {"params": model.classifier.parameters(), "lr": p["repair_lr"], "momentum": 0.9},
                {"params": [model.theta], "lr": p["weight_lr"]},
            ],
            lr=p["repair_lr"],
        )

    def resample(self, model: Minimax, data: TaskData, ctx: RunContext) -> tuple[TaskData, dict[str, Any]]:
        """The task with its training split REPAIRed (the rows kept from the learned weights), and
        what the job records of the weights."""
        p = self.params
        w, bias = model.weights()
        train = data.splits["train"]
        keep = train[kept_rows(w, p["resample"], p["threshold"], ctx.numpy_generator())]
        if len(keep) < 2:
            raise FairbenchError(
                f"repair: resample '{p['resample']}' kept {len(keep)} of {len(train)} training rows "
                f"(largest weight {w.max():.3f}); lower `threshold` or use resample: reweight"
            )
        repaired = dataclasses.replace(data, splits={**data.splits, "train": keep})
        return repaired, {"repair_bias": bias, "kept_rows": int(len(keep)), "weight_mean": float(w.mean())}

    def task_params(self) -> dict[str, Any]:
        """The task model's parameters: ERM's, from this method's."""
        return {name: self.params[name] for name in ERM.hparams}

    @staticmethod
    def task_outcome(outcome: Outcome, info: dict[str, Any]) -> Outcome:
        outcome.info |= info
        return outcome
