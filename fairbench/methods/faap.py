"""FAAP: fairness-aware adversarial perturbation of a deployed model (Wang et al., CVPR 2022).

The deployed model f(g(x)) (fairbench.deployed: a ResNet-18 of kind normal | fair | LF | RG,
a cached artifact) is frozen; FAAP learns a generator G with x_hat = x + G(x),
||x_hat - x||_inf <= eps, such that a discriminator D on g's last-convolution features cannot
tell the protected attribute z while f still predicts y (Algorithm 1, alternating):

    L_D      = CE(D(g(x_hat)), z)                                    (eq. 3, alpha = 0 for D)
    L_G^fair = -CE(D(g(x_hat)), z) - alpha H(D(g(x_hat)))            (eq. 4)
    L_G^T    = CE(f(g(x_hat)), y)                                    (eq. 5)
    L_G      = L_G^fair + beta L_G^T                                 (eq. 6)

The entropy term pushes D's prediction towards a random guess rather than towards the other
group. G has the architecture family of the paper's reference [26], AdvGAN (Xiao et al. 2018;
`fairbench.nets.generators.AdvGANGenerator`), its output bounded by eps through a scaled
tanh; x_hat is then clipped to the image range [0, 1], which keeps the bound. D is
`feature_discriminator` (pool + MLP) on g's output only. The paper gives no values for
alpha, beta, the learning rates or FAAP's epochs: alpha 0.1 ("a relatively small value"),
beta 1, Adam 1e-3 for both (AdvGAN's), 10 epochs, batch 64 are our choices. G is trained on
the part of the train split the deployed model did not see (`deployed_fraction`); the last
epoch's G is kept.

Outcome: `scores` are the deployed model's predictions on perturbed val/test images, so the
framework's own metrics (acc, dp, eodds_sum = FAAP's DEO, ...) describe the model with FAAP.
`metrics` add acc, dp and eodds_sum on clean and on perturbed images, tagged
`deployed: <kind>` and `input: clean | perturbed`, for the before/after table (paper Table 1,
`TABLE_1`; `fairbench report --ablation` renders it).

Every training, the deployed models' and G's and the Ds', runs under the job's precision (bf16
autocast; a deployed model of its own per precision).

Black-box transfer (section 5.4): with `surrogates` set, G is trained against the ensemble of
those deployed kinds (their losses averaged) and evaluated on `deployed`, which it never saw.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict

import torch
import torch.nn.functional as F

from fairbench import metrics
from fairbench.bounds import FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_INT, SHARE, at_least
from fairbench.data.base import TaskData, TaskShape
from fairbench.deployed import KINDS, Deployed, DeployedConfig, load_deployed, predict, prepare, split_train
from fairbench.errors import FairbenchError
from fairbench.methods import papers
from fairbench.methods.base import HParam, Method, MetricRow, Outcome, RunContext, Work
from fairbench.nets.generators import AdvGANGenerator
from fairbench.nets.resnet import feature_discriminator
from fairbench.table_spec import ReportTable
from fairbench.train import Batch, Trainer

REPORTED = ("acc", "dp", "eodds_sum")

# Paper Table 1: each deployed kind before and after FAAP, one table per experiment. Transfer
# runs (a `surrogates` tag) make their own table per surrogate ensemble (section 5.4).
_TABLE_1_ROWS = {
    "row_header": "Deployed model",
    "metrics": {"acc": "ACC", "dp": "DP", "eodds_sum": "DEO"},
    "row_label": "{deployed}{input}",
    "row_labels": {
        "deployed": {
            "normal": "Normal training",
            "fair": "Fair training",
            "LF": "Unfair training (LF)",
            "RG": "Unfair training (RG)",
        },
        "input": {"clean": "", "perturbed": "+FAAP"},
    },
}
TABLE_1 = ReportTable(
    name="faap",
    caption="Deployed models before and after FAAP on the {split} split, {experiment}; mean ± std over seeds",
    row_tags=("deployed", "input"),
    where={"surrogates": None},
    **_TABLE_1_ROWS,
)
TRANSFER_TABLE = ReportTable(
    name="faap_transfer",
    caption="Deployed models before and after FAAP trained on {surrogates} (black-box transfer) "
    "on the {split} split, {experiment}; mean ± std over seeds",
    row_tags=("deployed", "input", "surrogates"),
    table_by=("surrogates",),
    **_TABLE_1_ROWS,
)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the softmax of `logits`; ln 2 at a uniform binary prediction."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(1).mean()


def fairness_loss(logits: torch.Tensor, z: torch.Tensor, alpha: float) -> torch.Tensor:
    """FAAP eq. 4: -CE(D(r_hat), z) - alpha H(D(r_hat))."""
    return -F.cross_entropy(logits, z) - alpha * entropy(logits)


def perturb(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """x_hat = x + delta clipped to ||x_hat - x||_inf <= eps and to the image range [0, 1]."""
    return (x + delta.clamp(-eps, eps)).clamp(0.0, 1.0)


class FAAP(Method):
    name = "faap"
    description = "fairness-aware adversarial perturbation: a generator hides the group from a frozen deployed model"
    paper = papers.FAAP
    defaults_from = {
        "alpha": "our choice",
        "beta": "our choice",
        "lr_g": "our choice",
        "lr_d": "our choice",
        "epochs": "our choice",
        "batch_size": "our choice",
    }
    hparams = {
        "deployed": HParam("normal", "deployed model kind: normal | fair | LF | RG (FAAP 5.1)", KINDS),
        "surrogates": HParam(
            (), "black-box transfer: train G against these kinds (an ensemble), evaluate on `deployed`"
        ),
        "size": HParam(224, "side the images are resized to (paper: 224)", bound=at_least(8)),
        "deployed_epochs": HParam(30, "deployed model's training epochs", bound=POSITIVE_INT),
        "deployed_batch_size": HParam(64, "deployed model's minibatch size", bound=POSITIVE_INT),
        "deployed_lr": HParam(5e-4, "deployed model's Adam learning rate", bound=POSITIVE),
        "deployed_fraction": HParam(
            0.5, "share of the train split that trains the deployed model (rest: FAAP)", bound=SHARE
        ),
        "adv_weight": HParam(
            1.0, "fair / RG deployed models: weight of the attribute discriminator's loss", bound=NON_NEGATIVE
        ),
        "flip_rate": HParam(
            0.2, "LF deployed model: share of group-minority labels flipped to the majority", bound=FRACTION
        ),
        "eps": HParam(0.05, "L-infinity bound of the perturbation (images in [0, 1])", bound=NON_NEGATIVE),
        "alpha": HParam(0.1, "weight of D's prediction entropy in G's fairness loss", bound=NON_NEGATIVE),
        "beta": HParam(1.0, "weight of the target loss through the frozen f", bound=NON_NEGATIVE),
        "epochs": HParam(10, "FAAP training epochs", bound=POSITIVE_INT),
        "batch_size": HParam(64, "FAAP minibatch size", bound=POSITIVE_INT),
        "lr_g": HParam(1e-3, "generator's Adam learning rate", bound=POSITIVE),
        "lr_d": HParam(1e-3, "discriminator's Adam learning rate", bound=POSITIVE),
    }
    budgets = {"paper": {}, "quick": {"deployed_epochs": 3, "epochs": 3}}
    report_tables = (TABLE_1, TRANSFER_TABLE)

    def deployed_config(self, kind: str) -> DeployedConfig:
        p = self.params
        return DeployedConfig(
            kind=kind,
            size=p["size"],
            epochs=p["deployed_epochs"],
            batch_size=p["deployed_batch_size"],
            lr=p["deployed_lr"],
            adv_weight=p["adv_weight"],
            flip_rate=p["flip_rate"],
            fraction=p["deployed_fraction"],
        )

    def work(self, shape: TaskShape) -> list[Work] | None:
        """Each deployed model (the evaluated kind and the surrogates; cached, so counted once per
        experiment and seed) on its share of the training rows, then G's epochs on the rest: G with
        one attacked model and its D, and each further attacked model (its forward and backward, and
        its D) as a workload of its own, so G is counted once whatever the ensemble's size."""
        if shape.input is None:
            return None
        p = self.params
        images = f"{shape.input[0]}x{p['size']}x{p['size']}"
        deployed_rows = round(p["deployed_fraction"] * shape.train_rows)
        models = [
            Work(
                f"deployed@{images}",
                p["deployed_epochs"] * deployed_rows,
                shared=json.dumps(["deployed", asdict(self.deployed_config(kind))], sort_keys=True),
            )
            for kind in [p["deployed"], *p["surrogates"]]
        ]
        further = max(len(p["surrogates"]) - 1, 0)
        rows = p["epochs"] * (shape.train_rows - deployed_rows)
        return [
            *models,
            Work(f"faap@{images}", rows),
            *([Work(f"faap+attacked@{images}", rows * further)] if further else []),
        ]

    def run(self, data: TaskData, ctx: RunContext) -> Outcome:
        p = self.params
        surrogates = tuple(p["surrogates"])
        unknown = [kind for kind in surrogates if kind not in KINDS]
        if unknown:
            raise FairbenchError(f"faap: surrogates {unknown} are not deployed kinds ({', '.join(KINDS)})")
        if p["deployed"] in surrogates:
            raise FairbenchError(f"faap: the evaluated deployed kind {p['deployed']!r} must not be a surrogate")
        target = load_deployed(data, self.deployed_config(p["deployed"]), ctx)
        attacked = [load_deployed(data, self.deployed_config(kind), ctx) for kind in surrogates] or [target]
        t = Trainer(data, ctx)
        x = t.x
        generator = self.train_generator(t, attacked)
        generator.eval()

        def with_faap(batch: torch.Tensor) -> torch.Tensor:
            return perturb(batch, generator(batch), p["eps"])

        tags = {"deployed": p["deployed"]} | ({"surrogates": "+".join(surrogates)} if surrogates else {})
        scores, rows = {}, []
        for split in ("val", "test"):
            index = data.splits[split]
            y, z = data.y[index], data.g[index]
            for tag, transform in (("clean", None), ("perturbed", with_faap)):
                probs = predict(target.net, x, index, p["size"], transform)
                values = metrics.evaluate(y, probs, z)
                rows += [MetricRow(split, name, values[name], tags | {"input": tag}) for name in REPORTED]
            scores[split] = probs
        rows.append(MetricRow("test", "perturbation_linf", self.largest_perturbation(x, data, generator), tags))
        info = {
            "deployed_artifact": target.key,
            "deployed_built_now": target.built_now,
            "surrogate_artifacts": [d.key for d in attacked] if surrogates else [],
        }
        return Outcome(scores=scores, metrics=rows, info=info)

    def train_generator(self, t: Trainer, attacked: list[Deployed]) -> AdvGANGenerator:
        """Algorithm 1 on FAAP's share of the train split, against every model in `attacked`
        (one model, or the surrogate ensemble) with one D per model; losses averaged."""
        p = self.params
        players = Players(AdvGANGenerator(t.data.x.shape[1], bound=p["eps"]), len(attacked)).to(t.device)
        opt_g = torch.optim.Adam(players.generator.parameters(), lr=p["lr_g"])
        opt_d = torch.optim.Adam(players.discriminators.parameters(), lr=p["lr_d"])
        models = [d.net for d in attacked]
        z = torch.from_numpy(t.data.g).to(t.device)

        def update(batch: Batch) -> dict[str, torch.Tensor]:
            x = prepare(t.x[batch.rows], p["size"])
            return faap_step(
                players, models, x, batch.y, z[batch.rows], opt_g, opt_d, p["eps"], p["alpha"], p["beta"], t.autocast
            )

        faap_rows = split_train(t.data.splits["train"], p["deployed_fraction"], t.seed)[1]
        t.fit(players, update, epochs=p["epochs"], batch_size=p["batch_size"], train_rows=faap_rows, name="faap")
        return players.generator

    def largest_perturbation(self, x: torch.Tensor, data: TaskData, generator: AdvGANGenerator) -> float:
        """max |x_hat - x| over the test images (at most eps by construction; reported as a check)."""
        size, eps, largest = self.params["size"], self.params["eps"], torch.zeros((), device=x.device)
        rows = data.splits["test"]
        with torch.no_grad():
            for start in range(0, len(rows), 256):
                clean = prepare(x[torch.from_numpy(rows[start : start + 256]).to(x.device)], size)
                largest = torch.maximum(largest, (perturb(clean, generator(clean), eps) - clean).abs().max())
        return largest.item()  # one host synchronisation, not one per batch


class Players(torch.nn.Module):
    """FAAP's trained players: the generator G and one discriminator D per attacked model."""

    def __init__(self, generator: AdvGANGenerator, n_discriminators: int) -> None:
        super().__init__()
        self.generator = generator
        self.discriminators = torch.nn.ModuleList(feature_discriminator() for _ in range(n_discriminators))


def faap_step(
    players: Players,
    models: list[torch.nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    eps: float,
    alpha: float,
    beta: float,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[str, torch.Tensor]:
    """One iteration of Algorithm 1: update each D on its model's features of x_hat (L_D), then
    G on L_G^fair + beta L_G^T; the models stay frozen. Returns the three losses. `autocast`:
    the job's arithmetic for the forward passes (Trainer.autocast)."""
    generator, discriminators = players.generator, players.discriminators
    with autocast():
        x_hat = perturb(x, generator(x), eps)
        features = [model.g(x_hat) for model in models]
        loss_d = sum(F.cross_entropy(d(r.detach()), z) for d, r in zip(discriminators, features)) / len(models)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    with autocast():
        loss_fair = sum(fairness_loss(d(r), z, alpha) for d, r in zip(discriminators, features)) / len(models)
        loss_t = sum(F.cross_entropy(m.f(r), y) for m, r in zip(models, features)) / len(models)
    opt_g.zero_grad(set_to_none=True)
    (loss_fair + beta * loss_t).backward()
    opt_g.step()
    return {"L_D": loss_d, "L_fair": loss_fair, "L_T": loss_t}
