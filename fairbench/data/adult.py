"""UCI Adult (census income): adult.data for training, adult.test for testing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairbench.data.download import RemoteFile
from fairbench.data.splits import carve_validation

_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
]

from fairbench.data.tabular import TabularDataset  # noqa: E402


class Adult(TabularDataset):
    """UCI Adult; rows with a missing value ('?') dropped; `income` 1 = >50K.

    Protocol `official`: test = adult.test; a seeded stratified 20% of adult.data is validation.
    """

    name = "adult"
    description = "UCI Adult census income (45222 complete rows); label income, groups sex/race/age"
    protocols = ("official",)
    label = "income"
    folder = "uci_adult"
    files = (
        RemoteFile(
            "uci_adult/adult.data",
            _URL + "adult.data",
            "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
        ),
        RemoteFile(
            "uci_adult/adult.test",
            _URL + "adult.test",
            "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
        ),
    )
    continuous = ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week")
    categorical = (
        "workclass",
        "education",
        "marital_status",
        "occupation",
        "relationship",
        "race",
        "sex",
        "native_country",
    )

    def derived_columns(self) -> list[str]:
        return ["is_test"]

    def read_frame(self, seed: int) -> pd.DataFrame:
        parts = []
        for name, skip in (("adult.data", 0), ("adult.test", 1)):  # adult.test opens with a junk line
            part = pd.read_csv(
                self.root / name,
                header=None,
                names=_COLUMNS,
                skiprows=skip,
                skipinitialspace=True,
                na_values="?",
            )
            part["is_test"] = int(name == "adult.test")
            parts.append(part.dropna())
        frame = pd.concat(parts, ignore_index=True)
        frame["income"] = frame["income"].str.rstrip(".").eq(">50K").astype(int)
        return frame

    def split(self, frame: pd.DataFrame, protocol: str, seed: int) -> dict[str, np.ndarray]:
        is_test = frame["is_test"].to_numpy() == 1
        train, val = carve_validation(np.flatnonzero(~is_test), frame[self.label].to_numpy(), 0.2, seed)
        return {"train": train, "val": val, "test": np.flatnonzero(is_test)}
