"""CIFAR-I (Wang et al. 2020, GBA Table 2): CIFAR-10S with ImageNet images in place of the grey domain.

The images of the second domain are the ImageNet part of CINIC-10 (Darlow et al. 2018: ImageNet
images of the ten CIFAR-10 classes, downsampled to 32x32 PNGs), which the user supplies:

    <data>/cifar_i/imagenet/train/<class>/*.png    (CINIC-10's train/ folder as it is)
    <data>/cifar_i/imagenet/test/<class>/*.png     (CINIC-10's test/ folder as it is)

with <class> one of the CIFAR-10 class names. CINIC-10's `cifar10-*` files (CIFAR images) are
skipped. Training: as CIFAR-10S, but a class's rows of the second domain (95% of airplane,
bird, deer, frog, ship; 5% of the others) show ImageNet training images of that class instead
of grey CIFAR images, the first ones in file-name order (Wang et al.'s script takes the first
ones its folder listing returns). Test: the CIFAR-10 test images (colour domain) and
`imagenet_test` ImageNet test images per class (Wang et al.: 1000).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairbench.bounds import at_least
from fairbench.data.base import DatasetStatus, Inputs, Option, data_dir_from_env
from fairbench.data.cifar10s import CIFAR10S, CLASSES
from fairbench.data.images import ImageCache, Preprocess, cached_images, source_hash
from fairbench.data.placing import file_sizes
from fairbench.errors import FairbenchError

IMAGENET = "cifar_i/imagenet"
PREPROCESS = Preprocess(size=32, draft=False)


def how_to_get(root: Path) -> str:
    return (
        f"put 32x32 ImageNet images of each CIFAR-10 class in {root / IMAGENET}/{{train,test}}/<class>/ "
        f"(<class>: {', '.join(CLASSES)}); CINIC-10's train/ and test/ folders "
        f"(https://github.com/BayesWatch/cinic-10) work as they are, their cifar10-* files are skipped"
    )


def imagenet_files(folder: Path) -> list[str]:
    """The ImageNet images of one class folder (CINIC-10's CIFAR copies left out), sorted."""
    return sorted(name for name in file_sizes(folder) if not name.startswith("cifar10-"))


class CIFARI(CIFAR10S):
    """CIFAR-I: CIFAR-10 against ImageNet images of the same classes, skewed 95/5 per class.

    Frame columns as CIFAR-10S with `imagenet` (0/1) and `imagenet_major` in place of `grey`
    and `grey_major`; `bias` = imagenet. `source_index` of an ImageNet row is its place among
    the images used of its split (class by class, in CLASSES order).
    """

    name = "cifar_i"
    description = "CIFAR-I: CIFAR-10 vs ImageNet images of the same classes, 95/5 skew (user-supplied ImageNet part)"
    protocols = ("wang",)
    domain = "imagenet"
    options = {
        **CIFAR10S.options,
        "imagenet_test": Option(1000, "ImageNet test images per class (Wang et al.: 1000)", at_least(1)),
    }

    def ensure_files(self, allow_download: bool = True) -> None:
        super().ensure_files(allow_download)
        for split in ("train", "test"):
            for name in CLASSES:
                folder = self.data_dir / IMAGENET / split / name
                if not folder.is_dir():
                    raise FairbenchError(f"cifar_i: {folder}/ is missing; {how_to_get(self.data_dir)}")

    @classmethod
    def status(cls, data_dir: Path | None = None, options: dict[str, Any] | None = None) -> DatasetStatus:
        """CIFAR-10's batches as for cifar10s, plus the class folders of the ImageNet images."""
        status = super().status(data_dir, options)
        root = data_dir_from_env(data_dir)
        absent = [
            f"{IMAGENET}/{split}/{name}/"
            for split in ("train", "test")
            for name in CLASSES
            if not (root / IMAGENET / split / name).is_dir()
        ]
        if absent:
            status.missing.append(absent[0] if len(absent) == 1 else f"{IMAGENET}/ ({len(absent)} class folders)")
            status.state = "missing" if status.state == "missing" or len(absent) == 20 else "partial"
            status.action = "; ".join(filter(None, [status.action, how_to_get(root)]))
        return status

    def _images_used(self, split: str, counts: np.ndarray) -> list[Path]:
        """The first `counts[c]` ImageNet images of each class c in `split`, class by class."""
        paths: list[Path] = []
        for label, name in enumerate(CLASSES):
            folder = self.data_dir / IMAGENET / split / name
            files = imagenet_files(folder)
            if len(files) < counts[label]:
                raise FairbenchError(
                    f"cifar_i: {folder}/ holds {len(files)} ImageNet images, {counts[label]} are needed "
                    f"(skew {self.settings['skew']}, imagenet_test {self.settings['imagenet_test']}); "
                    f"{how_to_get(self.data_dir)}"
                )
            paths += [folder / f for f in files[: counts[label]]]
        return paths

    def _test_rows(self, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The CIFAR-10 test images (domain 0), then `imagenet_test` ImageNet ones per class."""
        per_class = int(self.settings["imagenet_test"])
        labels = np.repeat(np.arange(len(CLASSES)), per_class)
        domain = np.r_[np.zeros(len(test), np.int64), np.ones(len(labels), np.int64)]
        return np.r_[test, labels], domain, np.r_[np.arange(len(test)), np.arange(len(labels))]

    def _train_index(self, train: np.ndarray, domain: np.ndarray) -> np.ndarray:
        """CIFAR rows keep their batch index; ImageNet rows count up class by class."""
        index = np.arange(len(train))
        rows = np.flatnonzero(domain == 1)
        rows = rows[np.argsort(train[rows], kind="stable")]
        index[rows] = np.arange(len(rows))
        return index

    def inputs(self, frame: pd.DataFrame, exclude: frozenset[str], train: np.ndarray) -> Inputs:
        """(N, 3, 32, 32) uint8: CIFAR-10 images, and the ImageNet images decoded once into
        <data>/cifar_i/cache/."""
        imagenet = frame["imagenet"].to_numpy() == 1
        x = self._cifar_images(frame, ~imagenet)
        is_test = frame["is_test"].to_numpy()
        labels = frame["label"].to_numpy()
        for flag, split in ((0, "train"), (1, "test")):
            rows = np.flatnonzero(imagenet & (is_test == flag))
            paths = self._images_used(split, np.bincount(labels[rows], minlength=len(CLASSES)))
            names = [str(p.relative_to(self.data_dir / IMAGENET)) for p in paths]
            sizes = [p.stat().st_size for p in paths]
            cache = ImageCache(self.data_dir / "cifar_i" / "cache", f"{split}_{len(paths)}_{PREPROCESS.key()}")
            images = cached_images(cache, paths, PREPROCESS, source_hash(names, sizes, PREPROCESS), self.name)
            x[rows] = images[frame["source_index"].to_numpy()[rows]]
        return Inputs(x=x, feature_names=["rgb_32px"], feature_sources=[])
