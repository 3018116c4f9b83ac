"""Colored MNIST, the LfF protocol (Nam et al. 2020) as GBA uses it, from the official IDX files.

Built as LfF's `make_dataset.py` builds it (alinlab/LfF): digit images are coloured
multiplicatively, x = uint8(clip(mu_c + n, 0, 1) * grey) (the product truncated), with mu_c
colour class c's mean colour from LfF's `data/resource/colors.th` (ten RGB triples, not chosen to
be far apart: classes 0 and 9 are both reds) and n ~ N(0, sigma^2 I_3) one draw per image (sigma
by severity 1..5: 0.05, 0.02, 0.01, 0.005, 0.002). In the training pool a share 1 - skew of
every digit gets its own colour (c = digit, "bias-aligned"); the rest are spread evenly over the
other nine colours, with LfF's cumulative milestones (`make_attr_labels`). LfF gives the colours
in file order; here which image gets which colour is drawn from the seed. LfF's test set is the
t10k images coloured with aligned ratio 0.1 (`test_aligned`: colours uniform); LfF reports the
mean accuracy over the 100 (digit, colour) cells (`acc_unbiased`) on it. LfF trains on all
60,000 training images; here a seeded `val_fraction` of them is held out for validation.

The scaling of LfF's inputs belongs to its MLP (arch `mlp3`, fairbench/nets/backbones.py): it
divides the [0, 1] tensor that torchvision's ToTensor gives by 255 once more.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairbench.bounds import SHARE, between
from fairbench.data.base import Dataset, DatasetStatus, Inputs, Option, TaskShape
from fairbench.data.download import RemoteFile, download, ensure, md5_of, set_aside, sha256_of
from fairbench.data.splits import carve_validation, stratified_split
from fairbench.errors import FairbenchError

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
# sha256 of the copies in the project's shared data (data/README.md); `fetch` also accepts
# the md5 torchvision lists for these files.
SHA256 = {
    TEST_IMAGES: "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
    TEST_LABELS: "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
}
MD5 = {
    TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
    TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
    TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c",
}
SIGMA = (0.05, 0.02, 0.01, 0.005, 0.002)
# LfF's mean colours (data/resource/colors.th, a float32 tensor of shape (10, 3, 1, 1)), RGB in
# [0, 1]; colour class c is the one digit c is aligned with.
COLORS = np.array(
    [
        [0.98368233, 0.31251901, 0.16857535],
        [0.99052966, 0.91560525, 0.35151219],
        [0.67296398, 0.46107048, 0.57980818],
        [0.78325194, 0.83155590, 0.60132939],
        [0.08801579, 0.77796334, 0.98180777],
        [0.32139337, 0.96105456, 0.44644988],
        [0.02461588, 0.23565048, 0.75866628],
        [0.55524695, 0.10158014, 0.76176316],
        [0.20772320, 0.39294851, 0.01870239],
        [0.83365762, 0.20240927, 0.26694310],
    ],
    dtype=np.float32,
).astype(np.float64)


def read_idx(path: Path) -> np.ndarray:
    """Read a gzip-compressed IDX file (magic, dimensions, big-endian) into a uint8 array."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise FairbenchError(f"colored_mnist: {path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise FairbenchError(f"colored_mnist: {path} is truncated ({body.size} of {int(np.prod(dims))} bytes)")
    return body.reshape(dims)


def assign_colors(digits: np.ndarray, aligned_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Colour class per image: per digit, round(aligned_ratio * n) get colour == digit, the rest
    are cut evenly (LfF's cumulative milestones) over the other nine colours; order is random."""
    colors = np.empty_like(digits, dtype=np.int64)
    classes = 10
    for digit in range(classes):
        rows = rng.permutation(np.flatnonzero(digits == digit))
        ratios = np.full(classes, (1 - aligned_ratio) / (classes - 1))
        ratios[digit] = aligned_ratio
        # LfF's order of colours: 0..9, the aligned one in its own place
        milestones = np.round(len(rows) * np.cumsum(ratios)).astype(int)
        milestones[-1] = len(rows)
        colors[rows] = np.searchsorted(milestones, np.arange(len(rows)), side="right")
    return colors


class ColoredMNIST(Dataset):
    """Colored MNIST (LfF/GBA): 10 digits, colour classes correlated with them in training.

    Frame columns: `digit` (0-9), `color` (colour class 0-9), `bias` (= color), `aligned`
    (color == digit), `is_test`, `source_index` (row in its IDX file) and the drawn colour
    `red`, `green`, `blue`. Protocol `lff`: train = MNIST train (val: a seeded 10% of it),
    test = t10k. With option `source: t10k` only the two t10k files are used and split seeded
    70/30 into a training pool and a test part (for machines without the training files).
    """

    name = "colored_mnist"
    # 2: LfF's colours (colors.th) instead of ten hand-picked ones
    version = 2
    description = "Colored MNIST (LfF protocol): digits with a colour bias, skew and noise as options"
    kind = "image"
    protocols = ("lff",)
    label = "digit"
    folder = "mnist"
    files = tuple(
        RemoteFile(f"mnist/{name}", MIRROR + name, SHA256.get(name))
        for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
    )
    options = {
        "skew": Option(0.01, "share of bias-conflicting training images (LfF: 0.005-0.05)", between(0, 1)),
        "severity": Option(4, "colour noise level 1..5 (sigma 0.05, 0.02, 0.01, 0.005, 0.002)", between(1, 5)),
        "test_aligned": Option(
            0.1, "aligned share in the test split (0.1 = colours independent of digit)", between(0, 1)
        ),
        "val_fraction": Option(0.1, "share of the training pool used for validation", SHARE),
        "source": Option(
            "full", "'full' (train + t10k files) or 't10k' (only the test files, split 70/30)", choices=("full", "t10k")
        ),
    }

    def required_files(self) -> tuple[RemoteFile, ...]:
        if self.settings["source"] == "t10k":
            return tuple(f for f in self.files if "t10k" in f.path)
        return self.files

    def ensure_files(self, allow_download: bool = True) -> None:
        needed = self.required_files()
        try:
            if allow_download and any(not (self.data_dir / f.path).exists() for f in needed):
                self.fetch(self.data_dir, files=needed)
            ensure(needed, self.data_dir, self.name, allow_download=False)
        except FairbenchError as error:
            if all((self.data_dir / f.path).exists() for f in self.files if "t10k" in f.path):
                raise FairbenchError(f"{error} (or set option source: t10k to use the test files only)") from None
            raise

    @classmethod
    def download_file(cls, file: RemoteFile, root: Path) -> str:
        """Accept the file if it matches the shared copy's sha256 or torchvision's md5."""
        target = download(RemoteFile(file.path, file.url), root, cls.name)
        name = Path(file.path).name
        if sha256_of(target) != SHA256.get(name) and md5_of(target) != MD5[name]:
            set_aside(target, "md5", md5_of(target), MD5[name], cls.name)
        return " (checksum ok)"

    @classmethod
    def status(cls, data_dir: Path | None = None, options: dict[str, Any] | None = None) -> DatasetStatus:
        status = super().status(data_dir, options)
        if status.missing and all("train-" in m for m in status.missing):
            status.notes.append("option source: t10k works now")
        return status

    def column_names(self) -> list[str]:
        return ["digit", "color", "bias", "aligned", "is_test", "source_index", "red", "green", "blue"]

    def _skew_and_sigma(self) -> tuple[float, float]:
        """The options' values (within their declared bounds) as the generator reads them."""
        return float(self.settings["skew"]), SIGMA[int(self.settings["severity"]) - 1]

    def _parts(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(labels, source_index, is_test) per IDX file pair, in frame order."""
        test = read_idx(self.root / TEST_LABELS).astype(np.int64)
        if self.settings["source"] == "t10k":
            return [(test, np.arange(len(test)), np.zeros(len(test), dtype=np.int64))]
        train = read_idx(self.root / TRAIN_LABELS).astype(np.int64)
        return [
            (train, np.arange(len(train)), np.zeros(len(train), dtype=np.int64)),
            (test, np.arange(len(test)), np.ones(len(test), dtype=np.int64)),
        ]

    def read_frame(self, seed: int) -> pd.DataFrame:
        skew, sigma = self._skew_and_sigma()
        self.required_files()
        parts = self._parts()
        digits = np.concatenate([p[0] for p in parts])
        source_index = np.concatenate([p[1] for p in parts])
        is_test = np.concatenate([p[2] for p in parts])
        rng = np.random.default_rng([seed, 20200706])
        if self.settings["source"] == "t10k":
            held = stratified_split(digits, {"pool": 0.7, "test": 0.3}, seed)["test"]
            is_test[held] = 1
        colors = np.empty_like(digits)
        for flag, ratio in ((0, 1 - skew), (1, float(self.settings["test_aligned"]))):
            rows = np.flatnonzero(is_test == flag)
            colors[rows] = assign_colors(digits[rows], ratio, rng)
        drawn = np.clip(COLORS[colors] + rng.normal(scale=sigma, size=(len(digits), 3)), 0.0, 1.0)
        return pd.DataFrame(
            {
                "digit": digits,
                "color": colors,
                "bias": colors,
                "aligned": (colors == digits).astype(np.int64),
                "is_test": is_test,
                "source_index": source_index,
                "red": drawn[:, 0],
                "green": drawn[:, 1],
                "blue": drawn[:, 2],
            }
        )

    def shape(self, protocol: str) -> TaskShape:
        """MNIST's 60,000 training digits (source t10k: 70% of 10,000) less the validation share."""
        pool = 7_000 if self.settings["source"] == "t10k" else 60_000
        return TaskShape(round(pool * (1 - float(self.settings["val_fraction"]))), (3, 28, 28))

    def split(self, frame: pd.DataFrame, protocol: str, seed: int) -> dict[str, np.ndarray]:
        is_test = frame["is_test"].to_numpy() == 1
        strata = frame["digit"].to_numpy() * 2 + frame["aligned"].to_numpy()
        train, val = carve_validation(np.flatnonzero(~is_test), strata, float(self.settings["val_fraction"]), seed)
        return {"train": train, "val": val, "test": np.flatnonzero(is_test)}

    def inputs(self, frame: pd.DataFrame, exclude: frozenset[str], train: np.ndarray) -> Inputs:
        """(N, 3, 28, 28) uint8: the drawn colour times the grey digit (LfF truncates to uint8)."""
        sources = {0: TRAIN_IMAGES, 1: TEST_IMAGES}
        if self.settings["source"] == "t10k":
            sources = {0: TEST_IMAGES, 1: TEST_IMAGES}
        grey = {name: read_idx(self.root / name) for name in set(sources.values())}
        is_test = frame["is_test"].to_numpy()
        index = frame["source_index"].to_numpy()
        images = np.empty((len(frame), 28, 28), dtype=np.uint8)
        for flag, name in sources.items():
            rows = np.flatnonzero(is_test == flag)
            images[rows] = grey[name][index[rows]]
        color = frame[["red", "green", "blue"]].to_numpy(dtype=np.float32)
        x = np.empty((len(frame), 3, 28, 28), dtype=np.uint8)
        for start in range(0, len(frame), 8192):
            rows = slice(start, start + 8192)
            x[rows] = (color[rows, :, None, None] * images[rows, None].astype(np.float32)).astype(np.uint8)
        return Inputs(x=x, feature_names=["rgb_28px"], feature_sources=[])
