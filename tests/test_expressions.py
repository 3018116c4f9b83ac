"""Sensitive-group and target expressions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fairbench.errors import FairbenchError
from fairbench.expressions import Expression

FRAME = pd.DataFrame({"Male": [1, 1, 0, 0], "Young": [1, 0, 1, 0], "alter": [20, 30, 40, 50], "sex": list("mfmf")})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Male", [1, 1, 0, 0]),
        ("not (not Male and Young)", [1, 1, 0, 1]),  # everyone but young women (DVGE experiment 3)
        ("alter > 25 and Male == 1", [0, 1, 0, 0]),
        ("25 < alter <= 40", [0, 1, 1, 0]),
        ("sex == 'f' or Young", [1, 1, 1, 1]),
    ],
)
def test_evaluate(text: str, expected: list[int]) -> None:
    assert Expression(text).evaluate(FRAME).astype(int).tolist() == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alter >", "cannot parse"),
        ("__import__('os')", "only column names"),
        ("Male.real", "only column names"),
        ("alter", "not binary"),
        ("Mael", "unknown column 'Mael'"),
        ("alter in [1]", "use ==, !="),
    ],
)
def test_rejects(text: str, message: str) -> None:
    with pytest.raises(FairbenchError, match=message):
        Expression(text).evaluate(FRAME)


def test_columns_are_known_without_data() -> None:
    assert Expression("alter > 25 and gastarb == 1").columns == {"alter", "gastarb"}
    assert np.asarray(Expression("not Male").evaluate(FRAME)).dtype == bool
