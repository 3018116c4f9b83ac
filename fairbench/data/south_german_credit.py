"""South German Credit (Groemping 2019, UCI 573): the corrected German credit data."""

from __future__ import annotations

from typing import ClassVar

import pandas as pd

from fairbench.data.download import RemoteFile
from fairbench.data.tabular import TabularDataset

_ZIP = "https://archive.ics.uci.edu/static/public/573/south+german+credit.zip"


class SouthGermanCredit(TabularDataset):
    """South German Credit, German column names; `kredit` 1 = good. `gastarb` 1 = foreign worker."""

    name = "south_german_credit"
    description = "South German Credit (1000 loans, 20 attributes); label kredit, groups alter/gastarb"
    protocols = ("random",)
    label = "kredit"
    folder = "south_german_credit"
    files = (
        RemoteFile(
            "south_german_credit/SouthGermanCredit.asc",
            _ZIP,
            "921fdae321892628147363b74d675d0f9b2fc940e8989064a771b693622313b6",
            member="SouthGermanCredit.asc",
        ),
    )
    continuous = ("laufzeit", "hoehe", "alter")
    categorical = (
        "laufkont",
        "moral",
        "verw",
        "sparkont",
        "beszeit",
        "rate",
        "famges",
        "buerge",
        "wohnzeit",
        "verm",
        "weitkred",
        "wohn",
        "bishkred",
        "beruf",
        "pers",
        "telef",
        "gastarb",
    )
    # The DVGE paper: continuous attributes divided by their maximum, codes mapped into [0, 1].
    encoding: ClassVar[str] = "unit"

    def read_frame(self, seed: int) -> pd.DataFrame:
        return pd.read_csv(self.root / "SouthGermanCredit.asc", sep=r"\s+")
