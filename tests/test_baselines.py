"""DVGE's baselines: FFVAE, FD-VAE and ADT on images; their loss terms, artifacts and runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from contexts import run_context, step_noise
from contexts import synthetic_task as _table

import fairbench.methods.families.latent.codes as codes_module
from fairbench.encoders import latent_codes, resolve_encoder
from fairbench.encoders.fdvae import FDVAETrainer
from fairbench.encoders.ffvae import FFVAETrainer
from fairbench.encoders.networks import VAE
from fairbench.errors import FairbenchError
from fairbench.expressions import Expression
from fairbench.methods.fdvae import FDVAE
from fairbench.methods.ffvae import FFVAE
from fairbench.nets.branched import build_branched
from fairbench.nets.layers import reverse_gradient

# The real recipes with tiny widths and budgets.
TINY: dict[str, Any] = {
    "encoder_iters": 30,
    "epochs": 3,
    "sens_epochs": 3,
    "lr": 1e-3,
    "width": 16,
    "precision": "float64",
}


def _spy_fit(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """The features every downstream g is fitted on."""
    seen: list[torch.Tensor] = []
    real = codes_module.fit_stacked

    def spy(model, features, *args, **kwargs):
        seen.append(features)
        return real(model, features, *args, **kwargs)

    monkeypatch.setattr(codes_module, "fit_stacked", spy)
    return seen


def test_expression_atoms_are_the_sensitive_attributes() -> None:
    assert [a.text for a in Expression("not (not Male and Young)").atoms()] == ["Male", "Young"]
    assert [a.text for a in Expression("alter > 25 and gastarb == 1").atoms()] == ["alter > 25", "gastarb == 1"]
    assert [a.text for a in Expression("a or (a and b)").atoms()] == ["a", "b"]


def _ffvae(attributes: int = 2, **settings: Any) -> FFVAETrainer:
    torch.manual_seed(0)
    config = resolve_encoder({"name": "ffvae", "width": 8, "z_dim": 5, **settings})
    vae = VAE((6,), 5, 8, FFVAETrainer.deterministic(config, attributes))
    return FFVAETrainer(vae, config, "cpu")


def test_ffvae_b_is_not_sampled_and_carries_no_kl() -> None:
    trainer = _ffvae(alpha=2.5)
    x, a = torch.rand(16, 6), torch.randint(0, 2, (16, 2)).float()
    mu, logvar = trainer.vae.encode(x)
    assert torch.isinf(logvar[:, 3:]).all() and torch.isfinite(logvar[:, :3]).all()
    loss, terms, code = trainer.vae_terms((x, {"a": a}), torch.randn(16, 5), trainer.values)
    # b is the encoder's output itself; z is a draw.
    torch.testing.assert_close(code[:, 3:], mu[:, 3:], rtol=0, atol=0)
    assert not torch.allclose(code[:, :3], mu[:, :3])
    m, lv = mu[:, :3], logvar[:, :3]
    kl = -0.5 * (1 + lv - m.pow(2) - lv.exp()).sum(1).mean()
    torch.testing.assert_close(terms["kl"], kl)
    bce = F.binary_cross_entropy_with_logits(mu[:, 3:], a, reduction="sum") / 16
    torch.testing.assert_close(terms["bce"], bce)
    torch.testing.assert_close(loss, terms["recon"] + kl + 2.5 * bce)
    # No KL gradient reaches b's outputs: the KL term alone is flat in b.
    grad = torch.autograd.grad(terms["kl"], code, allow_unused=True)[0]
    assert grad is None or torch.equal(grad[:, 3:], torch.zeros_like(grad[:, 3:]))


def test_ffvae_permutes_only_b() -> None:
    trainer = _ffvae()
    code = torch.arange(50.0).view(10, 5)
    permuted = trainer.permuted(code, torch.rand(code.shape))
    assert torch.equal(permuted[:, :3], code[:, :3])
    for j in (3, 4):
        assert sorted(permuted[:, j].tolist()) == sorted(code[:, j].tolist())


def test_ffvae_discriminator_loss_never_reaches_the_encoder() -> None:
    trainer = _ffvae(gamma=3.0)
    x, a = torch.rand(32, 6), torch.randint(0, 2, (32, 2)).float()
    calls = [0] * len(list(trainer.vae.parameters()))
    for index, p in enumerate(trainer.vae.parameters()):
        p.register_hook(lambda grad, index=index: calls.__setitem__(index, calls[index] + 1))
    seen: list[bool] = []
    trainer.nets["discriminator"].register_forward_hook(lambda m, i, o: seen.append(i[0].requires_grad))
    losses = trainer.step(lambda: (x[:16], {"a": a[:16]}), step_noise(trainer, 16))
    assert set(losses) == {"recon", "kl", "bce", "tc", "d_loss"}
    # The TC term (live codes) trains the encoder; the discriminator's own loss sees detached codes.
    assert seen == [True, False, False]
    # One backward pass reached each encoder parameter: the VAE loss's, not the discriminator's.
    assert set(calls) == {1}


def test_ffvae_encoder_key_holds_the_sensitive_expression(tmp_path: Path) -> None:
    params = FFVAE.resolve({**TINY, "encoder": {"width": 16}}, "paper")
    first = latent_codes(_table(), params["encoder"], 5, run_context(tmp_path))
    assert first.parts == {"z": list(range(9)), "sensitive": [9]}
    key = json.loads((first.folder / "key.json").read_text())
    assert key["task"] == {"sensitive": "s"}
    two = latent_codes(_table("s == 1 and proxy > 0"), params["encoder"], 5, run_context(tmp_path))
    assert two.built_now and two.folder != first.folder and two.parts["sensitive"] == [8, 9]
    # A new target that leaves the inputs alone reuses it (FFVAE never sees the target).
    assert not latent_codes(_table(target="y == 1"), params["encoder"], 5, run_context(tmp_path)).built_now
    # The label-free encoders' keys are as before: no task.
    vanilla = latent_codes(_table(), {"name": "vanilla_vae", "width": 16}, 5, run_context(tmp_path))
    assert "task" not in json.loads((vanilla.folder / "key.json").read_text())
    with pytest.raises(FairbenchError, match="trains its own encoder"):
        FFVAE.resolve({"encoder": {"name": "factor_vae"}}, "paper")
    # alpha and gamma are the method's parameters (a grid sweeps them) and land in the encoder.
    swept = FFVAE.resolve({"alpha": 4, "gamma": 2.0}, "paper")["encoder"]
    assert (swept["name"], swept["alpha"], swept["gamma"]) == ("ffvae", 4.0, 2.0)
    with pytest.raises(FairbenchError, match="parameter 'alpha'"):
        FFVAE.resolve({"encoder": {"alpha": 2.0}}, "paper")


def test_ffvae_g_sees_z_without_b(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _spy_fit(monkeypatch)
    data = _table("s == 1 and proxy > 0")
    outcome = FFVAE(FFVAE.resolve({**TINY, "encoder": {"width": 16}, "ablation": True}, "paper")).run(
        data, run_context(tmp_path)
    )
    mean = np.load(Path(tmp_path / "encoder" / outcome.info["encoder_artifact"] / "mean.npy"))
    np.testing.assert_array_equal(seen[0].numpy(), mean[:, :8])
    assert outcome.info["g_dims"] == list(range(8)) and outcome.info["encoder_label"] == "FFVAE"
    rows = {(r.split, r.metric): r for r in outcome.metrics}
    assert set(rows) == {("val", "sens_acc"), ("test", "sens_acc")}
    tags = {"variant": "ffvae", "sens_classifier": "retrained", "encoder_label": "FFVAE"}
    assert rows[("test", "sens_acc")].tags == tags
    assert 0 <= rows[("test", "sens_acc")].value <= 1


def _fdvae(**settings: Any) -> FDVAETrainer:
    torch.manual_seed(0)
    config = resolve_encoder({"name": "fdvae", "width": 8, **settings})
    return FDVAETrainer(VAE((6,), 10, 8), config, "cpu")


def _inputs_of(module: torch.nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    module.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    return seen


def test_fdvae_split_dims_feed_their_heads_and_adversaries() -> None:
    trainer = _fdvae(alpha=2.0, beta=0.5)
    assert (trainer.target, trainer.mutual, trainer.sensitive) == ([0, 1, 2], [3, 4, 5, 6], [7, 8, 9])
    x = torch.rand(16, 6)
    labels = {"y": torch.randint(0, 2, (16,)), "g": torch.randint(0, 2, (16,))}
    head_t, head_p = _inputs_of(trainer.nets["heads"]["target"]), _inputs_of(trainer.nets["heads"]["sensitive"])
    adv_p = _inputs_of(trainer.nets["adversaries"]["sensitive_from_target"])
    adv_t = _inputs_of(trainer.nets["adversaries"]["target_from_sensitive"])
    loss, terms, carry = trainer.phase_loss(0, (x, labels), step_noise(trainer, 16), {}, trainer.values)
    z = carry["z"]
    torch.testing.assert_close(head_t[0], z[:, :7], rtol=0, atol=0)  # target + mutual
    torch.testing.assert_close(head_p[0], z[:, [7, 8, 9, 3, 4, 5, 6]], rtol=0, atol=0)  # protected + mutual
    torch.testing.assert_close(adv_p[0], z[:, :3], rtol=0, atol=0)
    torch.testing.assert_close(adv_t[0], z[:, 7:], rtol=0, atol=0)
    target = F.cross_entropy(trainer.nets["heads"]["target"](z[:, :7]), labels["y"])
    torch.testing.assert_close(terms["target"], target)
    expected = terms["recon"] + terms["kl"] + 2.0 * (terms["target"] + terms["protected"])
    torch.testing.assert_close(loss, expected + 0.5 * terms["decorrelation"])
    # Decorrelation: minus the entropies of the adversaries' predictions (at most 2 log 2).
    assert -2 * np.log(2) - 1e-6 <= terms["decorrelation"].item() <= 0


def test_fdvae_adversaries_train_on_detached_codes() -> None:
    trainer = _fdvae()
    x = torch.rand(16, 6)
    labels = {"y": torch.randint(0, 2, (16,)), "g": torch.randint(0, 2, (16,))}
    calls = [0] * len(list(trainer.vae.parameters()))
    for index, p in enumerate(trainer.vae.parameters()):
        p.register_hook(lambda grad, index=index: calls.__setitem__(index, calls[index] + 1))
    before = [p.detach().clone() for p in trainer.nets["adversaries"].parameters()]
    losses = trainer.step(lambda: (x, labels), step_noise(trainer, 16))
    assert set(losses) == {"recon", "kl", "target", "protected", "decorrelation", "adversaries"}
    assert set(calls) == {1}  # the encoder's own loss only
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.nets["adversaries"].parameters(), strict=True))


def test_fdvae_key_holds_target_and_sensitive_and_g_reads_target_and_mutual(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _spy_fit(monkeypatch)
    params = FDVAE.resolve({**TINY, "encoder": {"width": 16}, "ablation": True}, "paper")
    outcome = FDVAE(params).run(_table(), run_context(tmp_path))
    folder = tmp_path / "encoder" / outcome.info["encoder_artifact"]
    assert json.loads((folder / "key.json").read_text())["task"] == {"target": "y", "sensitive": "s"}
    np.testing.assert_array_equal(seen[0].numpy(), np.load(folder / "mean.npy")[:, :7])
    assert outcome.info["g_dims"] == list(range(7)) and outcome.info["encoder_label"] == "FD-VAE"
    assert {(r.split, r.tags["variant"]) for r in outcome.metrics} == {("val", "fdvae"), ("test", "fdvae")}
    other_target = latent_codes(
        _table(target="y == 1"), params["encoder"], params["encoder_iters"], run_context(tmp_path)
    )
    other_group = latent_codes(_table("proxy > 0"), params["encoder"], params["encoder_iters"], run_context(tmp_path))
    assert other_target.built_now and other_group.built_now


def test_reversal_layer_flips_and_scales_the_gradient_and_nothing_else() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    y = reverse_gradient(x, 2.5)
    assert y is not x and y.grad_fn is not None  # a new tensor: autograd cannot skip the node
    assert torch.equal(y, x)
    w = torch.randn(4, 3)
    (grad,) = torch.autograd.grad((y * w).sum() + (x * w).sum(), x)
    torch.testing.assert_close(grad, -2.5 * w + w)


def test_adt_feature_encoder_and_branches_follow_table_3() -> None:
    net = build_branched("dvge", (3, 64, 64), attribute_counts=(2,))
    convs = [m for m in net.trunk if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (3, 32, 4),
        (32, 32, 4),
        (32, 64, 4),
        (64, 64, 4),
        (64, 256, 4),
        (256, 10, 1),
    ]
    for head in (net.task_head, *net.attribute_heads):
        linears = [m for m in head if isinstance(m, torch.nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == [(10, 1000), *[(1000, 1000)] * 4, (1000, 2)]
    task, (attribute,) = net(torch.rand(2, 3, 64, 64))
    assert task.shape == attribute.shape == (2, 2)


TINY_SUITE = """\
name: baselines-tiny
seeds: [0]
budget: paper
experiments:
  - {experiment}
methods:
  - method: ffvae
    label: FFVAE
    params: {{ablation: true, {tiny}}}
    grid: {{alpha: [1.0, 6.4]}}
  - method: fdvae
    label: FD-VAE
    params: {{ablation: true, {tiny}}}
  - method: adt
    label: ADT
    params: {{epochs: 2, lr: 0.001, ablation: true, sens_epochs: 2}}
    grid: {{lam: [0.1, 10.0]}}
"""
TINY_PARAMS = "encoder: {width: 16}, encoder_iters: 3, epochs: 2, sens_epochs: 2, lr: 0.001, width: 16"


@pytest.mark.parametrize(
    "experiment",
    [
        "{dataset: synthetic, target: y, sensitive: 's == 1 and proxy > 0', options: {n: 300}}",
        "{dataset: synthetic_images, target: Attractive, sensitive: Male, options: {n: 48}}",
    ],
    ids=["table", "images"],
)
def test_baselines_run_end_to_end(experiment: str, tmp_path: Path, fairbench) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(TINY_SUITE.format(experiment=experiment, tiny=TINY_PARAMS))
    result = fairbench("run", suite, "--results", tmp_path / "out")
    assert result.code == 0, result.err
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    acc = table[(table["metric"] == "acc") & (table["split"] == "test")]
    assert acc.groupby("label").size().to_dict() == {"ADT": 2, "FD-VAE": 1, "FFVAE": 2}
    assert acc["value"].between(0, 1).all()
    sens = table[table["metric"] == "sens_acc"]
    tagged = (("FFVAE", "ffvae"), ("FD-VAE", "fdvae"), ("ADT", "adt"))
    expected = {(label, variant, split) for label, variant in tagged for split in ("val", "test")}
    assert set(zip(sens["label"], sens["variant"], sens["split"])) == expected


def test_removal_on_an_ffvae_code_zeroes_b(tmp_path: Path) -> None:
    from fairbench.methods.removal import Removal

    tiny = {k: v for k, v in TINY.items() if k != "sens_epochs"}
    params = Removal.resolve({**tiny, "encoder": {"name": "ffvae", "width": 16}}, "paper")
    outcome = Removal(params).run(_table("s == 1 and proxy > 0"), run_context(tmp_path))
    assert outcome.info["removed_dims"] == [8, 9]
