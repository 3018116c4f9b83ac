"""UCI Diabetes 130-US hospitals 1999-2008 (UCI 296; Strack et al. 2014): one row per encounter.

GRAD (Raff & Sylvester 2018, Table 2) takes this dataset from Edwards & Storkey (2016) and
protects race and gender; neither paper gives its preprocessing. The choices made here:

- Target `readmit` = 1 when `readmitted` is `<30` or `>30` (any readmission), 0 for `NO`
  (46.1% positive). GRAD's Table 2 accuracies (0.56-0.63) fit this binary target, whose
  majority class is 53.9%; the 30-day target (`readmitted == '<30'`, 11.2% positive) would
  give 0.888 by always answering no. The raw `readmitted` column stays usable in
  expressions (it is never a model input).
- Groups: `race == 'Caucasian'` (76099 rows against every other value, missing `?` included)
  and `gender == 'Male'`. The 3 rows with gender `Unknown/Invalid` are dropped (101763 rows).
- Inputs: the 8 counts (time in hospital, lab procedures, procedures, medications,
  outpatient/emergency/inpatient visits, diagnoses) standardised; every other column one-hot
  with `?` (missing) as its own level, except `encounter_id`, `patient_nbr` (identifiers) and
  `weight` (97% missing). The ICD-9 codes `diag_1..3` are replaced by the nine disease groups
  of Strack et al. (2014, Table 2): circulatory, respiratory, digestive, diabetes, injury,
  musculoskeletal, genitourinary, neoplasms, other. The admission/discharge id columns are
  categorical codes (their meanings are in IDs_mapping.csv).
- Protocol `random`: a seeded 60/20/20 split stratified by `readmit`. Patients with several
  encounters (71518 patients) can fall on both sides of the split; GRAD does not say how it split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairbench.data.download import RemoteFile
from fairbench.data.tabular import TabularDataset
from fairbench.errors import FairbenchError

_ZIP = "https://archive.ics.uci.edu/static/public/296/diabetes+130-us+hospitals+for+years+1999-2008.zip"
_MEDICATIONS = (
    "metformin",
    "repaglinide",
    "nateglinide",
    "chlorpropamide",
    "glimepiride",
    "acetohexamide",
    "glipizide",
    "glyburide",
    "tolbutamide",
    "pioglitazone",
    "rosiglitazone",
    "acarbose",
    "miglitol",
    "troglitazone",
    "tolazamide",
    "examide",
    "citoglipton",
    "insulin",
    "glyburide-metformin",
    "glipizide-metformin",
    "glimepiride-pioglitazone",
    "metformin-rosiglitazone",
    "metformin-pioglitazone",
)
# Strack et al. (2014), Table 2: ICD-9 ranges of the disease groups; diabetes is 250.xx.
_ICD9_GROUPS = (
    ("circulatory", ((390, 460), (785, 786))),
    ("respiratory", ((460, 520), (786, 787))),
    ("digestive", ((520, 580), (787, 788))),
    ("injury", ((800, 1000),)),
    ("musculoskeletal", ((710, 740),)),
    ("genitourinary", ((580, 630), (788, 789))),
    ("neoplasms", ((140, 240),)),
)


def icd9_group(code: str) -> str:
    """The Strack et al. disease group of one ICD-9 code ('?' stays '?'; V and E codes are 'other')."""
    if code == "?":
        return "?"
    if code[:1] in ("V", "E"):
        return "other"
    number = float(code)
    if int(number) == 250:
        return "diabetes"
    for group, ranges in _ICD9_GROUPS:
        if any(low <= number < high for low, high in ranges):
            return group
    return "other"


def identifier(column: str) -> str:
    """Column names usable in expressions: 'glyburide-metformin' -> 'glyburide_metformin'."""
    return column.replace("-", "_")


def _parses(convert, value: str) -> bool:
    try:
        convert(value)
    except ValueError:
        return False
    return True


class Diabetes(TabularDataset):
    """UCI Diabetes 130-US hospitals; `readmit` 1 = readmitted (<30 or >30 days); groups race, gender."""

    name = "diabetes"
    description = "UCI Diabetes 130-US hospitals (101763 encounters); label readmit, groups race/gender"
    protocols = ("random",)
    label = "readmit"
    folder = "uci_diabetes"
    files = (
        RemoteFile(
            "uci_diabetes/diabetic_data.csv",
            _ZIP,
            "0689e7ec031237dc63031b938805c48377748761a3b26acab621567afa24df97",
            member="diabetic_data.csv",
        ),
    )
    continuous = (
        "time_in_hospital",
        "num_lab_procedures",
        "num_procedures",
        "num_medications",
        "number_outpatient",
        "number_emergency",
        "number_inpatient",
        "number_diagnoses",
    )
    categorical = (
        "race",
        "gender",
        "age",
        "admission_type_id",
        "discharge_disposition_id",
        "admission_source_id",
        "payer_code",
        "medical_specialty",
        "diag_1",
        "diag_2",
        "diag_3",
        "max_glu_serum",
        "A1Cresult",
        *(identifier(m) for m in _MEDICATIONS),
        "change",
        "diabetesMed",
    )

    def derived_columns(self) -> list[str]:
        return ["readmitted"]

    def read_frame(self, seed: int) -> pd.DataFrame:
        # keep_default_na=False: 'None' is a level of max_glu_serum and A1Cresult, not a missing value.
        path = self.root / "diabetic_data.csv"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame["line"] = np.arange(len(frame)) + 2  # file line of each row, for error messages
        frame = frame[frame["gender"] != "Unknown/Invalid"].reset_index(drop=True)
        frame = frame.rename(columns=identifier)
        for column in ("diag_1", "diag_2", "diag_3", *self.continuous):
            convert, kind = (icd9_group, "an ICD-9 code") if column.startswith("diag_") else (int, "a whole number")
            try:
                frame[column] = frame[column].map(convert)
            except ValueError:
                bad = next(i for i, value in enumerate(frame[column]) if not _parses(convert, value))
                raise FairbenchError(
                    f"diabetes: {path} line {frame['line'][bad]}: {column} {frame[column][bad]!r} is not {kind}; "
                    f"replace the file with the official one"
                ) from None
        frame["readmit"] = (frame["readmitted"] != "NO").astype(int)
        return frame[self.column_names()]
