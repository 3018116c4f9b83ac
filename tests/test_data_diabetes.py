"""UCI Diabetes 130-US hospitals: counts on the real file (../shared/data/README.md), the
declared download (sha256, zip member) and the preprocessing on a small file in the official format."""

from __future__ import annotations

import csv
import dataclasses
import zipfile
from pathlib import Path

import pytest

from fairbench.data.base import build_task, open_dataset
from fairbench.data.diabetes import Diabetes, icd9_group
from fairbench.data.download import sha256_of
from fairbench.errors import FairbenchError

FILE = "uci_diabetes/diabetic_data.csv"


def test_real_file_counts_groups_and_target(real_data) -> None:
    root = real_data(FILE)
    with open(root / FILE, newline="") as handle:
        raw = list(csv.DictReader(handle))
    kept = [row for row in raw if row["gender"] != "Unknown/Invalid"]
    assert len(raw) == 101766 and len(kept) == 101763
    dataset = open_dataset("diabetes", root)
    task = build_task(dataset, None, "readmit", "race == 'Caucasian'", 0)
    assert len(task.y) == 101763 and task.y.sum() == sum(row["readmitted"] != "NO" for row in kept)
    assert task.g.sum() == 76099
    assert task.group("gender == 'Male'").sum() == 47055
    both = build_task(dataset, None, "readmit", ["race == 'Caucasian'", "gender == 'Male'"], 0)
    assert {name: int(groups.sum()) for name, groups in both.protected.items()} == {
        "race == 'Caucasian'": 76099,
        "gender == 'Male'": 47055,
    }
    assert (dataset.frame()["readmitted"] == "<30").sum() == sum(row["readmitted"] == "<30" for row in kept)
    sources = set(task.feature_sources)
    assert not sources & {"readmit", "readmitted", "encounter_id", "patient_nbr", "weight"}
    assert {"race", "gender", "diag_1", "glyburide_metformin"} <= sources
    assert "max_glu_serum=None" in task.feature_names and "race=?" in task.feature_names
    assert sorted(len(rows) for rows in task.splits.values()) == [20352, 20353, 61058]


def test_declared_file_is_the_shared_copy_and_fetches_from_the_archive_layout(real_data, tmp_path: Path) -> None:
    root = real_data(FILE)
    (declared,) = Diabetes.files
    assert declared.path == FILE and sha256_of(root / FILE) == declared.sha256
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(root / FILE, declared.member)
    local = dataclasses.replace(declared, url=archive.as_uri())
    lines = Diabetes.fetch(tmp_path / "data", files=(local,))
    assert lines[0].endswith("downloaded (sha256 ok)")
    assert sha256_of(tmp_path / "data" / FILE) == declared.sha256


def test_icd9_groups_of_strack_et_al() -> None:
    cases = {
        "250.83": "diabetes",
        "250": "diabetes",
        "428": "circulatory",
        "785": "circulatory",
        "786": "respiratory",
        "486": "respiratory",
        "787": "digestive",
        "577": "digestive",
        "996": "injury",
        "715": "musculoskeletal",
        "599": "genitourinary",
        "788": "genitourinary",
        "174": "neoplasms",
        "V57": "other",
        "E878": "other",
        "780": "other",
        "?": "?",
    }
    assert {code: icd9_group(code) for code in cases} == cases


HEADER = (
    "encounter_id,patient_nbr,race,gender,age,weight,admission_type_id,discharge_disposition_id,"
    "admission_source_id,time_in_hospital,payer_code,medical_specialty,num_lab_procedures,num_procedures,"
    "num_medications,number_outpatient,number_emergency,number_inpatient,diag_1,diag_2,diag_3,number_diagnoses,"
    "max_glu_serum,A1Cresult,metformin,repaglinide,nateglinide,chlorpropamide,glimepiride,acetohexamide,"
    "glipizide,glyburide,tolbutamide,pioglitazone,rosiglitazone,acarbose,miglitol,troglitazone,tolazamide,"
    "examide,citoglipton,insulin,glyburide-metformin,glipizide-metformin,glimepiride-pioglitazone,"
    "metformin-rosiglitazone,metformin-pioglitazone,change,diabetesMed,readmitted"
)


def test_generated_file_in_the_official_format(tmp_path: Path) -> None:
    """CRLF line ends, '?' for missing, 'None' a real level, three readmission values."""
    races = ["Caucasian", "AfricanAmerican", "?", "Hispanic"]
    readmitted = ["NO", ">30", "<30", "NO"]
    lines = [HEADER]
    for i in range(40):
        gender = "Unknown/Invalid" if i == 7 else ("Male" if i % 2 else "Female")
        glucose = "None" if i % 3 else ">300"
        fields = [
            str(1000 + i),
            str(500 + i // 2),
            races[i % 4],
            gender,
            f"[{10 * (i % 9)}-{10 * (i % 9) + 10})",
            "?",
            str(1 + i % 3),
            "1",
            "7",
            str(1 + i % 14),
            "?" if i % 2 else "MC",
            "?",
            str(40 + i),
            str(i % 6),
            str(10 + i),
            "0",
            "0",
            str(i % 3),
            ["250.83", "428", "V57"][i % 3],
            "?",
            "486",
            "9",
            glucose,
            "None",
            *(["No"] * 17),
            "Up" if i % 5 else "No",
            *(["No"] * 5),
            "Ch" if i % 2 else "No",
            "Yes",
            readmitted[i % 4],
        ]
        assert len(fields) == 50
        lines.append(",".join(fields))
    (tmp_path / "uci_diabetes").mkdir()
    (tmp_path / FILE).write_bytes(("\r\n".join(lines) + "\r\n").encode())
    dataset = open_dataset("diabetes", tmp_path)
    frame = dataset.frame()
    assert len(frame) == 39 and "Unknown/Invalid" not in set(frame["gender"])
    assert set(frame["diag_1"]) == {"diabetes", "circulatory", "other"} and set(frame["diag_2"]) == {"?"}
    assert set(frame["max_glu_serum"]) == {"None", ">300"}
    task = build_task(dataset, None, "readmit", "race == 'Caucasian'", 0)
    assert task.y.sum() == sum(readmitted[i % 4] != "NO" for i in range(40) if i != 7)
    assert task.g.sum() == sum(1 for i in range(40) if i != 7 and i % 4 == 0)
    thirty = build_task(dataset, None, "readmitted == '<30'", "gender == 'Male'", 0)
    assert thirty.y.sum() == sum(1 for i in range(40) if i != 7 and i % 4 == 2)
    assert "readmitted" not in thirty.feature_sources and "time_in_hospital" in thirty.feature_names


def test_a_malformed_row_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "uci_diabetes").mkdir()
    row = ",".join(
        [
            "1",
            "2",
            "Caucasian",
            "Male",
            "[0-10)",
            "?",
            "1",
            "1",
            "7",
            "3",
            "?",
            "?",
            "40",
            "0",
            "10",
            "0",
            "0",
            "0",
            "4x8",
            "?",
            "?",
            "9",
            "None",
            "None",
            *(["No"] * 23),
            "No",
            "No",
            "NO",
        ]
    )
    (tmp_path / FILE).write_text(HEADER + "\n" + row.replace("4x8", "428") + "\n" + row + "\n")
    with pytest.raises(FairbenchError, match=r"diabetic_data.csv line 3: diag_1 '4x8' is not an ICD-9 code") as err:
        open_dataset("diabetes", tmp_path).frame()
    assert "\n" not in str(err.value)
