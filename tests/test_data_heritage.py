"""Heritage Health: member-year features and the next-year target on small files generated in
the official release-3 format, `fairbench data import heritage`, and the errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fairbench.cli import cli
from fairbench.data.base import build_task, open_dataset
from fairbench.data.catalog import dataset_status
from fairbench.data.heritage import HEADERS, HOW_TO_GET
from fairbench.errors import FairbenchError

MEMBERS = [
    ("1", "30-39", "M"),
    ("2", "60-69", "F"),
    ("3", "80+", "F"),
    ("4", "", "M"),
    ("5", "0-9", ""),
    ("6", "70-79", "M"),
]
# MemberID|ProviderID|Vendor|PCP|Year|Specialty|PlaceSvc|PayDelay|LengthOfStay|DSFS|PrimaryConditionGroup|
# CharlsonIndex|ProcedureGroup|SupLOS
CLAIMS = [
    tuple(line.split("|"))
    for line in (
        "1|p1|v1|c1|Y1|Internal|Office|30||0- 1 month|ARTHSPIN|0|EM|0",
        "1|p2|v1|c1|Y1|Surgery|Inpatient Hospital|162+|2- 4 weeks|3- 4 months|AMI|1-2|SAS|0",
        "1|p2|v2|c1|Y1|Surgery|Office|12|1 day|11-12 months|AMI|5+||1",
        "1|p1|v1|c1|Y2|Internal|Office|20||0- 1 month||0|EM|0",
        "2|p3|v3|c2|Y1|Internal|Office|5||1- 2 months|ARTHSPIN|0|EM|0",
        "2|p3|v3|c2|Y2|Internal|Office|7||1- 2 months|ARTHSPIN|1-2|EM|0",
        "3|p4|v4||Y2|Surgery|Inpatient Hospital|40|1 day|5- 6 months|AMI|3-4|SAS|0",
        "4|p1|v1|c3|Y1|Internal|Office|9||0- 1 month|ARTHSPIN|0|EM|0",
        "6|p5|v5|c4|Y3|Internal|Office|9||0- 1 month|ARTHSPIN|0|EM|0",
    )
]
DAYS_Y2 = [("1", "0", "3"), ("2", "0", "0"), ("3", "1", "0"), ("4", "0", "15"), ("5", "0", "0")]
DAYS_Y3 = [("1", "0", "0"), ("2", "0", "2"), ("3", "0", "1"), ("6", "0", "0")]
DRUGS = [("1", "Y1", "0- 1 month", "1"), ("1", "Y1", "1- 2 months", "7+"), ("3", "Y2", "0- 1 month", "2")]
LABS = [("2", "Y1", "0- 1 month", "10+"), ("2", "Y2", "0- 1 month", "3")]


def write_official(folder: Path) -> Path:
    """The six release-3 CSVs (header line, comma separated, empty fields for missing values)."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "Members.csv": MEMBERS,
        "Claims.csv": CLAIMS,
        "DaysInHospital_Y2.csv": DAYS_Y2,
        "DaysInHospital_Y3.csv": DAYS_Y3,
        "DrugCount.csv": DRUGS,
        "LabCount.csv": LABS,
    }
    for name, rows in tables.items():
        lines = [",".join(HEADERS[name]), *(",".join(row) for row in rows)]
        (folder / name).write_text("\r\n".join(lines) + "\r\n")
    return folder


def test_member_years_against_hand_counts(tmp_path: Path) -> None:
    write_official(tmp_path / "heritage")
    frame = open_dataset("heritage", tmp_path).frame().set_index(["MemberID", "Year"])
    assert len(frame) == len(DAYS_Y2) + len(DAYS_Y3)
    assert frame["hospital"].to_dict() == {
        ("1", "Y1"): 1,
        ("2", "Y1"): 0,
        ("3", "Y1"): 0,
        ("4", "Y1"): 1,
        ("5", "Y1"): 0,
        ("1", "Y2"): 0,
        ("2", "Y2"): 1,
        ("3", "Y2"): 1,
        ("6", "Y2"): 0,
    }
    one = frame.loc[("1", "Y1")]
    assert one["claims"] == 3 and one["providers"] == 2 and one["vendors"] == 2 and one["pcps"] == 1
    assert one["paydelay_sum"] == 30 + 162 + 12 and one["paydelay_max"] == 162 and one["paydelay_min"] == 12
    assert one["stay_days"] == 14 + 1 and one["dsfs_max"] == 12 and one["charlson_max"] == 3
    assert one["drug_total"] == 8 and one["drug_months"] == 2 and one["lab_total"] == 0
    assert one["PrimaryConditionGroup=AMI"] == 2 and one["ProcedureGroup=?"] == 1 and one["PlaceSvc=Office"] == 2
    assert frame.loc[("2", "Y1"), "lab_total"] == 10 and frame.loc[("3", "Y1"), "claims_truncated"] == 1
    # No Y1 claims (member 5) or no Y2 claims (member 6): zero counts, not missing values.
    assert frame.loc[("5", "Y1"), "claims"] == 0 and frame.loc[("6", "Y2"), "claims"] == 0
    assert frame.loc[("3", "Y2"), "pcps"] == 1  # an empty PCP field is a value of its own
    assert frame.loc[("1", "Y1"), "age"] == 30 and frame.loc[("3", "Y1"), "age"] == 80
    assert np.isnan(frame.loc[("4", "Y1"), "age"]) and frame.loc[("4", "Y1"), "AgeAtFirstClaim"] == "?"
    assert frame.loc[("5", "Y1"), "Sex"] == "?"


def test_task_inputs_and_age_groups(tmp_path: Path) -> None:
    write_official(tmp_path / "heritage")
    task = build_task(open_dataset("heritage", tmp_path), None, "hospital", "age >= 60", 0)
    old = {("2", "Y1"), ("3", "Y1"), ("2", "Y2"), ("3", "Y2"), ("6", "Y2")}
    keys = list(zip(task.attributes["MemberID"], task.attributes["Year"]))
    assert [key in old for key in keys] == task.g.astype(bool).tolist()  # missing age: the younger group
    assert "hospital" not in task.feature_sources and "claims" in task.feature_names
    assert "PrimaryConditionGroup=AMI" in task.feature_names and "AgeAtFirstClaim=80+" in task.feature_names
    assert np.isfinite(task.x).all() and task.x.shape[0] == 9


def test_import_links_the_files_and_errors_say_what_to_put_where(tmp_path: Path) -> None:
    src = write_official(tmp_path / "download")
    data = tmp_path / "data"
    runner = CliRunner()
    res = runner.invoke(cli, ["data", "import", "heritage", str(src), "--data-dir", str(data)])
    assert res.exit_code == 0, res.output
    assert "9 member-years" in res.output
    assert all((data / "heritage" / name).is_symlink() for name in HEADERS)
    assert len(open_dataset("heritage", data).frame()) == 9
    for damage, message in [
        (["Members.csv"], "lacks Members.csv"),
        (["Claims.csv", "HHP_release3.zip"], "(unzip HHP_release3.zip there first)"),
        (["LabCount.csv"], "LabCount.csv line 1 must be MemberID,Year,DSFS,LabCount"),
    ]:
        bad = write_official(tmp_path / f"bad_{damage[0]}")
        (bad / damage[0]).unlink()
        if damage[0] == "LabCount.csv":
            (bad / "LabCount.csv").write_text("MemberID,Year,LabCount\n")
        if len(damage) == 2:
            (bad / damage[1]).write_bytes(b"PK")
        res = runner.invoke(cli, ["data", "import", "heritage", str(bad), "--data-dir", str(tmp_path / "d2")])
        assert isinstance(res.exception, FairbenchError) and message in str(res.exception), res.output
        assert "\n" not in str(res.exception)
        assert not (tmp_path / "d2" / "heritage").exists()  # nothing half-written
    with pytest.raises(FairbenchError, match=r"the data missing in .*empty/heritage; register for"):
        open_dataset("heritage", tmp_path / "empty").frame()
    res = runner.invoke(cli, ["data", "fetch", "heritage", "--data-dir", str(tmp_path / "empty")])
    assert isinstance(res.exception, FairbenchError) and str(res.exception).endswith(HOW_TO_GET)


def test_an_unknown_band_names_its_line(tmp_path: Path) -> None:
    folder = write_official(tmp_path / "heritage")
    claims = (folder / "Claims.csv").read_text().replace("2- 4 weeks", "2-4 wks")
    (folder / "Claims.csv").write_text(claims)
    with pytest.raises(FairbenchError, match=r"Claims.csv line 3: LengthOfStay '2-4 wks' is not one of") as err:
        open_dataset("heritage", tmp_path).frame()
    assert "\n" not in str(err.value)


def test_status_names_the_missing_files_and_what_to_do(tmp_path: Path) -> None:
    assert dataset_status("heritage", tmp_path).state == "missing"
    folder = write_official(tmp_path / "heritage")
    (folder / "LabCount.csv").unlink()
    partial = dataset_status("heritage", tmp_path)
    assert partial.state == "partial" and partial.missing == ["LabCount.csv"] and partial.action == HOW_TO_GET
    write_official(folder)
    assert dataset_status("heritage", tmp_path).state == "present"
