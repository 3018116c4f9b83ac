"""DVGE: debiasing via gradient-based explanation on a frozen VAE code (papers/dvge.md).

Pipeline, every stage a cached artifact except the last:
1. encoder f (FactorVAE -> DVGE-D, vanilla VAE -> DVGE-N), trained without labels;
2. sensitive classifier d on z, and its focus F_d(z) for every row (fixed: d and z are frozen);
3. downstream g trained on z' = z + Clip_eps(eta1 F_d(z) - eta2 F_g(z)), eps = 0.1 |z| per
   sample and dimension (eqs. 8-9), F_g from the current g each step; inference on z itself.

The focus F (`focus`): by default (`loss`, the paper) the gradient w.r.t. z of the model's
cross-entropy against its own prediction (argmax), summed over the batch and detached, so
+eta1 F_d moves z away from d's prediction (section 4.4, appendix B.3) and -eta2 F_g towards
g's. `logit` is the released code's choice (FullGrad of the predicted logit), which points the
other way; it stays for comparison.

The members of an eta grid train together as one stacked model (`run_stack`), with the members
of other seeds where their tasks share rows and labels, and the encoders of several seeds train
together too (`LatentCodeMethod.run_stacked`); `run` is the same code with one member, so a
member's result does not depend on what it was stacked with.

With `ablation: true`, members with eta2 = 0 also report the paper's Tables 1/2/5/6 rows
(metric `sens_acc`, see `ablation_rows`), which `fairbench report --ablation` renders (`ABLATION_TABLE`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fairbench.bounds import NON_NEGATIVE
from fairbench.data.base import TaskData, TaskShape
from fairbench.encoders import Latents, encoder_label
from fairbench.methods import papers
from fairbench.methods.base import HParam, MetricRow, Outcome, RunContext, Work
from fairbench.methods.families.latent import (
    SHARED_BUDGETS,
    SHARED_HPARAMS,
    LatentCodeMethod,
    SensitiveClassifier,
    TaskTensors,
    recipe,
    scores_of,
    sens_recipe,
    sensitive_classifier,
    sensitive_classifiers,
    sensitive_dims,
    split_groups,
    zero_dims,
)
from fairbench.methods.families.latent.explanation import FOCI, clip_perturbation
from fairbench.methods.families.latent.recipe import arithmetic
from fairbench.nets.stacked import gather, member_features
from fairbench.table_spec import ReportTable
from fairbench.train.stacked import accuracy, fit_stacked

# Paper Tables 1/2 (retrained d) and 5/6 (fixed d), from `ablation_rows`; a suite that varies
# the clip or the focus gets one table per value. A baseline whose rows belong in the same
# tables declares this same spec.
ABLATION_TABLE = ReportTable(
    name="ablation",
    metric="sens_acc",
    caption="Sensitive-attribute accuracy on the {split} split ({sens_classifier}), "
    "{experiment}; mean ± std over seeds",
    column_param="eta1",
    column_label="η1 = {:g}",
    row_header="Encoder",
    references={"no_removal": "No removal", "dims_removed": "Sens. dims removed"},
    table_by=("sens_classifier", "param_clip", "param_focus"),
    by_labels={
        "sens_classifier": {
            "retrained": "classifier retrained on z', tested on z'",
            "retrained_tested_on_z": "classifier retrained on z', tested on z",
            "fixed": "the original classifier, tested on z'",
        }
    },
    where={"param_eta2": 0.0},
)


class DVGE(LatentCodeMethod):
    name = "dvge"
    description = "DVGE: perturb a frozen VAE code with the sensitive (and task) gradient focus while training g"
    paper = papers.DVGE
    hparams = {
        **SHARED_HPARAMS,
        "eta1": HParam(0.1, "weight of the sensitive focus F_d (debiasing)", bound=NON_NEGATIVE),
        "eta2": HParam(0.4, "weight of the downstream focus F_g (accuracy)", bound=NON_NEGATIVE),
        "focus": HParam(
            "loss",
            "focus F: loss = gradient of the cross-entropy against the model's own prediction "
            "(the paper: +eta1 F_d moves z away from d's prediction, -eta2 F_g towards g's); "
            "logit = the released code's choice (FullGrad of the predicted logit)",
            ("loss", "logit"),
            source="paper",
        ),
        "clip": HParam(
            True, "clip the perturbation to eps = clip_ratio |z| (eq. 9); false = released code", source="paper"
        ),
        "clip_ratio": HParam(
            0.1, "eps_i = clip_ratio * |z_i| per sample and dimension", source="paper", bound=NON_NEGATIVE
        ),
        "ablation": HParam(False, "also report sens_acc rows (paper Tables 1/2/5/6) for members with eta2 = 0"),
        "removed_dims": HParam(
            0, "ablation reference: dims zeroed (0 = one per sensitive attribute)", bound=NON_NEGATIVE
        ),
    }
    budgets = SHARED_BUDGETS
    stackable = ("eta1", "eta2")
    version = 2  # 2: the encoder draws its noise from its own stream (encoder artifact version 3)
    report_tables = (ABLATION_TABLE,)

    def work(self, shape: TaskShape) -> list[Work]:
        return [*super().work(shape), self.sensitive_classifier_work(shape)]

    @classmethod
    def run_on_codes(
        cls, params: list[dict[str, Any]], data: list[TaskData], ctxs: list[RunContext], latents: list[Latents]
    ) -> list[Outcome]:
        """The members' g train as one stacked model, each on its own seed's codes and d:
        members whose tasks share their rows and labels (a fixed split, CelebA's) in one
        stack, the others in one stack per task."""
        outcomes: dict[int, Outcome] = {}
        for group in split_groups(data):
            members = [[items[m] for m in group] for items in (params, data, ctxs, latents)]
            trained = cls.run_stack(*members)  # type: ignore[arg-type]
            outcomes |= dict(zip(group, trained, strict=True))
        return [outcomes[m] for m in range(len(params))]

    @classmethod
    def run_stack(
        cls, params_list: list[dict[str, Any]], data: list[TaskData], ctxs: list[RunContext], latents: list[Latents]
    ) -> list[Outcome]:
        """Train one g per member (one stacked model); members differ only in eta1/eta2 and
        their seeds, and share their task's rows and labels.

        Every member draws its initial weights and batch order from the stream (its seed,
        "downstream"): all etas of a seed share them (common random numbers, as the released
        code, which seeds every run alike), so the grid's differences are the etas' alone and a
        member's outcome is the same stacked or solo.
        """
        p = params_list[0]
        # Per seed (one encoder): d (the seeds' d's train as one stack), the codes, d's focus.
        first: dict[int, int] = {}  # seed -> its first member
        for m, ctx in enumerate(ctxs):
            first.setdefault(ctx.seed, m)
        classifiers = sensitive_classifiers(
            [data[m] for m in first.values()],
            [latents[m] for m in first.values()],
            p["latent"],
            sens_recipe(p),
            [ctxs[m] for m in first.values()],
        )
        seeds: dict[int, tuple[SensitiveClassifier, TaskTensors, torch.Tensor]] = {}
        for (seed, m), d in zip(first.items(), classifiers, strict=True):
            t = TaskTensors(data[m], latents[m].codes(p["latent"]), p["precision"], ctxs[m].device)
            seeds[seed] = d, t, torch.from_numpy(d.focus[p["focus"]]).to(ctxs[m].device, t.z.dtype)
        mine = [seeds[ctx.seed] for ctx in ctxs]
        t, device = mine[0][1], ctxs[0].device
        # Codes and focus shared (N, D), or per member (M, N, D) when the seeds differ.
        z = member_features([tensors.z for _, tensors, _ in mine])
        focus_d = member_features([focus for _, _, focus in mine])
        focus_fn = FOCI[p["focus"]]
        members = len(params_list)
        shape = (members, 1, 1)
        eta1 = torch.tensor([q["eta1"] for q in params_list], dtype=t.z.dtype, device=device).view(shape)
        eta2 = torch.tensor([q["eta2"] for q in params_list], dtype=t.z.dtype, device=device).view(shape)
        task_focus = any(q["eta2"] != 0 for q in params_list)
        rec = recipe(p, p["epochs"])
        model = rec.model(t.z.shape[1], members, device)
        generators = [ctx.stream("downstream") for ctx in ctxs]
        model.reset(generators)

        def perturb(inputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            v = eta1 * gather(focus_d, rows, members)
            if task_focus:
                # x - 0 * F_g == x exactly, so eta2 = 0 members are unaffected by stacking.
                v = v - eta2 * focus_fn(model, inputs)
            if p["clip"]:
                v = clip_perturbation(v, inputs, p["clip_ratio"])
            return inputs + v

        fit = fit_stacked(
            model,
            z,
            t.y,
            t.rows["train"],
            t.rows["val"],
            generators,
            perturb=perturb,
            log=ctxs[0].log.debug,
            arithmetic=arithmetic(rec, ctxs[0]),
            **rec.fit_kwargs(),
        )
        ablation_by_member: dict[int, tuple[list[MetricRow], tuple[int, ...]]] = {}
        for seed in seeds:
            ablation = [
                m
                for m, (q, ctx) in enumerate(zip(params_list, ctxs, strict=True))
                if ctx.seed == seed and q["ablation"] and q["eta2"] == 0
            ]
            if ablation:
                lead = ablation[0]
                d, tensors, _ = seeds[seed]
                grid = [params_list[m] for m in ablation]
                rows, removed = ablation_rows(data[lead], latents[lead], d, tensors, grid, ctxs[lead])
                ablation_by_member |= {m: (member_rows, removed) for m, member_rows in zip(ablation, rows, strict=True)}
        outcomes = []
        for m, (scores, codes, (d, _, _)) in enumerate(zip(scores_of(model, z, t.rows), latents, mine, strict=True)):
            metrics, removed = ablation_by_member.get(m, ([], ()))
            extra = {"ablation_removed_dims": list(removed)} if m in ablation_by_member else {}
            info = {
                "encoder_label": encoder_label(codes.config),
                "encoder_artifact": codes.key,
                "encoder_built_now": codes.built_now,
                "sens_classifier_artifact": d.folder.name,
                "sens_val_acc": d.val_acc,
                "sens_test_acc": d.test_acc,
                "selected_epoch": fit.selected_epoch[m],
                "val_acc": fit.val_acc[m],
                **extra,
            }
            outcomes.append(Outcome(scores=scores, metrics=metrics, info=info))
        return outcomes


def perturbed_codes(
    z: torch.Tensor, focus_d: torch.Tensor, eta1: torch.Tensor, clip: bool, ratio: float
) -> torch.Tensor:
    """z' = z + Clip(eta1 F_d(z)) for every row and member: (N, D), (M,) -> (M, N, D).
    With eta2 = 0 the perturbation is fixed per sample, so z' is computed once."""
    v = eta1.view(-1, 1, 1) * focus_d.unsqueeze(0)
    if clip:
        v = clip_perturbation(v, z.unsqueeze(0), ratio)
    return z.unsqueeze(0) + v


def ablation_rows(
    data: TaskData,
    latents: Latents,
    d: SensitiveClassifier,
    t: TaskTensors,
    params_list: list[dict[str, Any]],
    ctx: RunContext,
) -> tuple[list[list[MetricRow]], tuple[int, ...]]:
    """Paper Tables 1/2 (retrained) and 5/6 (fixed) for each member (eta2 = 0), in order.

    Rows: metric `sens_acc` (split val and test) with tags
      variant = "dvge" | "no_removal" | "dims_removed",
      sens_classifier = "retrained" (trained and tested on z') | "retrained_tested_on_z" (the
      same classifier tested on z) | "fixed", encoder_label = "DVGE-D" | "DVGE-N";
    plus `sens_acc_max` (test, variant dvge, retrained): the highest test accuracy over the
    retrained classifier's epochs, the paper's "highest accuracy" reading (not a selection).
    The reference rows (no_removal, dims_removed) do not depend on eta1 and repeat, with equal
    values, in every member's rows. Also returns the zeroed dims.
    """
    p = params_list[0]
    label = encoder_label(latents.config)
    rec = sens_recipe(p)
    members = len(params_list)
    eta1 = torch.tensor([q["eta1"] for q in params_list], dtype=t.z.dtype, device=t.z.device)
    focus_d = torch.from_numpy(d.focus[p["focus"]]).to(t.z.device, t.z.dtype)
    z_prime = perturbed_codes(t.z, focus_d, eta1, p["clip"], p["clip_ratio"])

    # Retrained: a new sensitive classifier per eta1 on z' (stacked), selected on z' of val.
    model = rec.model(t.z.shape[1], members, ctx.device)
    generators = [ctx.stream("retrained_sensitive_classifier") for _ in params_list]
    model.reset(generators)
    fit = fit_stacked(
        model,
        z_prime,
        t.g,
        t.rows["train"],
        t.rows["val"],
        generators,
        monitor={"test": t.rows["test"]},
        log=ctx.log.debug,
        arithmetic=arithmetic(rec, ctx),
        **rec.fit_kwargs(),
    )
    retrained = {s: accuracy(model, z_prime, t.g, t.rows[s]).tolist() for s in ("val", "test")}
    # Section 5.4's other reading: the same classifiers tested on z, as a framework that never
    # perturbs at inference would meet them.
    on_z = {s: accuracy(model, t.z, t.g, t.rows[s]).tolist() for s in ("val", "test")}
    best_test = np.max(np.asarray(fit.history["test"]), axis=0).tolist()
    # Fixed: the original best d on z'.
    fixed = {s: [accuracy(d.model, z_prime[m], t.g, t.rows[s]).item() for m in range(members)] for s in ("val", "test")}

    # References: d on z (no removal, both readings); the sensitive dims zeroed, d re-trained
    # on it (a cached artifact, shared by all members) and d itself evaluated on it.
    codes = latents.codes(p["latent"])
    count = p["removed_dims"] or max(1, len(data.sensitive_columns))
    dims = sensitive_dims(codes, data.g, data.splits["train"], count)
    removed = sensitive_classifier(data, latents, p["latent"], rec, ctx, removed=dims)
    z_removed = torch.from_numpy(zero_dims(codes, dims)).to(t.z.device, t.z.dtype)
    reference = {
        s: {
            ("no_removal", "retrained"): accuracy(d.model, t.z, t.g, t.rows[s]).item(),
            ("no_removal", "fixed"): accuracy(d.model, t.z, t.g, t.rows[s]).item(),
            ("dims_removed", "retrained"): accuracy(removed.model, z_removed, t.g, t.rows[s]).item(),
            ("dims_removed", "fixed"): accuracy(d.model, z_removed, t.g, t.rows[s]).item(),
        }
        for s in ("val", "test")
    }
    for values in reference.values():  # the references have no z': both retrained readings agree
        values |= {(v, "retrained_tested_on_z"): values[(v, "retrained")] for v in ("no_removal", "dims_removed")}
    out = []
    for m in range(members):
        rows = []
        for split in ("val", "test"):
            for kind, values in (("retrained", retrained), ("retrained_tested_on_z", on_z), ("fixed", fixed)):
                tags = {"variant": "dvge", "sens_classifier": kind, "encoder_label": label}
                rows.append(MetricRow(split, "sens_acc", values[split][m], tags))
            for (variant, kind), value in reference[split].items():
                tags = {"variant": variant, "sens_classifier": kind, "encoder_label": label}
                rows.append(MetricRow(split, "sens_acc", value, tags))
        tags = {"variant": "dvge", "sens_classifier": "retrained", "encoder_label": label}
        rows.append(MetricRow("test", "sens_acc_max", best_test[m], tags))
        out.append(rows)
    return out, dims
