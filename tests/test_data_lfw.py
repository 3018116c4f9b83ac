"""The LFW loader and `fairbench data` commands on a fixture in the official formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fairbench.data.base import build_task, open_dataset
from fairbench.data.lfw import ATTRIBUTES, identifier
from fairbench.errors import FairbenchError

try:  # importable both as a package module and from tests/ on sys.path
    from tests.lfw_fixtures import lfw_rows, make_lfw
except ImportError:  # pragma: no cover
    from lfw_fixtures import lfw_rows, make_lfw

SMALL = {"train_size": 24, "val_size": 12, "size": 16}


@pytest.fixture(autouse=True)
def _one_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRBENCH_DECODE_WORKERS", "1")


def test_lfw_reads_the_official_layout(tmp_path: Path) -> None:
    make_lfw(tmp_path)
    dataset = open_dataset("lfw", tmp_path, SMALL)
    frame = dataset.frame(0)
    rows = lfw_rows(48)
    assert len(frame) == 48 and frame["person"].iloc[0] == "Aaron Eckhart"
    assert frame["image"].iloc[4] == "Jean-Claude_Juncker/Jean-Claude_Juncker_0001.jpg"
    for name in ("Smiling", "Wavy Hair", "5 o' Clock Shadow", "Strong Nose-Mouth Lines"):
        expected = np.array([scores[ATTRIBUTES.index(name)] > 0 for _, _, scores in rows], dtype=np.int8)
        assert np.array_equal(frame[identifier(name)].to_numpy(), expected)
    assert {"Wavy_Hair", "5_o_Clock_Shadow", "Strong_Nose_Mouth_Lines"} <= set(dataset.column_names())
    assert np.array_equal(frame["Young"], frame["Youth"])  # FAAP's "Young"
    task = build_task(dataset, None, "Smiling", "Male", 0)
    assert task.x.shape == (48, 3, 16, 16) and task.x.dtype == np.uint8
    sizes = {split: len(rows) for split, rows in task.splits.items()}
    assert sizes == {"train": 24, "val": 12, "test": 12}
    assert np.array_equal(np.sort(np.concatenate(list(task.splits.values()))), np.arange(48))
    other = build_task(open_dataset("lfw", tmp_path, SMALL), None, "Smiling", "Male", 1)
    assert not np.array_equal(task.splits["train"], other.splits["train"])  # seeded random split


def test_lfw_describe_needs_only_the_attribute_file(tmp_path: Path, fairbench) -> None:
    make_lfw(tmp_path, images=False)
    args = ["data", "describe", "lfw", "--target", "Wavy_Hair", "--sensitive", "Male", "--data-dir", tmp_path]
    result = fairbench(*args, "--option", "train_size=24", "--option", "val_size=12", "--json")
    assert result.code == 0, result.err
    assert {row["split"]: row["n"] for row in json.loads(result.out)} == {"all": 48, "train": 24, "val": 12, "test": 12}
    with pytest.raises(FairbenchError, match="image folder .* is missing"):
        build_task(open_dataset("lfw", tmp_path, SMALL), None, "Smiling", "Male", 0)


def test_lfw_import_links_and_names_missing_files(tmp_path: Path, fairbench) -> None:
    source = make_lfw(tmp_path / "download")
    data = tmp_path / "data"
    (source / "lfw_attributes.txt").rename(source / "attributes.bak")
    missing = fairbench("data", "import", "lfw", source, "--data-dir", data)
    assert missing.code == 2 and len(missing.err.strip().splitlines()) == 1
    assert "lacks lfw_attributes.txt" in missing.err
    (source / "attributes.bak").rename(source / "lfw_attributes.txt")
    one = next((source / "lfw" / "Zoe_Ball").glob("*.jpg"))
    one.unlink()
    gone = fairbench("data", "import", "lfw", tmp_path / "download", "--data-dir", data)
    assert gone.code == 2 and "1 of 48 images missing or empty" in gone.err and one.name in gone.err
    make_lfw(tmp_path / "download")
    done = fairbench("data", "import", "lfw", tmp_path / "download", "--data-dir", data)
    assert done.code == 0, done.err
    assert (data / "lfw" / "lfw").is_symlink() and (data / "lfw" / "lfw_attributes.txt").is_symlink()
    assert len(open_dataset("lfw", data, SMALL).frame(0)) == 48


def test_lfw_damaged_attribute_file_is_one_line_error(tmp_path: Path) -> None:
    folder = make_lfw(tmp_path, images=False)
    path = folder / "lfw_attributes.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1].replace("Smiling", "Grinning"), *lines[2:]]) + "\n")
    with pytest.raises(FairbenchError, match="official attribute names"):
        open_dataset("lfw", tmp_path, SMALL).frame(0)
    path.write_text("\n".join([*lines[:5], "\t".join(lines[5].split("\t")[:20]), *lines[6:]]) + "\n")
    with pytest.raises(FairbenchError, match="line 6 has missing fields"):
        open_dataset("lfw", tmp_path, SMALL).frame(0)
