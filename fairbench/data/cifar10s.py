"""CIFAR-10S (Wang et al. 2020, "Towards fairness in visual recognition"), from the official
CIFAR-10 python batches under `<data>/cifar10/cifar-10-batches-py/`.

Training: per class, a seeded `skew` share (95%) of the 5000 images is in the class's majority
domain (grey for airplane, bird, deer, frog, ship; colour for the other five), the rest in the
other domain. Test: every test image twice, once in colour and once grey. Grey images are the
PIL 'L' luma repeated over the three channels.
"""

from __future__ import annotations

import pickle
import shutil
import tarfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from fairbench.bounds import SHARE, between
from fairbench.data.base import Dataset, Inputs, Option, TaskShape, data_dir_from_env
from fairbench.data.download import RemoteFile, download, ensure, md5_of, set_aside
from fairbench.data.images import to_grey_rgb
from fairbench.data.splits import carve_validation
from fairbench.errors import FairbenchError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar10/cifar-10-batches-py"
# md5 of the archive members (as listed by torchvision's CIFAR10)
MEMBER_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MOSTLY_GREY = ("airplane", "bird", "deer", "frog", "ship")


# What the official batches' pickles (and numpy's own pickling of arrays) call: nothing else runs.
_ARRAY_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and builtin containers only: a file planted in the
    data folder cannot run code when it is read."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (only numpy arrays are expected)")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official pickle: (N, 3, 32, 32) uint8 images and int64 labels."""
    if not path.exists():
        raise FairbenchError(
            f"cifar10s: {path} is missing; run 'fairbench data fetch cifar10s' or extract "
            f"cifar-10-python.tar.gz ({URL}) into {path.parent.parent}/"
        )
    try:
        with open(path, "rb") as handle:
            batch = _ArraysOnly(handle, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise FairbenchError(f"cifar10s: {path} is damaged or not a CIFAR-10 batch ({error}); fetch it again") from None
    if len(data) != len(labels):
        raise FairbenchError(f"cifar10s: {path} has {len(data)} images but {len(labels)} labels")
    return data, labels


class CIFAR10S(Dataset):
    """CIFAR-10S: colour/grey skewed CIFAR-10. Frame columns: `label` (0-9, usable as
    `target: label`), `class_name`, `grey` (0/1), `grey_major` (the class is mostly grey in
    training), `aligned` (grey == grey_major), `bias` (= grey), `is_test`, `source_index` (row in
    the train or test batches).

    A binary target `grey_major` has bias-aligned samples exactly where `bias == y`. Subclasses
    replace the second domain (`domain`, here grey) by other images (CIFAR-I: ImageNet).
    """

    name = "cifar10s"
    description = "CIFAR-10S: CIFAR-10 with a 95/5 colour/grey skew per class (Wang et al. 2020)"
    kind = "image"
    protocols = ("wang",)
    label = "label"
    folder = "cifar10"
    files = tuple(RemoteFile(f"{FOLDER}/{name}", URL) for name in (*TRAIN_BATCHES, "test_batch", "batches.meta"))
    options = {
        "skew": Option(0.95, "share of each training class in its majority domain", between(0, 1)),
        "val_fraction": Option(0.1, "share of the training images used for validation", SHARE),
    }
    # The name of the second domain's 0/1 column (the bias); its classes are MOSTLY_GREY.
    domain: ClassVar[str] = "grey"

    def ensure_files(self, allow_download: bool = True) -> None:
        if allow_download and any(not (self.data_dir / f.path).exists() for f in self.files):
            self.fetch(self.data_dir)
        ensure(self.files, self.data_dir, self.name, allow_download=False)

    @classmethod
    def fetch(cls, data_dir: Path | None = None, files: tuple[RemoteFile, ...] | None = None) -> list[str]:
        """Download the official archive (md5-checked) and extract the batches, each md5-checked."""
        root = data_dir_from_env(data_dir)
        folder = root / FOLDER
        members = MEMBER_MD5
        if all((folder / member).exists() for member in members):
            return [f"cifar10s: {folder} present"]
        archive_path = "cifar10/cifar-10-python.tar.gz"
        archive = root / archive_path
        if not archive.exists():
            try:
                download(RemoteFile(archive_path, URL), root, "cifar10s", timeout=60.0)
            except FairbenchError as error:
                raise FairbenchError(f"{error}; then run 'fairbench data fetch cifar10s' to extract it") from None
            if md5_of(archive) != ARCHIVE_MD5:
                set_aside(archive, "md5", md5_of(archive), ARCHIVE_MD5, "cifar10s")
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in members:
                    info = tar.getmember(f"cifar-10-batches-py/{member}")
                    source = tar.extractfile(info)
                    if source is None:
                        raise KeyError(member)
                    part = folder / f"{member}.part"
                    with source, open(part, "wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                    if md5_of(part) != members[member]:
                        set_aside(part, "md5", md5_of(part), members[member], "cifar10s")
                    part.replace(folder / member)
        except (tarfile.TarError, KeyError, EOFError, OSError) as error:
            raise FairbenchError(
                f"cifar10s: cannot extract {archive} ({type(error).__name__}: {error}); delete it and fetch again"
            ) from None
        return [f"cifar10s: {folder} extracted from {archive.name} (md5 ok)"]

    def column_names(self) -> list[str]:
        d = self.domain
        return ["label", "class_name", d, f"{d}_major", "aligned", "bias", "is_test", "source_index"]

    def _labels(self) -> tuple[np.ndarray, np.ndarray]:
        folder = self.data_dir / FOLDER
        train = np.concatenate([self._read_labels(folder / name) for name in TRAIN_BATCHES])
        return train, self._read_labels(folder / "test_batch")

    def _read_labels(self, path: Path) -> np.ndarray:
        return read_batch(path)[1]

    def read_frame(self, seed: int) -> pd.DataFrame:
        skew = float(self.settings["skew"])
        train, test = self._labels()
        rng = np.random.default_rng([seed, 20200401])
        major = np.array([name in MOSTLY_GREY for name in CLASSES], dtype=np.int64)
        domain_train = np.zeros(len(train), dtype=np.int64)
        for label in range(len(CLASSES)):
            rows = rng.permutation(np.flatnonzero(train == label))
            majority = rows[: int(round(skew * len(rows)))]
            domain_train[rows] = 1 - major[label]
            domain_train[majority] = major[label]
        test_labels, domain_test, test_index = self._test_rows(test)
        labels = np.concatenate([train, test_labels])
        domain = np.concatenate([domain_train, domain_test])
        return pd.DataFrame(
            {
                "label": labels,
                "class_name": np.array(CLASSES)[labels],
                self.domain: domain,
                f"{self.domain}_major": major[labels],
                "aligned": (domain == major[labels]).astype(np.int64),
                "bias": domain,
                "is_test": np.r_[np.zeros(len(train), np.int64), np.ones(len(test_labels), np.int64)],
                "source_index": np.r_[self._train_index(train, domain_train), test_index],
            }
        )

    def _test_rows(self, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labels, domain, source_index) of the test rows: every test image once per domain."""
        n = len(test)
        return np.r_[test, test], np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)], np.r_[np.arange(n), np.arange(n)]

    def _train_index(self, train: np.ndarray, domain: np.ndarray) -> np.ndarray:
        """source_index of the training rows: their place in the train batches."""
        return np.arange(len(train))

    def shape(self, protocol: str) -> TaskShape:
        """CIFAR-10's 50,000 training images less the validation share."""
        return TaskShape(round(50_000 * (1 - float(self.settings["val_fraction"]))), (3, 32, 32))

    def split(self, frame: pd.DataFrame, protocol: str, seed: int) -> dict[str, np.ndarray]:
        is_test = frame["is_test"].to_numpy() == 1
        strata = frame["label"].to_numpy() * 2 + frame[self.domain].to_numpy()
        train, val = carve_validation(np.flatnonzero(~is_test), strata, float(self.settings["val_fraction"]), seed)
        return {"train": train, "val": val, "test": np.flatnonzero(is_test)}

    def inputs(self, frame: pd.DataFrame, exclude: frozenset[str], train: np.ndarray) -> Inputs:
        """(N, 3, 32, 32) uint8, grey rows converted to luma on three channels."""
        x = self._cifar_images(frame, np.ones(len(frame), dtype=bool))
        grey = np.flatnonzero(frame["grey"].to_numpy() == 1)
        for start in range(0, len(grey), 8192):
            rows = grey[start : start + 8192]
            x[rows] = to_grey_rgb(x[rows])
        return Inputs(x=x, feature_names=["rgb_32px"], feature_sources=[])

    def _cifar_images(self, frame: pd.DataFrame, where: np.ndarray) -> np.ndarray:
        """(N, 3, 32, 32) uint8 with the CIFAR-10 image of every row in `where` (others zero)."""
        folder = self.data_dir / FOLDER
        sources = {
            0: np.concatenate([read_batch(folder / name)[0] for name in TRAIN_BATCHES]),
            1: read_batch(folder / "test_batch")[0],
        }
        is_test = frame["is_test"].to_numpy()
        index = frame["source_index"].to_numpy()
        x = np.zeros((len(frame), 3, 32, 32), dtype=np.uint8)
        for flag, images in sources.items():
            rows = np.flatnonzero((is_test == flag) & where)
            x[rows] = images[index[rows]]
        return x
