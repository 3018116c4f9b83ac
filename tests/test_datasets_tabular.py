"""Tabular loaders on the real files (row, label and group counts from ../shared/data/README.md),
and the loaders' protocols on small generated files in the official formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fairbench.data.base import build_task, check_task, open_dataset
from fairbench.data.describe import describe_task
from fairbench.data.download import RemoteFile, ensure, sha256_of
from fairbench.errors import FairbenchError
from fairbench.metrics import dp_perfect

SGC = "south_german_credit/SouthGermanCredit.asc"


def test_south_german_credit(real_data) -> None:
    dataset = open_dataset("south_german_credit", real_data(SGC))
    frame = dataset.frame()
    assert frame.shape == (1000, 21)
    assert (frame["kredit"] == 1).sum() == 700 and (frame["kredit"] == 0).sum() == 300
    assert frame["alter"].min() == 19 and frame["alter"].max() == 75
    assert (frame["gastarb"] == 1).sum() == 37 and (frame["gastarb"] == 2).sum() == 963
    task = build_task(dataset, None, "kredit", "alter > 25", 0)
    assert task.x.shape == (1000, 20) and task.x.min() >= 0 and task.x.max() <= 1  # paper normalisation
    assert dp_perfect(task.y, task.g) == pytest.approx(0.1494, abs=5e-5)
    both = build_task(dataset, None, "kredit", "alter > 25 and gastarb == 1", 0)
    assert dp_perfect(both.y, both.g) == pytest.approx(0.1888, abs=5e-5)
    sizes = {name: len(rows) for name, rows in task.splits.items()}
    assert sizes == {"train": 600, "val": 200, "test": 200}
    # stratified by the label: every split keeps the 70% base rate
    assert all(task.y[rows].mean() == pytest.approx(0.7, abs=0.01) for rows in task.splits.values())


def test_statlog_german(real_data) -> None:
    frame = open_dataset("german", real_data("statlog_german/german.data")).frame()
    assert frame.shape[0] == 1000 and frame["credit"].sum() == 700
    assert (frame["foreign_worker"] == "A201").sum() == 963
    assert set(frame["sex"]) == {"male", "female"} and (frame["sex"] == "female").sum() == 310


def test_adult(real_data) -> None:
    files = ("adult.data", "adult.test")
    root = real_data(*(f"uci_adult/{name}" for name in files))
    raw = [len((root / "uci_adult" / name).read_text().strip().splitlines()) for name in files]
    assert raw == [32561, 16282]  # adult.test: one junk line first
    dataset = open_dataset("adult", root)
    frame = dataset.frame()
    assert len(frame) == 45222  # complete rows of both files
    assert frame["income"].isin([0, 1]).all() and frame["income"].sum() == 11208
    task = build_task(dataset, "official", "income", "sex == 'Male'", 0)
    assert len(task.splits["test"]) == 15060 and len(task.splits["train"]) + len(task.splits["val"]) == 30162
    assert not set(task.splits["train"]) & set(task.splits["val"])
    assert "income" not in {source for source in task.feature_sources}


def test_describe_reports_groups_and_dp_perfect(real_data) -> None:
    rows = describe_task("south_german_credit", "kredit", "alter > 25", None, 0, real_data(SGC), {}, "all")
    assert (
        rows[0]["n"] == 1000 and rows[0]["n_group1"] == 810 and rows[0]["dp_perfect"] == pytest.approx(0.1494, abs=5e-5)
    )
    assert [row["split"] for row in rows] == ["all", "train", "val", "test"]


def test_split_is_seeded_and_changes_with_seed() -> None:
    dataset = open_dataset("synthetic", None, {"n": 500})
    a = check_task(dataset, None, "y", "s", 0).splits
    b = check_task(dataset, None, "y", "s", 0).splits
    c = check_task(dataset, None, "y", "s", 1).splits
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["test"], c["test"])


def test_fixture_files_in_official_format(tmp_path: Path) -> None:
    """The loaders read files laid out exactly like the official ones (generated here)."""
    rng = np.random.default_rng(0)
    (tmp_path / "south_german_credit").mkdir()
    header = (
        "laufkont laufzeit moral verw hoehe sparkont beszeit rate famges buerge wohnzeit verm alter "
        "weitkred wohn bishkred beruf pers telef gastarb kredit"
    )
    rows = [
        " ".join(str(v) for v in [*rng.integers(1, 4, 12), rng.integers(19, 76), *rng.integers(1, 3, 7), i % 2])
        for i in range(60)
    ]
    (tmp_path / "south_german_credit" / "SouthGermanCredit.asc").write_text(header + "\n" + "\n".join(rows) + "\n")
    task = build_task(open_dataset("south_german_credit", tmp_path), None, "kredit", "alter > 40", 0)
    assert task.x.shape == (60, 20) and task.y.sum() == 30

    (tmp_path / "uci_adult").mkdir()
    line = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, {sex}, 2174, 0, 40, United-States, {label}"  # noqa: E501
    train = [line.format(sex="Male" if i % 3 else "Female", label=">50K" if i % 4 == 0 else "<=50K") for i in range(40)]
    train[5] = train[5].replace("State-gov", "?")  # a missing value: the row is dropped
    test = [
        line.format(sex="Male" if i % 2 else "Female", label=">50K." if i % 4 == 0 else "<=50K.") for i in range(20)
    ]
    (tmp_path / "uci_adult" / "adult.data").write_text("\n".join(train) + "\n")
    (tmp_path / "uci_adult" / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(test) + "\n")
    adult = build_task(open_dataset("adult", tmp_path), None, "income", "sex == 'Male'", 0)
    assert len(adult.y) == 59 and len(adult.splits["test"]) == 20 and adult.y[adult.splits["test"]].sum() == 5


def test_download_checks_sha256_and_offline_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "server" / "file.csv"
    source.parent.mkdir()
    source.write_text("a,b\n1,2\n")
    good = RemoteFile("ds/file.csv", source.as_uri(), sha256_of(source))
    monkeypatch.delenv("FAIRBENCH_OFFLINE")
    ensure((good,), tmp_path / "data", "ds")
    assert (tmp_path / "data" / "ds" / "file.csv").read_text() == "a,b\n1,2\n"
    bad = RemoteFile("ds/other.csv", source.as_uri(), "0" * 64)
    with pytest.raises(FairbenchError, match="expected 0000"):
        ensure((bad,), tmp_path / "data", "ds")
    assert not (tmp_path / "data" / "ds" / "other.csv").exists()
    monkeypatch.setenv("FAIRBENCH_OFFLINE", "1")
    with pytest.raises(FairbenchError, match=r"ds/third.csv is missing; run 'fairbench data fetch ds'"):
        ensure((RemoteFile("ds/third.csv", source.as_uri()),), tmp_path / "data", "ds")


def _pytest_statlog_german(**env: str) -> str:
    """The output of a fresh pytest running the real-data test `test_statlog_german` under `env`
    (with $FAIRBENCH_DATA only where `env` sets it)."""
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k != "FAIRBENCH_DATA"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "tests/test_datasets_tabular.py::test_statlog_german",
    ]
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(command, env={**base, **env}, cwd=root, capture_output=True, text=True).stdout


def test_real_data_read_from_fairbench_data_and_skips_say_what_to_set(real_data, tmp_path: Path) -> None:
    """$FAIRBENCH_DATA (or ../shared/data) holding the files runs the real-data tests; a folder
    without them skips, naming the files and the variable."""
    folder = real_data("statlog_german/german.data")
    assert "1 passed" in _pytest_statlog_german(FAIRBENCH_DATA=str(folder))
    skipped = _pytest_statlog_german(FAIRBENCH_DATA=str(tmp_path))
    assert "1 skipped" in skipped
    assert "set FAIRBENCH_DATA to a folder holding statlog_german/german.data" in skipped


def test_real_data_found_beside_the_repository_without_fairbench_data() -> None:
    """The README's plain `python -m pytest` runs the real-data tests: without $FAIRBENCH_DATA
    they read ../shared/data, where a developer checkout has it."""
    beside = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    if not (beside / "statlog_german" / "german.data").exists():
        pytest.skip(
            f"checks the default data folder only, which this checkout lacks ({beside}); "
            "the real-data tests read $FAIRBENCH_DATA"
        )
    assert "1 passed" in _pytest_statlog_german()
