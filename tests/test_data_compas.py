"""COMPAS: ProPublica's row filters on the real file (counts from ../shared/data/README.md), the
declared checksummed download, and the filters on a few hand-made rows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from fairbench.data.base import build_task, open_dataset
from fairbench.data.compas import COMPAS, propublica_rows
from fairbench.data.download import sha256_of
from fairbench.errors import FairbenchError

FILE = "compas/compas-scores-two-years.csv"


def test_real_file_keeps_propublicas_6172_rows(real_data) -> None:
    root = real_data(FILE)
    raw = pd.read_csv(root / FILE)
    assert len(raw) == 7214 and raw["two_year_recid"].sum() == 3251
    dataset = open_dataset("compas", root)
    task = build_task(dataset, None, "two_year_recid", ["race == 'African-American'", "sex == 'Male'"], 0)
    assert len(task.y) == 6172 and task.y.sum() == 2809
    assert {name: int(groups.sum()) for name, groups in task.protected.items()} == {
        "race == 'African-American'": 3175,
        "sex == 'Male'": 4997,
    }
    sources = set(task.feature_sources)
    assert sources == {
        "age",
        "juv_fel_count",
        "juv_misd_count",
        "juv_other_count",
        "priors_count",
        "sex",
        "age_cat",
        "race",
        "c_charge_degree",
    }
    assert {len(rows) for rows in task.splits.values()} == {3703, 1234, 1235}


def test_propublica_filters_row_by_row() -> None:
    frame = pd.DataFrame(
        {
            "days_b_screening_arrest": [0, 30, -30, 31, None, 1, 1, 1],
            "is_recid": [0, 1, 0, 0, 0, -1, 0, 0],
            "c_charge_degree": ["F", "M", "F", "F", "F", "F", "O", "M"],
            "score_text": ["Low", "High", "Medium", "Low", "Low", "Low", "Low", None],
        }
    )
    assert propublica_rows(frame)["days_b_screening_arrest"].tolist() == [0, 30, -30]


def test_fetch_checks_the_published_checksum(real_data, tmp_path: Path) -> None:
    root = real_data(FILE)
    (declared,) = COMPAS.files
    assert declared.path == FILE and sha256_of(root / FILE) == declared.sha256
    assert declared.url.startswith("https://raw.githubusercontent.com/propublica/compas-analysis/")
    local = dataclasses.replace(declared, url=(root / FILE).as_uri())
    lines = COMPAS.fetch(tmp_path / "data", files=(local,))
    assert lines[0].endswith("downloaded (sha256 ok)") and sha256_of(tmp_path / "data" / FILE) == declared.sha256
    changed = tmp_path / "changed.csv"
    changed.write_bytes((root / FILE).read_bytes()[:-10])
    with pytest.raises(FairbenchError, match="compas: compas-scores-two-years.csv has sha256"):
        COMPAS.fetch(tmp_path / "other", files=(dataclasses.replace(declared, url=changed.as_uri()),))
    assert not (tmp_path / "other" / FILE).exists()
