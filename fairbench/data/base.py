"""The dataset contract and the task data that methods receive.

A dataset provides an attribute table (one row per sample), its split protocols and the model
inputs, and says how to get and check its own files (`fetch`, `status`, `import_files`: what
`fairbench data` runs for every registered dataset, plugins included). `build_task` turns
(dataset, protocol, target, sensitive, seed, bias) into a `TaskData`.

Targets, sensitive attributes and the bias attribute are boolean expressions over the attribute
table (two values, 0 and 1) or bare class columns (`target: digit`: k values, coded 0..k-1 in
the order of the column's sorted distinct values). An experiment may name several sensitive
attributes (a list); `TaskData.g` is the first one's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from fairbench.bounds import Bound, coerce
from fairbench.data.download import RemoteFile, download, ensure
from fairbench.errors import FairbenchError, did_you_mean
from fairbench.expressions import Expression

SPLITS = ("train", "val", "test")


def data_dir_from_env(explicit: str | Path | None = None) -> Path:
    """The data folder: an explicit --data-dir, else $FAIRBENCH_DATA, else ~/.cache/fairbench/data."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("FAIRBENCH_DATA"):
        return Path(os.environ["FAIRBENCH_DATA"]).expanduser()
    return Path.home() / ".cache" / "fairbench" / "data"


@dataclass(frozen=True)
class Option:
    """A dataset option settable from a suite's `options:`: its default's type, optional choices
    and numeric bounds (see fairbench.bounds)."""

    default: Any
    help: str
    bound: Bound | None = None
    choices: tuple[Any, ...] | None = None

    def coerce(self, value: Any, where: str) -> Any:
        """Return `value` as this option's type, or raise a one-line error."""
        return coerce(self.default, value, where, self.choices, self.bound)


@dataclass
class DatasetStatus:
    """What `fairbench data ls` shows for one dataset."""

    name: str
    kind: str
    state: str  # present | partial | missing | generated | broken
    location: str
    missing: list[str] = field(default_factory=list)
    action: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.state in ("present", "generated")


def user_supplied_status(
    dataset: type[Dataset], data_dir: Path | None, needed: list[str], action: str
) -> DatasetStatus:
    """Status of a dataset the user imports: which of the `needed` entries (a trailing '/' marks
    a folder) are in its data folder, and `action` (how to get them) when some are not."""
    root = data_dir_from_env(data_dir) / dataset.folder
    status = DatasetStatus(dataset.name, dataset.kind, "present", str(root))
    status.missing = [name for name in needed if not (root / name.rstrip("/")).exists()]
    if status.missing:
        status.state = "partial" if len(status.missing) < len(needed) else "missing"
        status.action = action
    return status


@dataclass
class Inputs:
    """Model inputs for every row: a feature matrix (tabular) or an image array (N, C, H, W uint8)."""

    x: np.ndarray
    feature_names: list[str] = field(default_factory=list)
    # The attribute each feature column was derived from, so metrics can drop sensitive ones.
    feature_sources: list[str] = field(default_factory=list)


@dataclass
class TaskData:
    """Everything a method sees for one experiment and seed. Arrays are indexed by row."""

    dataset: str
    kind: str
    protocol: str
    target: str
    sensitive: str
    x: np.ndarray
    y: np.ndarray
    g: np.ndarray
    splits: dict[str, np.ndarray]
    feature_names: list[str]
    feature_sources: list[str]
    sensitive_columns: frozenset[str]
    attributes: pd.DataFrame
    # Identifies the inputs and split independent of target and sensitive group, so an
    # artifact trained without labels (an encoder) is shared between tasks.
    input_key: str
    bias: np.ndarray | None = None
    # Per-row "bias-aligned" flag: the dataset's own, else the row's bias value is the one its
    # class is skewed to (the most frequent in its class on the train split). None without bias.
    aligned: np.ndarray | None = None
    # k, the number of target classes (2 for a boolean target).
    n_classes: int = 2
    # Every sensitive attribute (expression -> group per row), in suite order; the first is `g`.
    protected: dict[str, np.ndarray] = field(default_factory=dict)
    # The number of values of each sensitive attribute (2 for a boolean expression).
    group_counts: dict[str, int] = field(default_factory=dict)

    # The dataset's `derived_from`: attribute column -> the input columns it is derived from.
    derived_from: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def input_sources(self, expressions: Iterable[str]) -> frozenset[str]:
        """The columns `expressions` read, with the input columns those derive from: the feature
        sources to leave out where the attributes must not be seen."""
        read = frozenset().union(*(Expression(text).columns for text in expressions))
        return read.union(*(self.derived_from.get(column, ()) for column in read))

    def require_bias(self, method: str) -> np.ndarray:
        """The bias attribute per row, or a one-line error saying how to give one."""
        if self.bias is None:
            raise FairbenchError(
                f"method '{method}' needs a bias label per row and dataset '{self.dataset}' has no `bias` column: "
                f"give the experiment a `bias:` key (an expression or a class column, e.g. `bias: color`)"
            )
        return np.asarray(self.bias, dtype=np.int64)

    def __post_init__(self) -> None:
        if not self.protected:
            self.protected = {self.sensitive: self.g}
        if not self.group_counts:
            self.group_counts = {
                name: max(2, int(values.max(initial=0)) + 1) for name, values in self.protected.items()
            }

    @property
    def n_groups(self) -> int:
        """The number of values of the first sensitive attribute (`g`)."""
        return self.group_counts[self.sensitive]

    def part(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, g) of one split."""
        rows = self.splits[split]
        return self.x[rows], self.y[rows], self.g[rows]

    def group(self, expression: str) -> np.ndarray:
        """Evaluate another boolean expression (e.g. a second sensitive group) on every row."""
        return Expression(expression).evaluate(self.attributes).astype(np.int64)


@dataclass(frozen=True)
class TaskShape:
    """What a time estimate needs of a task before its data is read: about how many training
    rows it has, and one input's shape ((C, H, W) for images; None for tables, whose width the
    encoding decides)."""

    train_rows: int
    input: tuple[int, ...] | None = None

    @property
    def input_name(self) -> str:
        """`3x64x64`, as benchmark rates name workloads; "table" without a fixed shape."""
        return "x".join(str(side) for side in self.input) if self.input else "table"


class Dataset:
    """Base class of every dataset. Subclasses set the class attributes and implement
    `column_names`, `frame`, `split` and `inputs`."""

    name: ClassVar[str]
    description: ClassVar[str]
    kind: ClassVar[str] = "tabular"
    protocols: ClassVar[tuple[str, ...]]
    # The dataset's own label; splits are stratified by it, whatever the experiment's target.
    label: ClassVar[str]
    options: ClassVar[dict[str, Option]] = {}
    files: ClassVar[tuple[RemoteFile, ...]] = ()
    folder: ClassVar[str] = ""
    # Part of every job's id and of `input_key`: bump it when a fix changes the data, so
    # finished jobs rerun and cached artifacts rebuild.
    version: ClassVar[int] = 1
    # Attribute columns derived from input columns (German's sex from personal_status): a sensitive
    # attribute's sources are then left out wherever the attribute must be (consistency's
    # neighbours, GRAD-Auto's reconstruction target).
    derived_from: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, data_dir: Path | None = None, **options: Any) -> None:
        unknown = set(options) - set(self.options)
        if unknown:
            name = sorted(unknown)[0]
            raise FairbenchError(f"dataset '{self.name}' has no option '{name}'{did_you_mean(name, self.options)}")
        self.data_dir = data_dir_from_env(data_dir)
        given = {
            key: self.options[key].coerce(value, f"dataset '{self.name}' option {key}")
            for key, value in options.items()
        }
        self.settings = {key: opt.default for key, opt in self.options.items()} | given
        self._frames: dict[int, pd.DataFrame] = {}

    @property
    def root(self) -> Path:
        return self.data_dir / self.folder

    @classmethod
    def explicit_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """`options` checked and typed, without those that equal their default: the same data
        written two ways (`{}`, `{n: 4000}`) is one job."""
        typed = {key: value for key, value in cls(None, **options).settings.items() if key in options}
        return {key: value for key, value in typed.items() if value != cls.options[key].default}

    def shape(self, protocol: str) -> TaskShape | None:
        """The task's size under `protocol` without reading the data, for time estimates from
        benchmark rates (`fairbench run --dry-run`); None: unknown (no estimate from rates)."""
        return None

    def required_files(self) -> tuple[RemoteFile, ...]:
        """The files these options read (all of `files` unless an option says otherwise)."""
        return self.files

    def ensure_files(self, allow_download: bool = True) -> None:
        """Check the official files are present, downloading missing ones."""
        ensure(self.required_files(), self.data_dir, self.name, allow_download)

    @classmethod
    def fetch(cls, data_dir: Path | None = None, files: tuple[RemoteFile, ...] | None = None) -> list[str]:
        """Download the missing ones of `files` (default: all of `files`) into the data folder,
        checksummed and resumable; returns one report line per file."""
        root = data_dir_from_env(data_dir)
        if not cls.files:
            return [f"{cls.name}: generated on the fly, nothing to fetch"]
        lines = []
        for file in cls.files if files is None else files:
            target = root / file.path
            if target.exists():
                lines.append(f"{cls.name}: {target} present")
                continue
            lines.append(f"{cls.name}: {target} downloaded{cls.download_file(file, root)}")
        return lines

    @classmethod
    def download_file(cls, file: RemoteFile, root: Path) -> str:
        """Download one file under `root` and check it; returns what was checked, e.g. " (sha256 ok)"."""
        download(file, root, cls.name)
        return " (sha256 ok)" if file.sha256 else ""

    @classmethod
    def status(cls, data_dir: Path | None = None, options: dict[str, Any] | None = None) -> DatasetStatus:
        """Which files the dataset (with `options`) needs are present, and what to do about the
        missing ones; reads no data and downloads nothing."""
        root = data_dir_from_env(data_dir)
        try:
            needed = cls(root, **(options or {})).required_files()
        except FairbenchError as error:
            return DatasetStatus(cls.name, cls.kind, "broken", str(root), action=str(error))
        if not cls.files:
            return DatasetStatus(cls.name, cls.kind, "generated", "(generated, no files)")
        status = DatasetStatus(cls.name, cls.kind, "present", str(root / cls.folder))
        status.missing = [file.path for file in needed if not (root / file.path).exists()]
        if status.missing:
            status.state = "partial" if len(status.missing) < len(needed) else "missing"
            folders = {str(Path(path).parent) for path in status.missing}
            if len(status.missing) > 2 and len(folders) == 1:
                status.missing = [f"{folders.pop()}/ ({len(status.missing)} files)"]
            status.action = f"fairbench data fetch {cls.name}"
        return status

    @classmethod
    def import_files(
        cls, src: Path, data_dir: Path | None = None, copy: bool = False, verify: bool = True
    ) -> list[str]:
        """Check a user's own copy at `src` and link (or copy) it into the data folder; for
        datasets that cannot be downloaded."""
        raise FairbenchError(
            f"'data import' is for datasets that cannot be downloaded; use 'fairbench data fetch {cls.name}'"
        )

    def column_names(self) -> list[str]:
        """Attribute columns usable in targets and sensitive expressions (no data read)."""
        raise NotImplementedError

    def read_frame(self, seed: int) -> pd.DataFrame:
        """Read the attribute table; `seed` matters only for generated data."""
        raise NotImplementedError

    def frame(self, seed: int = 0) -> pd.DataFrame:
        if seed not in self._frames:
            self.ensure_files()
            self._frames[seed] = self.read_frame(seed)
        return self._frames[seed]

    def split(self, frame: pd.DataFrame, protocol: str, seed: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def inputs(self, frame: pd.DataFrame, exclude: frozenset[str], train: np.ndarray) -> Inputs:
        """Model inputs for every row, without the columns in `exclude` (the target's)."""
        raise NotImplementedError

    def check_protocol(self, protocol: str | None) -> str:
        protocol = protocol or self.protocols[0]
        if protocol not in self.protocols:
            raise FairbenchError(
                f"dataset '{self.name}' has no protocol '{protocol}'{did_you_mean(protocol, self.protocols)}"
            )
        return protocol


def open_dataset(name: str, data_dir: Path | None = None, options: dict[str, Any] | None = None) -> Dataset:
    from fairbench.registry import DATASETS

    return DATASETS.get(name)(data_dir, **(options or {}))


def sensitive_attributes(sensitive: str | list[str] | tuple[str, ...]) -> list[str]:
    """An experiment's sensitive attributes: one expression, a list of them, or a job's JSON list."""
    if isinstance(sensitive, (list, tuple)):
        return [str(item) for item in sensitive]
    text = str(sensitive)
    return [str(item) for item in json.loads(text)] if text.startswith("[") else [text]


def sensitive_text(sensitive: str | list[str] | tuple[str, ...]) -> str:
    """The one text a job stores for its sensitive attributes: the expression, or a JSON list."""
    names = sensitive_attributes(sensitive)
    return names[0] if len(names) == 1 else json.dumps(names)


def encode(frame: pd.DataFrame, text: str, role: str) -> tuple[np.ndarray, int]:
    """A target / sensitive / bias attribute per row and its number of values: 0/1 for a boolean
    expression; for a bare column that is not 0/1, each value's index among the column's sorted
    distinct values."""
    expression = Expression(text)
    expression.validate(frame.columns, f"{role}: ")
    name = expression.column
    if name is not None:
        column = frame[name]
        if not set(pd.unique(column.dropna())) <= {0, 1}:
            if column.isna().any() or pd.api.types.is_float_dtype(column):
                raise FairbenchError(
                    f"{role}: column '{name}' is neither binary nor a class column (it has "
                    f"{'missing' if column.isna().any() else 'float'} values); compare it instead, "
                    f"e.g. '{name} > 25'"
                )
            classes, codes = np.unique(column.to_numpy(), return_inverse=True)
            return codes.astype(np.int64), len(classes)
    return expression.evaluate(frame).astype(np.int64), 2


@dataclass
class TaskLabels:
    """What `check_task` derives from the attribute table alone."""

    protocol: str
    frame: pd.DataFrame
    y: np.ndarray
    n_classes: int
    protected: dict[str, np.ndarray]
    group_counts: dict[str, int]
    splits: dict[str, np.ndarray]
    bias: np.ndarray | None


def check_task(
    dataset: Dataset,
    protocol: str | None,
    target: str,
    sensitive: str | list[str],
    seed: int,
    check: tuple[str, ...] = ("train", "test"),
    bias: str | None = None,
) -> TaskLabels:
    """Evaluate target, sensitive attributes and bias and split by protocol, checking that each
    split in `check` ("all" = every row) has rows and sees at least two values of every sensitive
    attribute; needs only the attribute table."""
    protocol = dataset.check_protocol(protocol)
    frame = dataset.frame(seed)
    where = f"{dataset.name} "
    y, n_classes = encode(frame, target, where + "target")
    protected, counts = {}, {}
    for name in sensitive_attributes(sensitive):
        protected[name], counts[name] = encode(frame, name, where + "sensitive")
    if bias is not None:
        bias_values = encode(frame, bias, where + "bias")[0]
    else:
        bias_values = frame["bias"].to_numpy().astype(np.int64) if "bias" in frame.columns else None
    splits = dataset.split(frame, protocol, seed)
    for split in check:
        rows = np.arange(len(frame)) if split == "all" else splits[split]
        if len(rows) == 0:
            # a partial download (a subset of the files) can leave whole splits empty
            raise FairbenchError(
                f"{dataset.name}: the {split} split of protocol '{protocol}' is empty (0 of the {len(frame)} "
                f"rows here); the data folder holds part of the dataset: use another split or get the rest"
            )
        for name, g in protected.items():
            sizes = np.bincount(g[rows], minlength=2)
            if np.count_nonzero(sizes) < 2:
                side = "an empty group" if counts[name] == 2 and sizes[1] == 0 else "one value only"
                raise FairbenchError(
                    f"{dataset.name}: sensitive group '{name}' selects {side} on the {split} split "
                    f"({sizes[1] if counts[name] == 2 else len(rows)} of {len(rows)} rows); choose an expression "
                    f"that splits the data"
                )
    return TaskLabels(protocol, frame, y, n_classes, protected, counts, splits, bias_values)


def aligned_flags(y: np.ndarray, bias: np.ndarray, train: np.ndarray) -> np.ndarray:
    """True where a row's bias value is the one its class is skewed to: the most frequent bias
    value of that class on the train split (ties: the smallest value)."""
    skewed = {}
    for label in np.unique(y):
        values = bias[train][y[train] == label]
        skewed[label] = np.bincount(values).argmax() if len(values) else -1
    return bias == np.vectorize(skewed.get, otypes=[np.int64])(y)


def build_task(
    dataset: Dataset,
    protocol: str | None,
    target: str,
    sensitive: str | list[str],
    seed: int,
    bias: str | None = None,
) -> TaskData:
    """Assemble the task: evaluate target, sensitive attributes and bias, split by protocol, build inputs."""
    labels = check_task(dataset, protocol, target, sensitive, seed, bias=bias)
    frame, splits = labels.frame, labels.splits
    names = sensitive_attributes(sensitive)
    columns = frozenset().union(*(Expression(name).columns for name in names))
    inputs = dataset.inputs(frame, Expression(target).columns, splits["train"])
    input_key = hashlib.sha1(
        json.dumps(
            [dataset.name, dataset.version, labels.protocol, seed, dataset.settings, inputs.feature_names],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:16]
    aligned = None
    if "aligned" in frame.columns and bias is None:
        aligned = frame["aligned"].to_numpy().astype(bool)
    elif labels.bias is not None:
        aligned = aligned_flags(labels.y, labels.bias, splits["train"])
    return TaskData(
        dataset=dataset.name,
        kind=dataset.kind,
        protocol=labels.protocol,
        target=target,
        sensitive=names[0],
        x=inputs.x,
        y=labels.y,
        g=labels.protected[names[0]],
        splits=splits,
        feature_names=inputs.feature_names,
        feature_sources=inputs.feature_sources,
        sensitive_columns=frozenset(columns),
        attributes=frame,
        input_key=input_key,
        bias=labels.bias,
        aligned=aligned,
        n_classes=labels.n_classes,
        protected=labels.protected,
        group_counts=labels.group_counts,
        derived_from=dict(dataset.derived_from),
    )
