"""DVGE's baselines: FFVAE, FD-VAE and ADT on images; their loss terms, artifacts and runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fairbench.latent.codes as codes_module
from fairbench.artifacts import ArtifactCache
from fairbench.data.base import build_task, open_dataset
from fairbench.encoders import latent_codes, resolve_encoder
from fairbench.encoders.ffvae import FFVAETrainer
from fairbench.encoders.networks import VAE
from fairbench.errors import FairbenchError
from fairbench.expressions import Expression
from fairbench.methods.base import RunContext
from fairbench.methods.ffvae import FFVAE

# The real recipes with tiny widths and budgets.
TINY: dict[str, Any] = {
    "encoder_iters": 30,
    "epochs": 3,
    "sens_epochs": 3,
    "lr": 1e-3,
    "width": 16,
    "precision": "float64",
}


def _ctx(root: Path, seed: int = 0) -> RunContext:
    return RunContext("cpu", seed, ArtifactCache(root), logging.getLogger("test"), root)


def _table(sensitive: str = "s", target: str = "y"):
    return build_task(open_dataset("synthetic", None, {"n": 300}), None, target, sensitive, 0)


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
    torch.manual_seed(1)
    loss, terms, code = trainer.vae_terms((x, {"a": a}))
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
    permuted = trainer.permuted(code)
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
    trainer.discriminator.register_forward_hook(lambda m, i, o: seen.append(i[0].requires_grad))
    losses = trainer.step(lambda: (x[:16], {"a": a[:16]}))
    assert set(losses) == {"recon", "kl", "bce", "tc", "d_loss"}
    # The TC term (live codes) trains the encoder; the discriminator's own loss sees detached codes.
    assert seen == [True, False, False]
    # One backward pass reached each encoder parameter: the VAE loss's, not the discriminator's.
    assert set(calls) == {1}


def test_ffvae_encoder_key_holds_the_sensitive_expression(tmp_path: Path) -> None:
    params = FFVAE.resolve({**TINY, "encoder": {"width": 16}}, "paper")
    first = latent_codes(_table(), params["encoder"], 5, _ctx(tmp_path))
    assert first.parts == {"z": list(range(9)), "sensitive": [9]}
    key = json.loads((first.folder / "key.json").read_text())
    assert key["task"] == {"sensitive": "s"}
    two = latent_codes(_table("s == 1 and proxy > 0"), params["encoder"], 5, _ctx(tmp_path))
    assert two.built_now and two.folder != first.folder and two.parts["sensitive"] == [8, 9]
    # A new target that leaves the inputs alone reuses it (FFVAE never sees the target).
    assert not latent_codes(_table(target="y == 1"), params["encoder"], 5, _ctx(tmp_path)).built_now
    # The label-free encoders' keys are as before: no task.
    vanilla = latent_codes(_table(), {"name": "vanilla_vae", "width": 16}, 5, _ctx(tmp_path))
    assert "task" not in json.loads((vanilla.folder / "key.json").read_text())
    with pytest.raises(FairbenchError, match="trains its own encoder"):
        FFVAE.resolve({"encoder": {"name": "factor_vae"}}, "paper")


def test_ffvae_g_sees_z_without_b(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _spy_fit(monkeypatch)
    data = _table("s == 1 and proxy > 0")
    outcome = FFVAE(FFVAE.resolve({**TINY, "encoder": {"width": 16}, "ablation": True}, "paper")).run(
        data, _ctx(tmp_path)
    )
    mean = np.load(Path(tmp_path / "encoder" / outcome.info["encoder_artifact"] / "mean.npy"))
    np.testing.assert_array_equal(seen[0].numpy(), mean[:, :8])
    assert outcome.info["g_dims"] == list(range(8)) and outcome.info["encoder_label"] == "FFVAE"
    rows = {(r.split, r.metric): r for r in outcome.metrics}
    assert set(rows) == {("val", "sens_acc"), ("test", "sens_acc")}
    tags = {"variant": "ffvae", "sens_classifier": "retrained", "encoder_label": "FFVAE"}
    assert rows[("test", "sens_acc")].tags == tags
    assert 0 <= rows[("test", "sens_acc")].value <= 1
