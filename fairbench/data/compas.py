"""ProPublica's COMPAS two-year recidivism data ("Machine Bias", Angwin et al. 2016).

The file is `compas-scores-two-years.csv` from github propublica/compas-analysis, as published
(7214 rows). The choices made here:

- Rows: ProPublica's own filters (`Compas Analysis.ipynb` in that repository): `days_b_screening_arrest` within
  +-30 days (a missing value fails it), `is_recid != -1`, `c_charge_degree != 'O'` and a
  `score_text` present; 6172 rows, as AIF360 and FFB keep.
- Target `two_year_recid` (1 = rearrested within two years; 45.5% of the kept rows).
- Groups: the `race` and `sex` columns, usable in expressions (`race == 'African-American'`,
  `sex == 'Male'`); both are also model inputs, as the sensitive columns are in every tabular
  dataset here (a method that must not see them leaves them out itself).
- Inputs: the defendant's record as AIF360's CompasDataset takes it, less `c_charge_desc`: age
  and the juvenile felony / misdemeanour / other counts and the priors count standardised; sex,
  age category, race and charge degree one-hot. `c_charge_desc` (over 400 free-text charge
  descriptions, most held by a handful of rows) is left out: one-hot it would mostly memorise.
  COMPAS's own outputs (`decile_score`, `score_text`, the violence scores) are never inputs:
  they are the tool under audit, and the task is to predict recidivism without it.
- Protocol `random`: a seeded 60/20/20 split stratified by `two_year_recid`.

The header names `decile_score` and `priors_count` twice; pandas reads the second copies as
`decile_score.1` and `priors_count.1` (equal to the first on every row).
"""

from __future__ import annotations

import pandas as pd

from fairbench.data.download import RemoteFile
from fairbench.data.tabular import TabularDataset

_COMMIT = "bafff5da3f2e45eca6c2d5055faad269defd135a"  # the repository's last commit (2017), which the checksum is of
_URL = f"https://raw.githubusercontent.com/propublica/compas-analysis/{_COMMIT}/compas-scores-two-years.csv"


def propublica_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows ProPublica's analysis keeps (see the module docstring)."""
    screened = frame["days_b_screening_arrest"].between(-30, 30)  # NaN is outside
    keep = screened & (frame["is_recid"] != -1) & (frame["c_charge_degree"] != "O")
    keep &= frame["score_text"].notna() & (frame["score_text"] != "N/A")
    return frame[keep].reset_index(drop=True)


class COMPAS(TabularDataset):
    """ProPublica COMPAS with ProPublica's row filters; `two_year_recid` 1 = rearrested; groups race, sex."""

    name = "compas"
    description = (
        "ProPublica COMPAS (6172 defendants after ProPublica's filters); label two_year_recid, groups race/sex"
    )
    protocols = ("random",)
    label = "two_year_recid"
    folder = "compas"
    files = (
        RemoteFile(
            "compas/compas-scores-two-years.csv",
            _URL,
            "c451db85908b2f7fef1d83203bedf6b71ecda0d5af468d82ae62178f91d0cc7d",
        ),
    )
    continuous = ("age", "juv_fel_count", "juv_misd_count", "juv_other_count", "priors_count")
    categorical = ("sex", "age_cat", "race", "c_charge_degree")

    def read_frame(self, seed: int) -> pd.DataFrame:
        frame = pd.read_csv(self.root / "compas-scores-two-years.csv")
        return propublica_rows(frame)[self.column_names()]
