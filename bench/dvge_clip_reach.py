"""How far DVGE's fixed sensitive classifier d can be pushed on real codes, with and without
the clip (DVGE eq. 9, eps = ratio |z| per sample and dimension).

For every test row it measures d's logit margin m (predicted minus other logit), the gradient
of m w.r.t. z, and the loss focus F_d. With the clip, no perturbation inside the box
|v_i| <= ratio |z_i| moves m by more than (to first order) reach = ratio * sum_i |z_i| |dm/dz_i|,
so a row can flip at all only if |m| < reach. The clipped perturbation saturates, as eta1
grows, at ratio |z| sign(F_d), which is that optimal box corner; the script also evaluates d
there exactly. Without the clip, z' = z + eta1 F_d moves m by about -eta1 sigma(-m) |dm/dz|^2.

It reuses the encoder and d that `fairbench run` cached (same suite, seed and budget: the
artifact keys match), so after the suite ran it takes seconds:

    FAIRBENCH_CACHE=... python bench/dvge_clip_reach.py suites/dvge_ablation_check.yaml
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from fairbench.artifacts import ArtifactCache, default_cache_dir
from fairbench.data.base import build_task, data_dir_from_env, open_dataset
from fairbench.encoders import encoder_label, latent_codes, sensitive_classifier
from fairbench.methods.base import RunContext
from fairbench.methods.dvge import DVGE
from fairbench.methods.families.latent import sens_recipe
from fairbench.methods.families.latent.explanation import clip_perturbation
from fairbench.suite import load_suite


def margins(model: torch.nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d's margin (predicted minus other logit) per row and its gradient w.r.t. z."""
    z = z.detach().requires_grad_(True)
    out = model(z.unsqueeze(0))[0]
    predicted = out.detach().argmax(-1, keepdim=True)
    margin = out.gather(1, predicted) - out.gather(1, 1 - predicted)
    (grad,) = torch.autograd.grad(margin.sum(), z)
    return margin.detach()[:, 0], grad


def quantiles(values: np.ndarray) -> str:
    q = np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9])
    return " ".join(f"{v:.3g}" for v in q)


def report(label: str, params: dict, data, ctx: RunContext) -> None:
    latents = latent_codes(data, params["encoder"], params["encoder_iters"], ctx)
    d = sensitive_classifier(data, latents, params["latent"], sens_recipe(params), ctx)
    rows = torch.from_numpy(data.splits["test"])
    z = torch.from_numpy(latents.codes(params["latent"])).double()[rows]
    d.model.double()
    g = torch.from_numpy(data.g)[rows]
    focus = torch.from_numpy(d.focus[params["focus"]]).double()[rows]
    m, dm = margins(d.model, z)
    ratio = params["clip_ratio"]
    reach = ratio * (z.abs() * dm.abs()).sum(1)
    majority = max(g.float().mean().item(), 1 - g.float().mean().item())

    def acc(codes: torch.Tensor) -> float:
        with torch.no_grad():
            return (d.model(codes.unsqueeze(0))[0].argmax(-1) == g).double().mean().item()

    saturated = z + clip_perturbation(1e9 * focus, z, ratio)
    print(f"\n{label}: {len(rows)} test rows, d accuracy {acc(z):.4f}, majority rate {majority:.4f}")
    print(f"  |m| quantiles (10/25/50/75/90%):            {quantiles(m.abs().numpy())}")
    print(f"  |dm/dz| quantiles:                          {quantiles(dm.norm(dim=1).numpy())}")
    print(f"  clip reach {ratio}*sum|z||dm/dz| quantiles:   {quantiles(reach.numpy())}")
    print(f"  |m| / reach quantiles:                      {quantiles((m.abs() / reach).numpy())}")
    print(f"  rows that can flip under the clip (|m| < reach, first order): {(m.abs() < reach).double().mean():.4f}")
    print(f"  d accuracy at the clip's saturation (eta1 -> inf):           {acc(saturated):.4f}")
    for eta1 in (0.1, 0.5, 1.0):
        clipped = z + clip_perturbation(eta1 * focus, z, ratio)
        binding = ((eta1 * focus).abs() > ratio * z.abs()).double().mean()
        print(
            f"  eta1 = {eta1}: d accuracy with clip {acc(clipped):.4f} (clip binds on {binding:.1%} of "
            f"coordinates), without {acc(z + eta1 * focus):.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--seed", type=int, default=None, help="default: the suite's first seed")
    args = parser.parse_args()
    suite, _ = load_suite(args.suite)
    seed = suite.seeds[0] if args.seed is None else args.seed
    cache = default_cache_dir()
    root = data_dir_from_env(None)
    ctx = RunContext("cpu", seed, ArtifactCache(cache), logging.getLogger("dvge_clip_reach"), cache)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    seen = set()
    for experiment in suite.experiments:
        dataset = open_dataset(experiment.dataset, root, experiment.options)
        data = build_task(dataset, experiment.protocol, experiment.target, experiment.sensitive, seed)
        name = experiment.name or experiment.dataset
        for entry in suite.methods:
            if entry.method != "dvge":
                continue
            params = DVGE.resolve(entry.params, suite.budget)
            # Entries that differ only in the clip share the encoder and d: measure once.
            key = repr({k: v for k, v in params.items() if k not in ("clip", "eta1", "eta2")})
            if key not in seen:
                seen.add(key)
                report(f"{name} / {encoder_label(params['encoder'])}", params, data, ctx)


if __name__ == "__main__":
    main()
