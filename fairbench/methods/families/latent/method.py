"""Base classes of the methods trained on a cached encoder's latent codes."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from fairbench.data.base import TaskData, TaskShape
from fairbench.encoders import Latents, encoder_label, latent_codes_many, resolve_encoder
from fairbench.errors import FairbenchError
from fairbench.methods.base import Method, MetricRow, Outcome, RunContext, Work, check_stack
from fairbench.methods.families.latent.codes import TaskTensors, fit_downstream, scores_of
from fairbench.methods.families.latent.recipe import recipe, sens_recipe
from fairbench.methods.families.latent.sensitive import sensitive_classifier


class LatentCodeMethod(Method):
    """A method trained on a cached encoder's latent codes (dvge, removal, ffvae, fdvae).

    Members of a stack (seeds, and grid points of the `stackable` parameters) first build their
    missing encoders together (`latent_codes_many`: one stacked model where they share a shape),
    then train their downstream models (`run_on_codes`); a job alone is a stack of one.
    """

    # The encoders the method accepts (None: any); the first is used when the config names none.
    encoders: ClassVar[tuple[str, ...] | None] = None
    # Encoder settings declared as the method's own parameters, so that a grid can sweep them.
    encoder_hparams: ClassVar[tuple[str, ...]] = ()
    stacks_seeds = True
    # Whether the members' downstream g train as one stacked model (DVGE's etas and seeds).
    g_stacks: ClassVar[bool] = False

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
        encoders = ["seeds", *(f"`{p}` values" for p in cls.stackable if p in cls.encoder_hparams)]
        text = f"the encoders of {' and '.join(encoders)} train together as one batched model"
        g = [f"`{p}` values" for p in cls.stackable if p not in cls.encoder_hparams]
        g_text = f", and the g of {' and '.join(g)} too (across seeds where they share a split)"
        return text + (g_text if cls.g_stacks and g else "") + "."

    def work(self, shape: TaskShape) -> list[Work]:
        """The encoder (trained once per experiment and seed, then cached), then g."""
        p = self.params
        config = p["encoder"]
        encoder = json.dumps([config, p["encoder_iters"]], sort_keys=True, default=str)
        g = recipe(p, p["epochs"])
        return [
            Work(f"encoder:{config['name']}@{shape.input_name}", p["encoder_iters"], shared=encoder, stackable=True),
            Work(g.workload, g.steps(shape.train_rows), stackable=self.g_stacks),
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
        """The members' downstream training, each on its encoder's codes; one by one by default."""
        return [
            cls(p).on_codes(task, ctx, codes) for p, task, ctx, codes in zip(params, data, ctxs, latents, strict=True)
        ]

    def on_codes(self, data: TaskData, ctx: RunContext, latents: Latents) -> Outcome:
        """One member's downstream training on its encoder's codes."""
        raise NotImplementedError

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

    def on_codes(self, data: TaskData, ctx: RunContext, latents: Latents) -> Outcome:
        p = self.params
        codes = latents.codes(p["latent"])
        dropped = latents.parts["sensitive"]
        kept = [dim for dim in range(codes.shape[1]) if dim not in dropped]
        t = TaskTensors(data, codes[:, kept], p["precision"], ctx.device)
        model, fit = fit_downstream(t, recipe(p, p["epochs"]), ctx)
        label = encoder_label(latents.config)
        info = {
            "encoder_label": label,
            "encoder_artifact": latents.key,
            "encoder_built_now": latents.built_now,
            "g_dims": kept,
            "selected_epoch": fit.selected_epoch[0],
            "val_acc": fit.val_acc[0],
        }
        metrics = []
        if p["ablation"]:
            d = sensitive_classifier(data, latents, p["latent"], sens_recipe(p), ctx, removed=tuple(dropped))
            tags = {"variant": self.name, "sens_classifier": "retrained", "encoder_label": label}
            metrics = [MetricRow("val", "sens_acc", d.val_acc, tags), MetricRow("test", "sens_acc", d.test_acc, tags)]
            info["sens_classifier_artifact"] = d.folder.name
        return Outcome(scores=scores_of(model, t.z, t.rows)[0], metrics=metrics, info=info)
