"""Statlog German Credit (UCI 144): A-coded attributes, label 1 = good, 2 = bad."""

from __future__ import annotations

import pandas as pd

from fairbench.data.download import RemoteFile
from fairbench.data.tabular import TabularDataset

_COLUMNS = [
    "status",
    "duration",
    "credit_history",
    "purpose",
    "amount",
    "savings",
    "employment",
    "installment_rate",
    "personal_status",
    "other_debtors",
    "residence",
    "property",
    "age",
    "other_plans",
    "housing",
    "existing_credits",
    "job",
    "people_liable",
    "telephone",
    "foreign_worker",
    "credit",
]
# Attribute 9 mixes sex and marital status; A92 and A95 are the female codes.
_FEMALE = {"A92", "A95"}


class StatlogGerman(TabularDataset):
    """Statlog German Credit with UCI attribute names; `credit` 1 = good; derived `sex`."""

    name = "german"
    description = "Statlog German Credit (1000 loans, 20 attributes); label credit, groups age/sex"
    protocols = ("random",)
    label = "credit"
    folder = "statlog_german"
    files = (
        RemoteFile(
            "statlog_german/german.data",
            "https://archive.ics.uci.edu/ml/machine-learning-databases/statlog/german/german.data",
            "b21f3d81db8071257d5ff1deaeba1fd4303b62712e6fcc9715c7a86202cb5871",
        ),
    )
    continuous = ("duration", "amount", "installment_rate", "residence", "age", "existing_credits", "people_liable")
    categorical = (
        "status",
        "credit_history",
        "purpose",
        "savings",
        "employment",
        "personal_status",
        "other_debtors",
        "property",
        "other_plans",
        "housing",
        "job",
        "telephone",
        "foreign_worker",
    )

    derived_from = {"sex": ("personal_status",)}
    # 2: with `sex` protected, personal_status is left out of consistency's neighbour features
    version = 2

    def derived_columns(self) -> list[str]:
        return ["sex"]

    def read_frame(self, seed: int) -> pd.DataFrame:
        frame = pd.read_csv(self.root / "german.data", sep=" ", header=None, names=_COLUMNS)
        frame["credit"] = (frame["credit"] == 1).astype(int)
        frame["sex"] = frame["personal_status"].map(lambda code: "female" if code in _FEMALE else "male")
        return frame
