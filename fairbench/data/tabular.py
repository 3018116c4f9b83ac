"""Shared encoding for tabular datasets: one-hot or code scaling, and numeric scaling."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from fairbench.data.base import Dataset, Inputs
from fairbench.data.splits import stratified_split


class TabularDataset(Dataset):
    """A table with declared categorical and continuous columns.

    `encoding = "onehot"`: categoricals one-hot, continuous standardised with train statistics.
    `encoding = "unit"`: every column scaled into [0, 1] by its codes or its maximum (the DVGE
    paper's normalisation of South German Credit), one feature per attribute.
    """

    categorical: ClassVar[tuple[str, ...]] = ()
    continuous: ClassVar[tuple[str, ...]] = ()
    encoding: ClassVar[str] = "onehot"
    split_fractions: ClassVar[dict[str, float]] = {"train": 0.6, "val": 0.2, "test": 0.2}

    def column_names(self) -> list[str]:
        return [*self.continuous, *self.categorical, *self.derived_columns(), self.label]

    def derived_columns(self) -> list[str]:
        """Extra columns a dataset derives from the file (e.g. sex from personal status)."""
        return []

    def split(self, frame: pd.DataFrame, protocol: str, seed: int) -> dict[str, np.ndarray]:
        """`random`: seeded split stratified by the dataset's label."""
        return stratified_split(frame[self.label].to_numpy(), self.split_fractions, seed)

    def inputs(self, frame: pd.DataFrame, exclude: frozenset[str], train: np.ndarray) -> Inputs:
        columns, names, sources = [], [], []
        for column in self.continuous:
            if column in exclude:
                continue
            values = frame[column].to_numpy(dtype=np.float64)
            if self.encoding == "unit":
                values = values / np.abs(values).max()
            else:
                mean, std = values[train].mean(), values[train].std()
                values = (values - mean) / (std if std > 0 else 1.0)
            columns.append(values)
            names.append(column)
            sources.append(column)
        for column in self.categorical:
            if column in exclude:
                continue
            if self.encoding == "unit":
                codes = frame[column].to_numpy(dtype=np.float64)
                low, high = codes.min(), codes.max()
                columns.append((codes - low) / (high - low if high > low else 1.0))
                names.append(column)
                sources.append(column)
            else:
                for level in sorted(pd.unique(frame[column]), key=str):
                    columns.append((frame[column] == level).to_numpy(dtype=np.float64))
                    names.append(f"{column}={level}")
                    sources.append(column)
        x = np.stack(columns, axis=1).astype(np.float32)
        return Inputs(x=x, feature_names=names, feature_sources=sources)
