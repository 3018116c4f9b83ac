"""Base classes of the methods trained on a cached encoder's latent codes."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np

from fairbench.data.base import TaskData, TaskShape
from fairbench.encoders import Latents, encoder_label, latent_codes_many, resolve_encoder
from fairbench.errors import FairbenchError
from fairbench.methods.base import Method, MetricRow, Outcome, RunContext, Work, check_stack
from fairbench.methods.families.latent.codes import TaskTensors, fit_downstream, scores_of, split_groups
from fairbench.methods.families.latent.recipe import recipe, sens_recipe
from fairbench.methods.families.latent.sensitive import sensitive_classifiers


class LatentCodeMethod(Method):
    """A method trained on a cached encoder's latent codes (dvge, removal, ffvae, fdvae).

    Members of a stack (seeds, and grid points of the `stackable` parameters) first build their
    missing encoders together (`latent_codes_many`: one stacked model where they share a shape),
    then train their downstream models g (`run_on_codes`, on the codes `g_codes` gives); a job
    alone is a stack of one.
    """

    # The encoders the method accepts (None: any); the first is used when the config names none.
    encoders: ClassVar[tuple[str, ...] | None] = None
    # Encoder settings declared as the method's own parameters, so that a grid can sweep them.
    encoder_hparams: ClassVar[tuple[str, ...]] = ()
    stacks_seeds = True

    @classmethod
    def resolve(cls, params: dict[str, Any], budget: str, where: str = "") -> dict[str, Any]:
        """Also fills and checks the encoder config, so a typo fails at validation time."""
        resolved = super().resolve(params, budget, where)
        config = resolved["encoder"]
        if cls.encoders is not None:
            config = {"name": cls.encoders[0], **config}
            if config["name"] not in cls.encoders:
                raise FairbenchError(
                    f"{where}method '{cls.name}' trains its own encoder ({', '.join(cls.encoders)}), "
                    f"not '{config['name']}'; drop encoder.name"
                )
        for name in cls.encoder_hparams:
            if name in config:
                raise FairbenchError(f"{where}encoder.{name}: set it as the method's parameter '{name}'")
            config = {**config, name: resolved[name]}
        resolved["encoder"] = resolve_encoder(config, where)
        return resolved

    @classmethod
    def stack_signature(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Also leaves the swept encoder settings out of the encoder config they land in."""
        fixed = super().stack_signature(params)
        stacked = set(cls.stackable) & set(cls.encoder_hparams)
        return {**fixed, "encoder": {k: v for k, v in params["encoder"].items() if k not in stacked}}

    @classmethod
    def stacking_text(cls) -> str:
        swept = " and ".join(f"`{p}` values" for p in cls.stackable)
        encoders = " and ".join(["seeds", *(f"`{p}` values" for p in cls.stackable if p in cls.encoder_hparams)])
        return (
            f"the encoders of {encoders} train together as one batched model, and the g of "
            f"{'seeds and ' + swept if swept else 'seeds'} too (where the seeds share a split)."
        )

    def work(self, shape: TaskShape) -> list[Work]:
        """The encoder (trained once per experiment and seed, then cached), then g."""
        p = self.params
        config = p["encoder"]
        encoder = json.dumps([config, p["encoder_iters"]], sort_keys=True, default=str)
        g = recipe(p, p["epochs"])
        return [
            Work(f"encoder:{config['name']}@{shape.input_name}", p["encoder_iters"], shared=encoder, stackable=True),
            Work(g.workload, g.steps(shape.train_rows), stackable=True),
        ]

    def run(self, data: TaskData, ctx: RunContext) -> Outcome:
        return type(self).run_stacked([self.params], [data], [ctx])[0]

    @classmethod
    def run_stacked(cls, params: list[dict[str, Any]], data: list[TaskData], ctxs: list[RunContext]) -> list[Outcome]:
        check_stack(cls, params, ctxs)
        latents = latent_codes_many(data, [p["encoder"] for p in params], params[0]["encoder_iters"], ctxs)
        return cls.run_on_codes(params, data, ctxs, latents)

    @classmethod
    def run_on_codes(
        cls, params: list[dict[str, Any]], data: list[TaskData], ctxs: list[RunContext], latents: list[Latents]
    ) -> list[Outcome]:
        """Each member's g on its codes (`g_codes`); the g of members whose tasks share a split
        train as one stacked model, each as it trains alone."""
        members = [cls(p) for p in params]
        inputs = [m.g_codes(task, codes) for m, task, codes in zip(members, data, latents, strict=True)]
        extra = cls.extra_rows(members, data, ctxs, latents)
        outcomes: dict[int, Outcome] = {}
        for group in split_groups(data):
            first = params[group[0]]
            tensors = [TaskTensors(data[i], inputs[i][0], first["precision"], ctxs[i].device) for i in group]
            model, fit, z = fit_downstream(tensors, recipe(first, first["epochs"]), [ctxs[i] for i in group])
            for k, (i, scores) in enumerate(zip(group, scores_of(model, z, tensors[0].rows), strict=True)):
                metrics, info = extra[i]
                info = {
                    "encoder_label": encoder_label(latents[i].config),
                    "encoder_artifact": latents[i].key,
                    "encoder_built_now": latents[i].built_now,
                    **inputs[i][1],
                    "selected_epoch": fit.selected_epoch[k],
                    "val_acc": fit.val_acc[k],
                    **info,
                }
                outcomes[i] = Outcome(scores=scores, metrics=metrics, info=info)
        return [outcomes[i] for i in range(len(params))]

    def g_codes(self, data: TaskData, latents: Latents) -> tuple[np.ndarray, dict[str, Any]]:
        """The codes this member's g trains and predicts on (N, D), and what its info records
        of them."""
        raise NotImplementedError

    @classmethod
    def extra_rows(
        cls, members: list[LatentCodeMethod], data: list[TaskData], ctxs: list[RunContext], latents: list[Latents]
    ) -> list[tuple[list[MetricRow], dict[str, Any]]]:
        """Each member's metric rows and info beyond g's (none by default)."""
        return [([], {}) for _ in members]

    def sensitive_classifier_work(self, shape: TaskShape) -> Work:
        """Training d, once for every job on the same encoder, code and recipe (a cached artifact)."""
        p = self.params
        d = sens_recipe(p)
        key = json.dumps(["d", p["encoder"], p["encoder_iters"], p["latent"], d.__dict__], sort_keys=True, default=str)
        return Work(d.workload, d.steps(shape.train_rows), shared=key)


class SensitivePartDropped(LatentCodeMethod):
    """g on the code of an encoder with designated sensitive dims (its part "sensitive"), those
    dims dropped: FFVAE's and FD-VAE's downstream, and their "sensitive dims removed" reading.

    With `ablation: true` a fresh sensitive classifier d (DVGE's recipe) is trained on the code g
    sees and reported as metric `sens_acc` (val, test) with tags variant = the method's name,
    sens_classifier = retrained, encoder_label: the row DVGE's ablation tables put beside theirs.
    d sees the full code with the sensitive dims zeroed, which holds exactly what g's input holds
    (a zero input dim carries nothing and gets no gradient), and so shares d's cached artifact.
    """

    def work(self, shape: TaskShape) -> list[Work]:
        return super().work(shape) + ([self.sensitive_classifier_work(shape)] if self.params["ablation"] else [])

    def g_codes(self, data: TaskData, latents: Latents) -> tuple[np.ndarray, dict[str, Any]]:
        codes = latents.codes(self.params["latent"])
        kept = [dim for dim in range(codes.shape[1]) if dim not in latents.parts["sensitive"]]
        return codes[:, kept], {"g_dims": kept}

    @classmethod
    def extra_rows(
        cls, members: list[LatentCodeMethod], data: list[TaskData], ctxs: list[RunContext], latents: list[Latents]
    ) -> list[tuple[list[MetricRow], dict[str, Any]]]:
        """With `ablation`: d retrained on the code g sees (the members' d's as one stack)."""
        out: list[tuple[list[MetricRow], dict[str, Any]]] = [([], {}) for _ in members]
        asked = [i for i, member in enumerate(members) if member.params["ablation"]]
        # Members of one stack share their code's parts; d's of one dropped part train together.
        for dropped in dict.fromkeys(tuple(latents[i].parts["sensitive"]) for i in asked):
            these = [i for i in asked if tuple(latents[i].parts["sensitive"]) == dropped]
            p = members[these[0]].params
            classifiers = sensitive_classifiers(
                [data[i] for i in these],
                [latents[i] for i in these],
                p["latent"],
                sens_recipe(p),
                [ctxs[i] for i in these],
                removed=dropped,
            )
            for i, d in zip(these, classifiers, strict=True):
                tags = {
                    "variant": cls.name,
                    "sens_classifier": "retrained",
                    "encoder_label": encoder_label(latents[i].config),
                }
                rows = [MetricRow("val", "sens_acc", d.val_acc, tags), MetricRow("test", "sens_acc", d.test_acc, tags)]
                out[i] = rows, {"sens_classifier_artifact": d.folder.name}
        return out
