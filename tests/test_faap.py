"""FAAP and its deployed models on generated images (synthetic_images, 16-pixel inputs)."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from contexts import run_context

from fairbench.data.base import TaskData, build_task, open_dataset
from fairbench.deployed import KINDS, DeployedConfig, flip_labels, load_deployed, split_train
from fairbench.errors import FairbenchError
from fairbench.methods.base import RunContext
from fairbench.methods.faap import FAAP, Players, entropy, faap_step, fairness_loss, perturb
from fairbench.metrics import dp
from fairbench.nets.generators import AdvGANGenerator
from fairbench.nets.resnet import FEATURES, resnet18_split
from fairbench.train import Trainer

TINY = {"size": 16, "deployed_epochs": 1, "epochs": 1, "batch_size": 16, "deployed_batch_size": 16}


@pytest.fixture(scope="module")
def data() -> TaskData:
    return build_task(open_dataset("synthetic_images", None, {"n": 80}), None, "Attractive", "Male", 0)


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    return run_context(tmp_path, log=logging.getLogger("test_faap"))


def _faap(**params: object) -> FAAP:
    return FAAP(FAAP.resolve({**TINY, **params}, "quick"))


def test_resnet_split_keeps_a_feature_map_at_small_sides() -> None:
    for size, side, first in ((16, 1, 3), (32, 1, 7), (64, 2, 7)):
        net = resnet18_split(size).eval()
        with torch.no_grad():
            features = net.g(torch.rand(2, 3, size, size))
            assert features.shape == (2, FEATURES, side, side)
            assert net.f(features).shape == (2, 2)
        assert net.g[0].kernel_size == (first, first)  # the small-input stem below 32 pixels only
    assert resnet18_split(16, channels=1).g[0].in_channels == 1


def test_perturbation_never_exceeds_eps() -> None:
    torch.manual_seed(0)
    x = torch.rand(8, 3, 20, 20)
    x[:, :, :2] = 0.0  # pixels at both ends of the range, where clipping to [0, 1] also acts
    x[:, :, -2:] = 1.0
    eps = 0.05
    for delta in (10 * torch.randn_like(x), AdvGANGenerator(3, bound=1.0)(x)):  # far beyond eps
        moved = (perturb(x, delta, eps) - x).abs()
        assert moved.max().item() <= eps + 1e-7 and moved.max().item() > eps / 2
    generator = AdvGANGenerator(3, bound=eps)
    assert generator(x).shape == x.shape and generator(x).abs().max().item() <= eps


def test_faap_run_keeps_eps_and_deployed_model_bit_for_bit(data: TaskData, ctx: RunContext) -> None:
    method = _faap(deployed="fair")
    deployed = load_deployed(data, method.deployed_config("fair"), ctx)
    before = {name: value.clone() for name, value in deployed.net.state_dict().items()}
    weights = (deployed.folder / "model.pt").read_bytes()
    outcome = method.run(data, ctx)
    reloaded = load_deployed(data, method.deployed_config("fair"), ctx)
    assert not reloaded.built_now and (reloaded.folder / "model.pt").read_bytes() == weights
    after = reloaded.net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)  # batch-norm buffers included
    linf = [r.value for r in outcome.metrics if r.metric == "perturbation_linf"]
    assert len(linf) == 1 and 0 < linf[0] <= 0.05 + 1e-7
    assert len(outcome.scores["test"]) == len(data.splits["test"])


def test_bf16_reaches_the_deployed_models_and_faap_alike(data: TaskData, tmp_path: Path) -> None:
    method = _faap()
    contexts = {p: replace(run_context(tmp_path), precision=p) for p in ("fp32", "bf16")}
    deployed = {p: load_deployed(data, method.deployed_config("normal"), ctx) for p, ctx in contexts.items()}
    assert deployed["bf16"].key != deployed["fp32"].key  # a model of its own, trained under autocast:
    weights = [model.net.state_dict() for model in deployed.values()]
    assert any(not torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    # G and the Ds too: against the same deployed model, each precision trains another G
    generators = [method.train_generator(Trainer(data, ctx), [deployed["fp32"]]) for ctx in contexts.values()]
    first, second = (g.state_dict() for g in generators)
    assert any(not torch.equal(first[name], second[name]) for name in first)


def test_deployed_model_is_frozen_during_a_faap_step(data: TaskData) -> None:
    torch.manual_seed(0)
    model = resnet18_split(16).eval().requires_grad_(False)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    players = Players(AdvGANGenerator(3, bound=0.05), 1)
    generator = players.generator
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-2)
    opt_d = torch.optim.Adam(players.discriminators.parameters(), lr=1e-2)
    x = torch.rand(8, 3, 16, 16)
    y, z = torch.randint(0, 2, (8,)), torch.tensor([0, 1] * 4)
    g_before = [w.clone() for w in generator.parameters()]
    for _ in range(2):
        faap_step(players, [model], x, y, z, opt_g, opt_d, 0.05, 0.1, 1.0)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(g_before, generator.parameters()))  # G did learn


def test_discriminator_sees_only_g_features() -> None:
    torch.manual_seed(0)
    model = resnet18_split(16).eval().requires_grad_(False)
    players = Players(AdvGANGenerator(3, bound=0.05), 1)
    generator, discriminator = players.generator, players.discriminators[0]
    seen_by_d: list[torch.Tensor] = []
    made_by_g: list[torch.Tensor] = []
    discriminator.register_forward_pre_hook(lambda module, inputs: seen_by_d.append(inputs[0].detach()))
    model.g.register_forward_hook(lambda module, inputs, output: made_by_g.append(output.detach()))
    opt_g = torch.optim.Adam(generator.parameters())
    opt_d = torch.optim.Adam(discriminator.parameters())
    x = torch.rand(6, 3, 16, 16)
    faap_step(
        players, [model], x, torch.zeros(6, dtype=torch.long), torch.tensor([0, 1] * 3), opt_g, opt_d, 0.05, 0.1, 1.0
    )
    assert len(made_by_g) == 1 and len(seen_by_d) == 2  # one D step, one G step
    for tensor in seen_by_d:
        assert tensor.shape == (6, FEATURES, 1, 1)  # the last convolution's map, never an image
        assert torch.equal(tensor, made_by_g[0])


def test_entropy_loss_is_minimal_at_a_uniform_prediction() -> None:
    grid = torch.linspace(-6, 6, 121)
    logits = torch.stack([grid, torch.zeros_like(grid)], dim=1)[:, None, :]  # 121 single-row batches
    losses = torch.stack([-entropy(row) for row in logits])
    assert losses.argmin().item() == 60  # logits (0, 0): P = (1/2, 1/2)
    assert losses.min().item() == pytest.approx(-math.log(2))
    # eq. 4: at equal D loss, the uniform prediction has the lowest fairness loss for alpha > 0
    z = torch.tensor([0, 1])
    uniform, confident = torch.zeros(2, 2), torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    confident_wrong = confident.flip(1)
    assert fairness_loss(uniform, z, 0.1) < fairness_loss(confident, z, 0.1)
    assert fairness_loss(uniform, z, 0.0) > fairness_loss(confident_wrong, z, 0.0)  # alpha 0: flipping wins


def test_split_train_and_label_flips() -> None:
    rows = np.arange(100, 200)
    mine, theirs = split_train(rows, 0.5, 3)
    assert len(mine) == len(theirs) == 50 and np.array_equal(np.union1d(mine, theirs), rows)
    assert np.array_equal(mine, split_train(rows, 0.5, 3)[0]) and not np.array_equal(mine, split_train(rows, 0.5, 4)[0])
    with pytest.raises(FairbenchError, match="deployed_fraction"):
        DeployedConfig(fraction=1.0).check()
    rng = np.random.default_rng(0)
    g = rng.integers(0, 2, 2000)
    y = (rng.random(2000) < np.where(g == 1, 0.7, 0.4)).astype(np.int64)
    flipped = flip_labels(y, g, 0.2, 0)
    assert dp(flipped, g) > dp(y, g) + 0.1  # towards each group's majority: more correlation
    assert flipped.sum() != y.sum() and np.array_equal(flipped, flip_labels(y, g, 0.2, 0))
    assert np.array_equal(flip_labels(y, g, 0.0, 0), y)


def test_transfer_trains_on_surrogates_and_evaluates_the_held_out_model(data: TaskData, ctx: RunContext) -> None:
    outcome = _faap(deployed="RG", surrogates=["normal"]).run(data, ctx)
    held_out = load_deployed(data, _faap().deployed_config("RG"), ctx)
    surrogate = load_deployed(data, _faap().deployed_config("normal"), ctx)
    assert outcome.info["deployed_artifact"] == held_out.key != surrogate.key
    assert outcome.info["surrogate_artifacts"] == [surrogate.key]
    tagged = {(r.split, r.metric, r.tags.get("input")) for r in outcome.metrics if r.tags.get("surrogates") == "normal"}
    assert ("test", "dp", "perturbed") in tagged and all(r.tags["deployed"] == "RG" for r in outcome.metrics)
    with pytest.raises(FairbenchError, match="must not be a surrogate"):
        _faap(deployed="normal", surrogates=["normal", "fair"]).run(data, ctx)


SUITE = """\
name: {name}
seeds: [0]
budget: quick
experiments:
  - dataset: synthetic_images
    target: Attractive
    sensitive: Male
    options: {{n: 64}}
methods:
  - method: faap
    params: {{size: 16, deployed_epochs: 1, epochs: 1, batch_size: 16, deployed_batch_size: 16}}
    grid: {{deployed: [normal, fair, LF, RG]}}
"""


def test_each_deployed_kind_is_built_once_and_reused_by_a_second_suite(tmp_path: Path, fairbench) -> None:
    import os

    import pandas as pd

    cache = Path(os.environ["FAIRBENCH_CACHE"]) / "deployed"
    existing = set(cache.glob("*/done")) if cache.exists() else set()
    stamps = {}
    for name in ("faap_first", "faap_second"):
        suite = tmp_path / f"{name}.yaml"
        suite.write_text(SUITE.format(name=name))
        assert fairbench("run", suite, "--results", tmp_path / name, "--threads", "1").code == 0
        built = sorted(set(cache.glob("*/done")) - existing)
        assert len(built) == len(KINDS)  # one artifact per kind, none added by the second suite
        stamps[name] = {path: path.stat().st_mtime_ns for path in built}
        logs = " ".join(path.read_text() for path in (tmp_path / name / "logs").glob("*.log"))
        word = "built" if name == "faap_first" else "reused"
        assert all(f"deployed model {kind}: " in logs for kind in KINDS)
        assert logs.count(f"({word})") == len(KINDS)
    assert stamps["faap_first"] == stamps["faap_second"]
    table = pd.read_csv(tmp_path / "faap_second" / "results.csv")
    tagged = table.dropna(subset=["input"])
    assert set(tagged["deployed"]) == set(KINDS) and set(tagged["input"]) == {"clean", "perturbed"}
    assert set(tagged["metric"]) == {"acc", "dp", "eodds_sum"}


SUITES = Path(__file__).resolve().parent.parent / "suites"


def test_faap_suites_validate(fairbench) -> None:
    for name in ("faap_cmnist-quick", "faap_celeba", "faap_lfw"):
        result = fairbench("validate", SUITES / f"{name}.yaml")
        assert result.code == 0, result.err


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["faap_celeba", "faap_lfw"])
def test_paper_suites_run_end_to_end_on_generated_files(suite: str, tmp_path: Path, fairbench) -> None:
    import pandas as pd

    try:  # importable both as a package module and from tests/ on sys.path
        from tests.image_fixtures import make_celeba
        from tests.lfw_fixtures import make_lfw
    except ImportError:  # pragma: no cover
        from image_fixtures import make_celeba
        from lfw_fixtures import make_lfw

    data = tmp_path / "data"
    (make_celeba if suite == "faap_celeba" else make_lfw)(data)
    options = "{size: 24}" if suite == "faap_celeba" else "{size: 24, train_size: 24, val_size: 12}"
    small = [f"experiments.{i}.options={options}" for i in range(3)]
    tiny = "size: 16, deployed_epochs: 1, epochs: 1, batch_size: 16, deployed_batch_size: 16"
    params = [f"methods.0.params={{{tiny}}}"]
    if suite == "faap_celeba":  # its transfer entry: G against normal + fair, evaluated on LF and RG
        params.append(f"methods.1.params={{{tiny}, surrogates: [normal, fair]}}")
    sets = [item for value in ["budget=quick", *params, *small] for item in ("--set", value)]
    result = fairbench("run", SUITES / f"{suite}.yaml", "--results", tmp_path / "out", "--data-dir", data, *sets)
    assert result.code == 0, result.err
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    tagged = table[(table["split"] == "test") & table["input"].notna()]
    cells = tagged.groupby(["experiment", "deployed", "input"])["metric"].apply(frozenset)
    assert len(cells) == 3 * len(KINDS) * 2 and set(cells) == {frozenset({"acc", "dp", "eodds_sum"})}
    if suite == "faap_celeba":
        transfer = tagged[tagged["surrogates"].notna()]
        assert set(transfer["surrogates"]) == {"normal+fair"} and set(transfer["deployed"]) == {"LF", "RG"}
