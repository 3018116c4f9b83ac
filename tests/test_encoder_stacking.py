"""Encoders trained together (fairbench/encoders/training.py): every encoder kind, stacked over
seeds and loss weights, gives each member the weights and loss log it gets alone; the artifact
cache stores each as if it had trained alone and builds only what is missing.

Run in float64 (see tests/test_members.py for why float32 stacks agree only to rounding)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from contexts import run_context

from fairbench.artifacts import ArtifactCache
from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.encoders import resolve_encoder
from fairbench.encoders.artifact import latent_codes, latent_codes_many
from fairbench.encoders.catalog import TRAINERS
from fairbench.encoders.training import BLOCK, train_encoder, train_encoders
from fairbench.methods.families.latent import LatentCodeMethod
from fairbench.registry import METHODS


def _table(split_seed: int = 0, sensitive: str = "s == 1 and proxy > 0") -> TaskData:
    return build_task(open_dataset("synthetic", None, {"n": 120}), None, "y", sensitive, split_seed)


def _images() -> TaskData:
    return build_task(open_dataset("synthetic_images", None, {"n": 24}), None, "Attractive", "Male", 0)


def _config(name: str, **settings: Any) -> dict[str, Any]:
    return resolve_encoder({"name": name, "width": 16, "batch_size": 16, **settings})


def _members(name: str) -> list[tuple[TaskData, dict[str, Any], int]]:
    """Two seeds (with their own splits) x two values of each of the kind's loss weights."""
    weights = TRAINERS[name].weights
    members = []
    for seed in (0, 1):
        for value in (0.5, 3.0) if weights else (None,):
            settings = {weight: value for weight in weights}
            members.append((_table(seed), _config(name, **settings), seed))
    return members


def _stacked(members: list, iterations: int, log: Any = lambda line: None) -> list:
    tasks, configs, seeds = zip(*members, strict=True)
    return train_encoders(tasks, configs, iterations, seeds, "cpu", log)


def _assert_same(stacked: list, solo: list) -> None:
    for (vae, history), (alone, alone_history) in zip(stacked, solo, strict=True):
        for (name, got), expected in zip(vae.state_dict().items(), alone.state_dict().values(), strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-9, msg=name)
        assert [h["iteration"] for h in history] == [h["iteration"] for h in alone_history]
        for got, expected in zip(history, alone_history, strict=True):
            np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_stacked_encoders_equal_their_solo_runs(name: str, float64: None) -> None:
    members = _members(name)
    # Past one noise block, so that the members' second blocks are checked too.
    iterations = BLOCK + 4
    stacked = _stacked(members, iterations, lambda line: None)
    solo = [train_encoder(task, config, iterations, seed, "cpu", lambda line: None) for task, config, seed in members]
    _assert_same(stacked, solo)
    # The members really differ (their own seeds, splits and weights).
    first = [next(iter(vae.state_dict().values())) for vae, _ in stacked]
    assert all(not torch.equal(first[0], other) for other in first[1:])


def test_stacked_image_encoders_equal_their_solo_runs(float64: None) -> None:
    task = _images()
    members = [(task, _config("ffvae", alpha=alpha, batch_size=8), seed) for seed, alpha in ((0, 1.0), (1, 4.0))]
    stacked = _stacked(members, 3, lambda line: None)
    solo = [train_encoder(task, config, 3, seed, "cpu", lambda line: None) for task, config, seed in members]
    _assert_same(stacked, solo)


def test_encoders_that_cannot_stack_train_one_by_one(float64: None) -> None:
    lines: list[str] = []
    members = [
        (_table(0), _config("factor_vae"), 0),
        (_table(0), _config("factor_vae", lr=1e-3), 1),  # an optimiser setting, not a loss weight
    ]
    stacked = _stacked(members, 3, lines.append)
    assert any("one by one: their settings differ in more than their loss weights" in line for line in lines)
    _assert_same(stacked, [train_encoder(t, c, 3, s, "cpu", lambda line: None) for t, c, s in members])
    lines.clear()
    two = [(_table(0, "s"), _config("ffvae"), 0), (_table(0), _config("ffvae"), 0)]  # one and two b dims
    _stacked(two, 2, lines.append)
    assert any("different numbers of attributes" in line for line in lines)


def test_latent_codes_many_builds_the_missing_encoders_together(tmp_path: Path, caplog: Any) -> None:
    task = _table()
    configs = [_config("ffvae", alpha=alpha) for alpha in (1.0, 2.0)]
    ctxs = [run_context(tmp_path, seed) for seed in (0, 1)]
    alone = latent_codes(task, configs[0], 5, ctxs[0])
    assert alone.built_now
    with caplog.at_level(logging.INFO, logger="test"):
        # The first is cached; the second is built; the third asks for the second's key again.
        many = latent_codes_many([task] * 3, [configs[0], configs[1], configs[1]], 5, [ctxs[0], ctxs[1], ctxs[1]])
    assert [latents.built_now for latents in many] == [False, True, True]
    assert many[0].folder == alone.folder and many[1].folder == many[2].folder != alone.folder
    trainings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training ")]
    assert len(trainings) == 1 and "(seed 1)" in trainings[0] and "(seed 0)" not in trainings[0]
    # Stored as alone: a fresh cache building the second by itself gives the same codes.
    fresh = latent_codes(task, configs[1], 5, run_context(tmp_path / "fresh", 1))
    np.testing.assert_allclose(fresh.mean, many[1].mean, rtol=0, atol=1e-5)
    again = latent_codes_many([task] * 2, configs, 5, ctxs)
    assert not any(latents.built_now for latents in again)


def test_get_many_builds_only_missing_artifacts_under_their_keys(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    asked: list[list[int]] = []

    def build(missing: list[int]) -> list:
        asked.append(missing)
        return [lambda folder, i=i: (folder / "value.txt").write_text(str(i)) for i in missing]

    keys = [{"version": 1, "k": k} for k in ("a", "b", "a")]
    first = cache.get_many("thing", keys, build)
    assert asked == [[0, 1]] and [built for _, built in first] == [True, True, True]
    assert (first[2][0] / "value.txt").read_text() == "0"
    second = cache.get_many("thing", [*keys, {"version": 1, "k": "c"}], build)
    assert asked[-1] == [3] and [built for _, built in second] == [False, False, False, True]


LATENT = sorted(name for name in METHODS.names() if issubclass(METHODS.get(name), LatentCodeMethod))
# Six encoder iterations and two epochs of d and g, 16 wide, g and d in float64
TINY = {"encoder_iters": 6, "epochs": 2, "sens_epochs": 2, "lr": 1e-3, "width": 16, "precision": "float64"}


def _latent_params(cls: type[LatentCodeMethod], **values: Any) -> dict[str, Any]:
    encoder = {"name": (cls.encoders or ("factor_vae",))[0], "width": 16, "batch_size": 16}
    return cls.resolve({**{k: v for k, v in TINY.items() if k in cls.hparams}, **values, "encoder": encoder}, "paper")


@pytest.mark.parametrize("split", ["per seed", "shared"])
@pytest.mark.parametrize("name", LATENT)
def test_latent_method_members_stacked_equal_their_solo_runs(
    name: str, split: str, tmp_path: Path, float64: None, caplog: Any
) -> None:
    """Seeds with their own splits (g and d stack per split) or one split (all in one stack)."""
    cls = METHODS.get(name)
    grid = [{p: value for p in cls.stackable} for value in (0.5, 2.0)] if cls.stackable else [{}]
    members = [(_latent_params(cls, **point, **_ablation(cls)), seed) for seed in (0, 1) for point in grid]
    tasks = {seed: _table(seed if split == "per seed" else 0) for seed in (0, 1)}
    assert len({json.dumps(cls.stack_signature(p), sort_keys=True) for p, _ in members}) == 1
    ctxs = [run_context(tmp_path / "stack", seed) for _, seed in members]
    # One encoder per seed, and per grid point where the grid sweeps the encoder (FFVAE's).
    per_seed = len(grid) if set(cls.stackable) <= set(cls.encoder_hparams) else 1
    with caplog.at_level(logging.INFO, logger="test"):
        stacked = cls.run_stacked([p for p, _ in members], [tasks[seed] for _, seed in members], ctxs)
    assert any(f" x{2 * per_seed} " in record.getMessage() for record in caplog.records)  # one stacked training
    assert len({outcome.info["encoder_artifact"] for outcome in stacked}) == 2 * per_seed
    for index, ((params, seed), outcome) in enumerate(zip(members, stacked, strict=True)):
        alone = cls(params).run(tasks[seed], run_context(tmp_path / f"solo{index}", seed))
        assert outcome.info == alone.info
        np.testing.assert_allclose([r.value for r in outcome.metrics], [r.value for r in alone.metrics], atol=1e-6)
        if "sens_classifier_artifact" in outcome.info:  # d itself: its weights
            stacked_d, alone_d = (
                torch.load(root / "sensitive_classifier" / outcome.info["sens_classifier_artifact"] / "classifier.pt")
                for root in (tmp_path / "stack", tmp_path / f"solo{index}")
            )
            for name, weight in stacked_d.items():
                torch.testing.assert_close(weight, alone_d[name], rtol=0, atol=1e-9)
        for part in ("val", "test"):
            np.testing.assert_allclose(outcome.scores[part], alone.scores[part], rtol=0, atol=1e-6)


def _ablation(cls: type[LatentCodeMethod]) -> dict[str, Any]:
    """The ablation's sens_acc rows where the method has them (a d per member, stacked too)."""
    return {"ablation": True} if "ablation" in cls.hparams else {}


def test_dvge_seeds_of_one_split_train_one_g_stack(tmp_path: Path, float64: None, monkeypatch: Any) -> None:
    import fairbench.methods.dvge as dvge
    import fairbench.methods.families.latent.sensitive as sensitive

    sizes: list[int] = []
    real = dvge.fit_stacked
    for module in (dvge, sensitive):
        monkeypatch.setattr(
            module, "fit_stacked", lambda model, *a, **k: sizes.append(model.members) or real(model, *a, **k)
        )
    cls = METHODS.get("dvge")
    members = [(_latent_params(cls, eta1=eta, eta2=0.5), seed) for seed in (0, 1) for eta in (0.5, 2.0)]
    task = _table(0)  # one split for both seeds, as CelebA's fixed one
    ctxs = [run_context(tmp_path / "stack", seed) for _, seed in members]
    stacked = cls.run_stacked([p for p, _ in members], [task] * len(members), ctxs)
    assert sizes == [2, 4]  # the two seeds' d as one model, then the four members' g
    for index, ((params, seed), outcome) in enumerate(zip(members, stacked, strict=True)):
        alone = cls(params).run(task, run_context(tmp_path / f"solo{index}", seed))
        assert outcome.info == alone.info
        for split in ("val", "test"):
            np.testing.assert_allclose(outcome.scores[split], alone.scores[split], rtol=0, atol=1e-6)
    assert not np.allclose(stacked[0].scores["test"], stacked[2].scores["test"])  # the seeds' own codes
