"""Encoders: Table 3/4 shapes, config checks, FactorVAE step, and the artifact cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from contexts import run_context, step_noise

from fairbench.data.base import build_task, open_dataset
from fairbench.encoders import latent_codes, resolve_encoder
from fairbench.encoders.artifact import encoder_key
from fairbench.encoders.base import batch_stream
from fairbench.encoders.factor_vae import FactorVAETrainer, permute_dims
from fairbench.encoders.networks import VAE
from fairbench.errors import FairbenchError

TINY = {"name": "factor_vae", "width": 16}


def _images(n: int = 48):
    return build_task(open_dataset("synthetic_images", None, {"n": n}), None, "Attractive", "Male", 0)


def _table(sensitive: str = "s"):
    return build_task(open_dataset("synthetic", None, {"n": 200}), None, "y", sensitive, 0)


def test_image_vae_follows_table_3() -> None:
    vae = VAE((3, 64, 64))
    mu, logvar = vae.encode(torch.rand(2, 3, 64, 64))
    assert mu.shape == logvar.shape == (2, 10)
    assert vae.decode(mu).shape == (2, 3, 64, 64)
    convs = [m for m in vae.decoder if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (10, 256, 1),
        (256, 64, 4),
        (64, 64, 4),
        (64, 32, 4),
        (32, 32, 4),
        (32, 3, 4),
    ]


def test_table_vae_follows_table_4() -> None:
    vae = VAE((20,))
    linears = [m for m in vae.encoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(20, 1000), *[(1000, 1000)] * 4, (1000, 20)]
    assert vae.decode(torch.zeros(3, 10)).shape == (3, 20)


def test_resolve_encoder_fills_defaults_and_rejects_typos() -> None:
    config = resolve_encoder({"name": "factor_vae", "gamma": 1})
    assert config["gamma"] == 1.0 and config["lr"] == 1e-4 and config["lr_d"] == 1e-5
    assert config["beta1_d"] == 0.5 and config["batch_size"] == 64 and config["z_dim"] == 10
    with pytest.raises(FairbenchError, match="gamma"):
        resolve_encoder({"name": "factor_vae", "gama": 2.0})
    with pytest.raises(FairbenchError, match="factor_vae"):
        resolve_encoder({"name": "factorvae"})
    with pytest.raises(FairbenchError, match="has no setting 'gamma'"):
        resolve_encoder({"name": "vanilla_vae", "gamma": 2.0})


def test_permute_dims_permutes_each_column() -> None:
    z = torch.arange(40.0).view(10, 4)
    permuted = permute_dims(z, torch.rand(z.shape))
    for j in range(4):
        assert sorted(permuted[:, j].tolist()) == sorted(z[:, j].tolist())


def test_factor_vae_step_trains_discriminator_on_detached_codes() -> None:
    torch.manual_seed(0)
    vae = VAE((6,), z_dim=3, width=8)
    trainer = FactorVAETrainer(vae, resolve_encoder({"name": "factor_vae", "width": 8}), "cpu")
    x = torch.rand(32, 6)
    before = [p.detach().clone() for p in vae.parameters()]
    seen = []
    trainer.nets["discriminator"].register_forward_hook(lambda m, i, o: seen.append(i[0].requires_grad))
    losses = trainer.step(lambda: x[torch.randperm(32)[:16]], step_noise(trainer, 16))
    assert set(losses) == {"recon", "kl", "tc", "d_loss"}
    # Detached tensors: the loop reads them only when it logs, so a step never waits for the GPU.
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in losses.values())
    # First call: the VAE's live codes (the TC term trains the encoder); then only detached ones.
    assert seen == [True, False, False]
    assert any(not torch.equal(a, b) for a, b in zip(before, vae.parameters(), strict=True))


def test_batch_stream_yields_full_batches_of_train_rows() -> None:
    rows = torch.arange(10, 20)
    stream = batch_stream(rows, 4, torch.Generator().manual_seed(0))
    batches = [next(stream) for _ in range(5)]
    assert all(len(b) == 4 for b in batches)
    assert all(set(b.tolist()) <= set(rows.tolist()) for b in batches)


def test_encoder_cache_is_hit_and_independent_of_target_and_sensitive(tmp_path: Path) -> None:
    data = _images()
    first = latent_codes(data, TINY, 3, run_context(tmp_path))
    assert first.built_now and first.mean.shape == first.sample.shape == (48, 10)
    assert not np.array_equal(first.mean, first.sample)
    assert {"encoder.pt", "mean.npy", "sample.npy", "logvar.npy", "done"} <= {p.name for p in first.folder.iterdir()}
    other_task = build_task(
        open_dataset("synthetic_images", None, {"n": 48}), None, "Oval_Face", "not (not Male and Young)", 0
    )
    # A new cache object on the same root: what a restarted process sees.
    second = latent_codes(other_task, TINY, 3, run_context(tmp_path))
    assert not second.built_now and second.folder == first.folder
    np.testing.assert_array_equal(second.mean, first.mean)
    # Another seed, budget or encoder setting is another encoder.
    assert latent_codes(data, TINY, 4, run_context(tmp_path)).built_now
    assert latent_codes(data, {**TINY, "gamma": 1.0}, 3, run_context(tmp_path)).built_now


def test_encoder_cache_survives_a_new_process(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import logging
        from pathlib import Path
        from fairbench.artifacts import ArtifactCache
        from fairbench.data.base import build_task, open_dataset
        from fairbench.encoders import latent_codes
        from fairbench.methods.base import RunContext
        data = build_task(open_dataset("synthetic", None, {{"n": 200}}), None, "y", "s", 0)
        ctx = RunContext("cpu", 0, ArtifactCache(Path({str(tmp_path)!r})), logging.getLogger(), Path("."))
        print(latent_codes(data, {TINY!r}, 5, ctx).built_now)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env) for _ in range(2)]
    assert [r.stdout.strip() for r in runs] == ["True", "False"], [r.stderr[-2000:] for r in runs]
    # The same artifact from this process, with another sensitive group.
    assert not latent_codes(_table("proxy > 0.5"), TINY, 5, run_context(tmp_path)).built_now


def test_real_south_german_credit_encodes(tmp_path: Path, real_data) -> None:
    root = real_data("south_german_credit/SouthGermanCredit.asc")
    data = build_task(open_dataset("south_german_credit", root), None, "kredit", "alter > 25", 0)
    latents = latent_codes(data, {"name": "vanilla_vae", "width": 32}, 20, run_context(tmp_path))
    assert latents.mean.shape == (1000, 10) and np.isfinite(latents.mean).all()


def test_likelihood_is_bernoulli_for_images_and_gaussian_for_tables() -> None:
    from fairbench.encoders.base import reconstruction_loss

    settings = resolve_encoder({"name": "vanilla_vae"})
    images, logits = torch.rand(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, images, reduction="sum") / 2
    torch.testing.assert_close(reconstruction_loss(logits, images, settings), expected)
    table, means = torch.rand(4, 20), torch.rand(4, 20)
    expected = 0.5 * ((means - table) / settings["sigma"]).pow(2).sum() / 4
    torch.testing.assert_close(reconstruction_loss(means, table, settings), expected)


@pytest.mark.parametrize("name", ["vanilla_vae", "factor_vae", "ffvae", "fdvae"])
def test_encoders_train_in_the_engines_precision(tmp_path: Path, name: str) -> None:
    """bf16 (autocast, fp32 weights) is its own artifact with finite codes; fp32 keeps its key."""
    data = _images()
    config = {"name": name, "width": 16}
    fp32 = latent_codes(data, config, 3, run_context(tmp_path))
    ctx = replace(run_context(tmp_path), precision="bf16")
    bf16 = latent_codes(data, config, 3, ctx)
    assert bf16.built_now and bf16.folder != fp32.folder
    assert np.isfinite(bf16.mean).all() and not np.array_equal(bf16.mean, fp32.mean)
    assert "precision" not in encoder_key(data, resolve_encoder(config), 3, 0)
    assert encoder_key(data, resolve_encoder(config), 3, 0, "bf16")["precision"] == "bf16"
