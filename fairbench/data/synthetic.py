"""A generated tabular dataset with a controllable group bias; needs no download."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairbench.bounds import NON_NEGATIVE, at_least
from fairbench.data.base import Option
from fairbench.data.tabular import TabularDataset


class Synthetic(TabularDataset):
    """Binary group `s`, a feature `proxy` correlated with it, features x0.., label `y`.

    y = 1[w.x + bias * (s - 1/2) + noise > 0]: `bias` sets how much the base rate of y differs
    between the groups; `proxy` = s + N(0, proxy_noise^2) leaks the group into the inputs.
    `grade` cuts the same logit at -1/2 and 1/2 into three classes, a k = 3 target.
    """

    name = "synthetic"
    description = "generated tabular data with a group-dependent base rate (no download)"
    protocols = ("random",)
    label = "y"
    options = {
        "n": Option(4000, "number of rows", at_least(10)),
        "n_features": Option(5, "number of features x0..", at_least(1)),
        "bias": Option(1.0, "shift of the label logit between the groups (0 = no bias)"),
        "proxy_noise": Option(0.5, "noise on the proxy feature (smaller = stronger proxy)", NON_NEGATIVE),
    }

    @property
    def continuous(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*[f"x{i}" for i in range(self.settings["n_features"])], "proxy")

    categorical = ("s",)

    def derived_columns(self) -> list[str]:
        return ["grade"]

    def ensure_files(self, allow_download: bool = True) -> None:
        return None

    def read_frame(self, seed: int) -> pd.DataFrame:
        n, k = int(self.settings["n"]), int(self.settings["n_features"])
        rng = np.random.default_rng(seed)
        s = rng.integers(0, 2, n)
        x = rng.normal(size=(n, k))
        weights = rng.normal(size=k) / np.sqrt(k)
        logit = x @ weights + self.settings["bias"] * (s - 0.5) + rng.normal(scale=0.5, size=n)
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(k)])
        frame["proxy"] = s + rng.normal(scale=self.settings["proxy_noise"], size=n)
        frame["s"] = s
        frame["y"] = (logit > 0).astype(int)
        frame["grade"] = np.digitize(logit, [-0.5, 0.5])
        return frame
