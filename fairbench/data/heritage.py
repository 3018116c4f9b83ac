"""Heritage Health Prize (release 3), user-supplied: one row per member and claim year.

The data needs a registration with the Heritage Provider Network's Heritage Health Prize, so it
is never downloaded; `fairbench data import heritage PATH` checks and links the extracted files:

    <data>/heritage/Claims.csv               MemberID, ProviderID, Vendor, PCP, Year (Y1..Y3), Specialty,
                                             PlaceSvc, PayDelay ("162+" capped), LengthOfStay ("1 day",
                                             "2- 4 weeks", ...), DSFS ("0- 1 month", ...),
                                             PrimaryConditionGroup, CharlsonIndex ("0", "1-2", "3-4", "5+"),
                                             ProcedureGroup, SupLOS
    <data>/heritage/Members.csv              MemberID, AgeAtFirstClaim ("0-9" ... "80+", empty), Sex (M/F/empty)
    <data>/heritage/DaysInHospital_Y2.csv    MemberID, ClaimsTruncated, DaysInHospital (days in year 2)
    <data>/heritage/DaysInHospital_Y3.csv    the same for year 3
    <data>/heritage/DrugCount.csv            MemberID, Year, DSFS, DrugCount ("7+" capped)
    <data>/heritage/LabCount.csv             MemberID, Year, DSFS, LabCount ("10+" capped)

The task is Zemel et al. (2013)'s Health task, which GRAD (Table 1) reuses: whether a member
spends any day in hospital in the year after the claims (target `hospital`, DaysInHospital > 0
in DaysInHospital_Y2/Y3), age protected. Zemel et al. publish no preprocessing code; the
construction below is this loader's. Each row is one line of the two DaysInHospital files with
the member's claims of the year before (Y1 for Y2, Y2 for Y3), so a member can appear twice.
GRAD's Health accuracies (0.84-0.85 for every network, discrimination near 0) suggest a target
with about 15% positives; the loader is tested on generated files only (the real files need the
registration). The choices left open, made here:

- Features of a member-year: the number of claims, distinct providers, vendors and primary-care
  physicians, the highest CharlsonIndex band (0-3), PayDelay sum/max/min (days, "162+" = 162),
  days of stay summed (bands at their lower bound in days, "26+ weeks" = 182), the latest DSFS
  month, a claim count per level of PrimaryConditionGroup, Specialty, ProcedureGroup and
  PlaceSvc (one column per level present in the file), drug and lab counts summed with the
  number of months they appear in ("7+" = 7, "10+" = 10), ClaimsTruncated, and Sex and
  AgeAtFirstClaim one-hot (missing = "?"). A member-year without claims gets zero counts.
  Counts are standardised with train statistics.
- `age` is the lower bound of AgeAtFirstClaim in years (NaN where missing, which every
  comparison puts in the group of False). The file has decade bands, so an age group is a
  decade boundary: `age >= 60`, `age >= 70`, ...; the threshold is the suite's choice.
- Protocol `random`: a seeded 60/20/20 split stratified by `hospital` (the paper's split is not
  published).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairbench.data.base import DatasetStatus, data_dir_from_env, user_supplied_status
from fairbench.data.download import RemoteFile
from fairbench.data.placing import place
from fairbench.data.tabular import TabularDataset
from fairbench.errors import FairbenchError

HEADERS = {
    "Claims.csv": [
        "MemberID",
        "ProviderID",
        "Vendor",
        "PCP",
        "Year",
        "Specialty",
        "PlaceSvc",
        "PayDelay",
        "LengthOfStay",
        "DSFS",
        "PrimaryConditionGroup",
        "CharlsonIndex",
        "ProcedureGroup",
        "SupLOS",
    ],
    "Members.csv": ["MemberID", "AgeAtFirstClaim", "Sex"],
    "DaysInHospital_Y2.csv": ["MemberID", "ClaimsTruncated", "DaysInHospital"],
    "DaysInHospital_Y3.csv": ["MemberID", "ClaimsTruncated", "DaysInHospital"],
    "DrugCount.csv": ["MemberID", "Year", "DSFS", "DrugCount"],
    "LabCount.csv": ["MemberID", "Year", "DSFS", "LabCount"],
}
HOW_TO_GET = (
    "register for the Heritage Health Prize data (release 3, HHP_release3.zip), extract it and run "
    f"'fairbench data import heritage FOLDER' on the folder holding {', '.join(HEADERS)} (it links them into "
    "<data>/heritage/)"
)
CLAIM_LEVELS = ("PrimaryConditionGroup", "Specialty", "ProcedureGroup", "PlaceSvc")
CHARLSON = {"0": 0, "1-2": 1, "3-4": 2, "5+": 3}
STAY_DAYS = {
    "1 day": 1,
    "2 days": 2,
    "3 days": 3,
    "4 days": 4,
    "5 days": 5,
    "6 days": 6,
    "1- 2 weeks": 7,
    "2- 4 weeks": 14,
    "4- 8 weeks": 28,
    "8-12 weeks": 56,
    "12-26 weeks": 84,
    "26+ weeks": 182,
}
# The year whose claims predict each DaysInHospital file.
TARGET_FILES = {"Y1": "DaysInHospital_Y2.csv", "Y2": "DaysInHospital_Y3.csv"}
BASE_COUNTS = (
    "claims",
    "providers",
    "vendors",
    "pcps",
    "charlson_max",
    "paydelay_sum",
    "paydelay_max",
    "paydelay_min",
    "stay_days",
    "dsfs_max",
    "drug_total",
    "drug_months",
    "lab_total",
    "lab_months",
    "claims_truncated",
)


def capped(values: pd.Series) -> pd.Series:
    """'7+' -> 7, '162+' -> 162, '' -> NaN."""
    return pd.to_numeric(values.str.rstrip("+"), errors="coerce")


def months(values: pd.Series) -> pd.Series:
    """DSFS band '0- 1 month' .. '11-12 months' -> its upper month (1..12)."""
    return pd.to_numeric(values.str.extract(r"-\s*(\d+)", expand=False), errors="coerce")


def read_table(path: Path, rows: int | None = None) -> pd.DataFrame:
    """One official CSV as strings ('' where empty), its header checked; `rows` = 0 reads only the header."""
    if not path.exists():
        raise FairbenchError(f"heritage: {path} is missing; {HOW_TO_GET}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=rows)
    if list(frame.columns) != HEADERS[path.name]:
        raise FairbenchError(
            f"heritage: {path} line 1 must be {','.join(HEADERS[path.name])}; replace it with the official file"
        )
    return frame


def coded(values: pd.Series, codes: dict[str, int], path: Path, column: str) -> pd.Series:
    """Map the bands of `column` to numbers ('' -> NaN); a band not in `codes` is an error naming its line."""
    out = values.map(codes)
    unknown = out.isna() & (values != "")
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise FairbenchError(
            f"heritage: {path} line {row + 2}: {column} {values.iloc[row]!r} is not one of {', '.join(codes)}; "
            f"replace the file with the official one"
        )
    return out


def member_years(folder: Path) -> pd.DataFrame:
    """The attribute table: one row per (member, claim year) with a following-year outcome."""
    path = folder / "Claims.csv"
    claims = read_table(path)
    claims = claims.assign(
        paydelay=capped(claims["PayDelay"]),
        stay=coded(claims["LengthOfStay"], STAY_DAYS, path, "LengthOfStay").fillna(0),
        dsfs=months(claims["DSFS"]),
        charlson=coded(claims["CharlsonIndex"], CHARLSON, path, "CharlsonIndex"),
    )
    keys = ["MemberID", "Year"]
    by = claims.groupby(keys)
    table = pd.DataFrame(
        {
            "claims": by.size(),
            "providers": by["ProviderID"].nunique(),
            "vendors": by["Vendor"].nunique(),
            "pcps": by["PCP"].nunique(),
            "charlson_max": by["charlson"].max(),
            "paydelay_sum": by["paydelay"].sum(),
            "paydelay_max": by["paydelay"].max(),
            "paydelay_min": by["paydelay"].min(),
            "stay_days": by["stay"].sum(),
            "dsfs_max": by["dsfs"].max(),
        }
    )
    levels = [pd.crosstab([claims["MemberID"], claims["Year"]], claims[c].replace("", "?")) for c in CLAIM_LEVELS]
    for column, counts in zip(CLAIM_LEVELS, levels, strict=True):
        table = table.join(counts.rename(columns=lambda level, c=column: f"{c}={level}"))
    for name, stem in (("DrugCount.csv", "drug"), ("LabCount.csv", "lab")):
        counts = read_table(folder / name)
        value = capped(counts[name.removesuffix(".csv")])
        grouped = value.groupby([counts["MemberID"], counts["Year"]])
        table = table.join(pd.DataFrame({f"{stem}_total": grouped.sum(), f"{stem}_months": grouped.size()}))
    rows = []
    for year, name in TARGET_FILES.items():
        outcome = read_table(folder / name)
        rows.append(
            pd.DataFrame(
                {
                    "MemberID": outcome["MemberID"],
                    "Year": year,
                    "claims_truncated": pd.to_numeric(outcome["ClaimsTruncated"], errors="coerce"),
                    "hospital": (pd.to_numeric(outcome["DaysInHospital"], errors="coerce") > 0).astype(int),
                }
            )
        )
    frame = pd.concat(rows, ignore_index=True).join(table, on=keys)
    members = read_table(folder / "Members.csv").set_index("MemberID")
    frame = frame.join(members, on="MemberID")
    frame[["AgeAtFirstClaim", "Sex"]] = frame[["AgeAtFirstClaim", "Sex"]].fillna("").replace("", "?")
    frame["age"] = pd.to_numeric(frame["AgeAtFirstClaim"].str.extract(r"^(\d+)", expand=False), errors="coerce")
    counts = [c for c in frame.columns if c in BASE_COUNTS or "=" in c]
    frame[counts] = frame[counts].fillna(0).astype(np.float64)
    return frame


class Heritage(TabularDataset):
    """Heritage Health Prize member-years; `hospital` 1 = any day in hospital the next year; group age."""

    name = "heritage"
    description = (
        "Heritage Health Prize member-years (user-supplied: 'fairbench data import'); label hospital, group age"
    )
    protocols = ("random",)
    label = "hospital"
    folder = "heritage"
    continuous = BASE_COUNTS
    categorical = ("Sex", "AgeAtFirstClaim")
    derived_from = {"age": ("AgeAtFirstClaim",)}

    def column_names(self) -> list[str]:
        return ["MemberID", "Year", "age", *super().column_names()]

    def ensure_files(self, allow_download: bool = True) -> None:
        missing = [name for name in HEADERS if not (self.root / name).exists()]
        if missing:
            what = "the data" if len(missing) == len(HEADERS) else ", ".join(missing)
            raise FairbenchError(f"heritage: {what} missing in {self.root}; {HOW_TO_GET}")

    def read_frame(self, seed: int) -> pd.DataFrame:
        frame = member_years(self.root)
        # The claim-level count columns depend on the levels in the file.
        self.continuous = (*BASE_COUNTS, *sorted(c for c in frame.columns if "=" in c))
        return frame

    @classmethod
    def fetch(cls, data_dir: Path | None = None, files: tuple[RemoteFile, ...] | None = None) -> list[str]:
        raise FairbenchError(f"heritage is not downloaded automatically; {HOW_TO_GET}")

    @classmethod
    def status(cls, data_dir: Path | None = None, options: dict[str, Any] | None = None) -> DatasetStatus:
        return user_supplied_status(cls, data_dir, list(HEADERS), HOW_TO_GET)

    @classmethod
    def import_files(
        cls, src: Path, data_dir: Path | None = None, copy: bool = False, verify: bool = True
    ) -> list[str]:
        """Check the six CSVs in `src` (headers always; with `verify`, that they build the table)
        and link (or copy) them into `<data>/heritage/`."""
        src = Path(src).expanduser()
        if not src.is_dir():
            raise FairbenchError(f"heritage: {src} is not a folder; {HOW_TO_GET}")
        missing = [name for name in HEADERS if not (src / name).exists()]
        if missing:
            zipped = " (unzip HHP_release3.zip there first)" if (src / "HHP_release3.zip").exists() else ""
            raise FairbenchError(f"heritage: {src} lacks {', '.join(missing)}{zipped}; {HOW_TO_GET}")
        if verify:
            rows = len(member_years(src))
            lines = [f"heritage: {rows} member-years build from {src}"]
        else:
            for name in HEADERS:
                read_table(src / name, rows=0)
            lines = [f"heritage: the six files in {src} have the official headers"]
        items = [(src / name, name) for name in HEADERS]
        return lines + place(items, data_dir_from_env(data_dir) / cls.folder, copy, cls.name)
