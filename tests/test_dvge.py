"""DVGE and the removal baseline: perturbation, inference, stacking, artifacts, ablation rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from contexts import run_context
from contexts import synthetic_task as _table

import fairbench.methods.dvge as dvge_module
from fairbench import metrics
from fairbench.data.base import build_task, open_dataset
from fairbench.errors import FairbenchError
from fairbench.methods.dvge import DVGE
from fairbench.methods.families.latent import sensitive_dims
from fairbench.methods.families.latent.explanation import FOCI, predicted_logit_focus, predicted_loss_focus
from fairbench.methods.removal import Removal
from fairbench.nets.stacked import StackedMLP
from fairbench.plan import expand, group_units
from fairbench.registry import METHODS
from fairbench.suite import load_suite

ABLATION_CHECK = Path(__file__).resolve().parent.parent / "suites" / "dvge_ablation_check.yaml"

# Tiny, float64, but the real recipe otherwise (the MLPs are 10-16x5-2 instead of 10-1000x5-2).
TINY: dict[str, Any] = {
    "encoder": {"name": "factor_vae", "width": 16},
    "encoder_iters": 30,
    "epochs": 3,
    "sens_epochs": 3,
    "lr": 1e-3,
    "width": 16,
    "precision": "float64",
}


def _params(**overrides: Any) -> dict[str, Any]:
    return DVGE.resolve({**TINY, **overrides}, "paper")


def test_registered_with_budgets_and_checked_encoder() -> None:
    assert METHODS.get("dvge") is DVGE and METHODS.get("removal") is Removal
    assert DVGE.stackable == ("eta1", "eta2")
    paper = DVGE.resolve({}, "paper")
    assert paper["encoder"]["name"] == "factor_vae" and paper["encoder"]["gamma"] == 6.4
    assert (paper["epochs"], paper["sens_epochs"], paper["lr"], paper["batch_size"]) == (100, 120, 1e-5, 64)
    assert (paper["beta1"], paper["beta2"], paper["width"], paper["encoder_iters"]) == (0.5, 0.9, 1000, 1_000_000)
    assert DVGE.resolve({}, "quick")["encoder_iters"] < 1_000_000
    with pytest.raises(FairbenchError, match="gamma"):
        DVGE.resolve({"encoder": {"name": "factor_vae", "gama": 1.0}}, "paper")


def test_stacked_grid_equals_solo_runs(tmp_path: Path) -> None:
    data = _table()
    grid = [_params(eta1=e1, eta2=e2, ablation=True) for e1, e2 in ((0.1, 0.0), (1.0, 0.0), (0.5, 0.4), (2.0, 2.0))]
    stacked = DVGE.run_stacked(grid, [data] * len(grid), [run_context(tmp_path)] * len(grid))
    for params, outcome in zip(grid, stacked, strict=True):
        solo = DVGE(params).run(data, run_context(tmp_path))
        for split in ("val", "test"):
            np.testing.assert_allclose(outcome.scores[split], solo.scores[split], rtol=0, atol=1e-12)
        assert [(r.split, r.metric, r.tags) for r in outcome.metrics] == [
            (r.split, r.metric, r.tags) for r in solo.metrics
        ]
        np.testing.assert_allclose([r.value for r in outcome.metrics], [r.value for r in solo.metrics], atol=1e-12)
        assert outcome.info["selected_epoch"] == solo.info["selected_epoch"]
    # Ablation rows only for eta2 = 0 members.
    assert [bool(o.metrics) for o in stacked] == [True, True, False, False]


def _capture_fit(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    real = dvge_module.fit_stacked

    def spy(model, features, labels, *args, **kwargs):
        result = real(model, features, labels, *args, **kwargs)
        calls.append({"model": model, "features": features, "perturb": kwargs.get("perturb")})
        return result

    monkeypatch.setattr(dvge_module, "fit_stacked", spy)
    return calls


def test_inference_uses_the_unperturbed_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _table()
    calls = _capture_fit(monkeypatch)
    outcome = DVGE(_params(eta1=5.0, eta2=5.0, clip=False)).run(data, run_context(tmp_path))
    model, z = calls[0]["model"], calls[0]["features"]
    for split in ("val", "test"):
        rows = torch.from_numpy(data.splits[split])
        with torch.no_grad():
            expected = torch.softmax(model(z[rows].unsqueeze(0))[0], -1)[:, 1].numpy()
        np.testing.assert_allclose(outcome.scores[split], expected, atol=1e-12)
        assert outcome.scores[split].shape == (len(rows),)


def test_training_perturbation_is_clipped_and_follows_eq_8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _table()
    calls = _capture_fit(monkeypatch)
    DVGE(_params(eta1=3.0, eta2=0.7)).run(data, run_context(tmp_path))
    DVGE(_params(eta1=3.0, eta2=0.7, clip=False)).run(data, run_context(tmp_path))
    clipped, free = calls[0], calls[1]
    rows = torch.arange(40).unsqueeze(0)
    z = clipped["features"][rows]
    moved = clipped["perturb"](z, rows) - z
    assert (moved.abs() <= 0.1 * z.abs() + 1e-12).all()
    assert (moved.abs() > 0).any()
    # Without the clip: z' - z = eta1 F_d(z) - eta2 F_g(z) exactly (the released code).
    focus_d = torch.from_numpy(np.load(next((tmp_path / "sensitive_classifier").glob("*/focus_loss.npy"))))
    expected = 3.0 * focus_d[rows] - 0.7 * predicted_loss_focus(free["model"], z)
    torch.testing.assert_close(free["perturb"](z, rows) - z, expected)


def test_sensitive_focus_is_cached_and_shared_across_targets(tmp_path: Path) -> None:
    first = DVGE(_params(eta1=0.5, eta2=0.0)).run(_table(), run_context(tmp_path))
    assert first.info["encoder_built_now"]
    other = DVGE(_params(eta1=0.5, eta2=0.0)).run(_table(target="proxy > 0.5"), run_context(tmp_path))
    # The encoder key holds no target or group; the classifier's holds the group only.
    # (A new target drops its columns from the inputs, hence a new input_key here; the group
    # alone never does.)
    third = DVGE(_params(eta1=0.5, eta2=0.0)).run(_table(sensitive="proxy > 0.5"), run_context(tmp_path))
    assert not third.info["encoder_built_now"]
    assert third.info["encoder_artifact"] == first.info["encoder_artifact"]
    assert third.info["sens_classifier_artifact"] != first.info["sens_classifier_artifact"]
    assert other.info["encoder_label"] == "DVGE-D"


def test_stored_focus_is_the_classifiers_predicted_logit_gradient(tmp_path: Path) -> None:
    DVGE(_params(eta1=0.5, eta2=0.0)).run(_table(), run_context(tmp_path))
    folder = next((tmp_path / "sensitive_classifier").glob("*/focus_logit.npy")).parent
    state = torch.load(folder / "classifier.pt")
    d = StackedMLP([10, 16, 16, 16, 16, 16, 2], 1, dtype=torch.float64)
    d.load_state_dict(state)
    z = torch.from_numpy(np.load(next((tmp_path / "encoder").glob("*/mean.npy")))).double()[:20]
    focus = np.load(folder / "focus_logit.npy")[:20]
    np.testing.assert_allclose(focus, predicted_logit_focus(d, z.unsqueeze(0))[0].numpy(), atol=1e-12)
    stored_loss = np.load(folder / "focus_loss.npy")[:20]
    np.testing.assert_allclose(stored_loss, predicted_loss_focus(d, z.unsqueeze(0))[0].numpy(), atol=1e-12)
    # And numerically: d's predicted logit moves by the focus.
    h, row, dim = 1e-6, 3, 2
    with torch.no_grad():
        cls = d(z[row].view(1, 1, -1)).argmax().item()
        up, down = z[row].clone(), z[row].clone()
        up[dim] += h
        down[dim] -= h
        numeric = (d(up.view(1, 1, -1))[0, 0, cls] - d(down.view(1, 1, -1))[0, 0, cls]) / (2 * h)
    assert abs(numeric.item() - focus[row, dim]) < 1e-6


def test_ablation_rows_and_tags(tmp_path: Path) -> None:
    outcome = DVGE(_params(eta1=0.3, eta2=0.0, ablation=True)).run(_table(), run_context(tmp_path))
    rows = {(r.split, r.metric, r.tags["variant"], r.tags["sens_classifier"]): r for r in outcome.metrics}
    for split in ("val", "test"):
        for variant in ("dvge", "no_removal", "dims_removed"):
            # section 5.4's two readings: the classifier retrained on z' meets z' or the unperturbed z
            for kind in ("retrained", "retrained_tested_on_z", "fixed"):
                row = rows[(split, "sens_acc", variant, kind)]
                assert 0 <= row.value <= 1 and row.tags["encoder_label"] == "DVGE-D"
    assert ("test", "sens_acc_max", "dvge", "retrained") in rows
    no_removal = rows[("test", "sens_acc", "no_removal", "fixed")].value
    assert no_removal == pytest.approx(outcome.info["sens_test_acc"])
    assert len(outcome.info["ablation_removed_dims"]) == 1  # one sensitive attribute: s


def test_sensitive_dims_are_the_most_correlated_on_train() -> None:
    rng = np.random.default_rng(0)
    g = rng.integers(0, 2, 500)
    codes = rng.normal(size=(500, 6))
    codes[:, 4] += 2.0 * g
    codes[:, 1] -= 1.0 * g
    assert sensitive_dims(codes, g, np.arange(500), 2) == (4, 1)
    # Only train rows count.
    codes[:100, 0] = 100 * g[:100]
    assert sensitive_dims(codes, g, np.arange(100, 500), 1) == (4,)


def test_removal_zeroes_the_sensitive_dims(tmp_path: Path) -> None:
    params = Removal.resolve({k: v for k, v in TINY.items() if k != "sens_epochs"}, "paper")
    data = _table(sensitive="s == 1 and proxy > 0")  # reads two attributes: two dims
    outcome = Removal(params).run(data, run_context(tmp_path))
    assert len(outcome.info["removed_dims"]) == 2
    assert outcome.scores["test"].shape == (len(data.splits["test"]),)


def test_dvge_on_images(tmp_path: Path) -> None:
    data = build_task(open_dataset("synthetic_images", None, {"n": 60}), None, "Attractive", "Male", 0)
    params = _params(encoder={"name": "vanilla_vae"}, encoder_iters=2, eta1=0.5, eta2=0.1)
    outcome = DVGE(params).run(data, run_context(tmp_path))
    assert outcome.info["encoder_label"] == "DVGE-N"
    assert np.isfinite(outcome.scores["test"]).all()


@pytest.mark.slow
def test_real_south_german_credit_quick(tmp_path: Path, real_data) -> None:
    """The quick budget on the real data: runs end to end and scores like a classifier."""
    root = real_data("south_german_credit/SouthGermanCredit.asc")
    data = build_task(open_dataset("south_german_credit", root), None, "kredit", "alter > 25", 0)
    grid = [DVGE.resolve({"eta1": e, "eta2": 0.0}, "quick") for e in (0.1, 1.0)]
    outcomes = DVGE.run_stacked(grid, [data] * len(grid), [run_context(tmp_path)] * len(grid))
    test = data.splits["test"]
    for outcome in outcomes:
        assert metrics.acc(data.y[test], metrics.hard(outcome.scores["test"])) > 0.6


def test_focus_defaults_to_the_papers_loss_gradient() -> None:
    assert DVGE.hparams["focus"].default == "loss"
    assert DVGE.resolve({}, "paper")["focus"] == DVGE.resolve({}, "quick")["focus"] == "loss"
    assert "released code" in DVGE.hparams["focus"].help


def test_loss_focus_is_the_finite_difference_of_the_summed_cross_entropy() -> None:
    """DVGE's default F(z) = d/dz of sum_rows CE(model(z), argmax model(z)) (paper section 4.4),
    on the stacked MLP DVGE uses, checked against central differences of that sum."""
    model = StackedMLP([4, 16, 16, 2], 1, dtype=torch.float64).reset([torch.Generator().manual_seed(0)], std=0.5)
    z = torch.randn(1, 6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    focus = FOCI[DVGE.hparams["focus"].default](model, z)
    with torch.no_grad():
        predicted = model(z)[0].argmax(-1)  # fixed: the labels the gradient is taken against

        def summed_ce(x: torch.Tensor) -> float:
            return torch.nn.functional.cross_entropy(model(x)[0], predicted, reduction="sum").item()

        h, numeric = 1e-6, torch.zeros_like(z)
        for row in range(z.shape[1]):
            for dim in range(z.shape[2]):
                up, down = z.clone(), z.clone()
                up[0, row, dim] += h
                down[0, row, dim] -= h
                numeric[0, row, dim] = (summed_ce(up) - summed_ce(down)) / (2 * h)
    torch.testing.assert_close(focus, numeric, rtol=0, atol=1e-7)
    assert focus.abs().max() > 1e-2  # not a saturated, all-but-zero gradient
    # +F moves z away from the prediction: a small step raises the loss on the predicted labels.
    assert summed_ce(z + 1e-3 * focus) > summed_ce(z)


def test_logit_focus_convention_runs_and_differs(tmp_path: Path) -> None:
    data = _table()
    logit = DVGE(_params(eta1=2.0, eta2=0.5, clip=False, focus="logit")).run(data, run_context(tmp_path))
    loss = DVGE(_params(eta1=2.0, eta2=0.5, clip=False)).run(data, run_context(tmp_path))
    assert logit.info["sens_classifier_artifact"] == loss.info["sens_classifier_artifact"]
    assert not np.array_equal(logit.scores["test"], loss.scores["test"])


def test_ablation_check_suite_plans_the_papers_ablation_with_and_without_the_clip() -> None:
    suite, _ = load_suite(ABLATION_CHECK)
    jobs = expand(suite)
    etas = [round(0.1 * k, 1) for k in range(1, 11)]
    for encoder in ("DVGE-D", "DVGE-N"):
        for clip, label in ((True, f"{encoder} (clip)"), (False, f"{encoder} (no clip)")):
            mine = [j for j in jobs if j.label == label and j.params["clip"] is clip]
            assert sorted(j.params["eta1"] for j in mine) == etas
            assert all(j.params["eta2"] == 0 and j.params["ablation"] and j.params["focus"] == "loss" for j in mine)
    assert len(jobs) == 40
    assert sorted(len(u) for u in group_units(jobs, suite.stack)) == [10, 10, 10, 10]


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~8 CPU-minutes; far longer in wall time on a shared, loaded machine
def test_ablation_check_suite_shows_the_mechanism_on_adult(real_data, tmp_path: Path, fairbench) -> None:
    """suites/dvge_ablation_check.yaml end to end from an empty cache: without the clip, the
    fixed sensitive classifier's accuracy falls with eta1 for both encoders."""
    from scipy.stats import spearmanr

    from fairbench.report.declared import declared_tables
    from fairbench.store import load_report_specs, load_results

    data = real_data("uci_adult/adult.data", "uci_adult/adult.test")
    out = tmp_path / "results"
    result = fairbench("run", ABLATION_CHECK, "--results", out, "--workers", "2", "--data-dir", data)
    assert result.code == 0, result.err
    tables = {tuple(t.by.values()): t for t in declared_tables(load_results(out), load_report_specs(out).method_tables)}
    kinds = ("fixed", "retrained", "retrained_tested_on_z")
    assert set(tables) == {(kind, clip) for kind in kinds for clip in (True, False)}
    cells = tables[("fixed", False)].cells
    for label in ("DVGE-D (no clip)", "DVGE-N (no clip)"):
        mine = cells[(cells["label"] == label) & cells["column"].str.startswith("η1")].sort_values("order")
        assert len(mine) == 10
        accuracy = mine["mean"].to_numpy()
        assert spearmanr(np.arange(10), accuracy).statistic <= -0.8, (label, accuracy)
        assert accuracy[-1] <= accuracy[0] - 0.10, (label, accuracy)
    report = fairbench("report", "--ablation", out)
    assert report.code == 0, report.err
    for kind in ("fixed", "retrained"):
        for clip in ("true", "false"):
            assert len(list((out / "report").glob(f"ablation_*_{kind}_clip-{clip}.md"))) == 1


def test_bf16_is_a_setting_of_the_encoder_d_and_g_alike(tmp_path: Path) -> None:
    """The job's precision reaches every training of a DVGE job: its own encoder and d artifacts
    (fp32 keeps its), finite scores; a float64 recipe (exactness checks) stays full precision."""
    params = _params(eta1=0.5, eta2=0.4, precision="float32")
    fp32 = DVGE(params).run(_table(), run_context(tmp_path))
    bf16 = DVGE(params).run(_table(), replace(run_context(tmp_path), precision="bf16"))
    assert bf16.info["encoder_built_now"] and bf16.info["encoder_artifact"] != fp32.info["encoder_artifact"]
    assert bf16.info["sens_classifier_artifact"] != fp32.info["sens_classifier_artifact"]
    assert all(np.isfinite(bf16.scores[split]).all() for split in ("val", "test"))
    assert not np.array_equal(bf16.scores["test"], fp32.scores["test"])
