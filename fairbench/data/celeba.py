"""CelebA in its official layout: 40 binary attributes, aligned 178x218 JPEGs, cached at 64x64.

    <data>/celeba/img_align_celeba/000001.jpg .. 202599.jpg
    <data>/celeba/list_attr_celeba.txt      count line, names line, "<file> <40 x -1/1>" rows
    <data>/celeba/list_eval_partition.txt   "<file> <0|1|2>" rows

Attribute-only work (column names, the frame, `data describe`) reads only the two text files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from fairbench.data.base import Dataset, Inputs, Option
from fairbench.data.images import ImageCache, Preprocess, cached_images, source_hash
from fairbench.errors import FairbenchError

ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)  # fmt: skip
IMAGES = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
OFFICIAL_COUNT = 202599
# md5 of the official text files (as listed by torchvision's CelebA dataset)
OFFICIAL_MD5 = {
    ATTR_FILE: "75e246fa4810816ffd6ee81facbd244c",
    PARTITION_FILE: "d32c9cbf5e040fd4025c592c306e6668",
}
DVGE_TRAIN_LAST = 180000  # the released DVGE code trains on images 1..180000, tests on the rest
HOW_TO_GET = (
    "download img_align_celeba.zip, list_attr_celeba.txt and list_eval_partition.txt from "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive), unzip the images and run "
    "'fairbench data import celeba PATH'"
)


def _first_bad_row(path: Path, fields: int, skip: int) -> int:
    """1-based number of the first line after `skip` header lines without `fields` fields."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number > skip and len(line.split()) != fields:
                return number
    return 0


def read_attributes(path: Path) -> pd.DataFrame:
    """Parse list_attr_celeba.txt: `image` (file name), `image_id` and the 40 attributes as 0/1."""
    if not path.exists():
        raise FairbenchError(f"celeba: {path} is missing; {HOW_TO_GET}")
    with open(path, "rb") as handle:
        head = [handle.readline() for _ in range(2)]
    try:
        declared = int(head[0].strip())
    except ValueError:
        found = head[0][:40]
        raise FairbenchError(f"celeba: {path} line 1 must be the image count, found {found!r}") from None
    if tuple(head[1].decode("ascii", "replace").split()) != ATTRIBUTES:
        raise FairbenchError(f"celeba: {path} line 2 must name the 40 official attributes in order")
    try:
        frame = pd.read_csv(
            path, sep=r"\s+", skiprows=2, header=None, names=["image", *ATTRIBUTES], engine="c",
            dtype={"image": str, **dict.fromkeys(ATTRIBUTES, np.int8)},
        )  # fmt: skip
    except (ValueError, pd.errors.ParserError):
        raise FairbenchError(
            f"celeba: {path} line {_first_bad_row(path, 41, 2)} does not have a file name and 40 values "
            f"of -1/1; the file is damaged, replace it with the official one"
        ) from None
    if len(frame) != declared:
        raise FairbenchError(
            f"celeba: {path} is truncated or damaged: line 1 declares {declared} images but "
            f"{len(frame)} rows follow; replace it with the official file"
        )
    values = frame[list(ATTRIBUTES)].to_numpy()
    if not np.isin(values, (-1, 1)).all():
        raise FairbenchError(f"celeba: {path} has values other than -1/1; replace it with the official file")
    frame[list(ATTRIBUTES)] = (values > 0).astype(np.int8)
    ids = pd.to_numeric(frame["image"].str.removesuffix(".jpg"), errors="coerce")
    if ids.isna().any():
        raise FairbenchError(f"celeba: {path} has image names that are not like 000001.jpg")
    frame.insert(1, "image_id", ids.to_numpy(dtype=np.int64))
    return frame


def read_partition(path: Path, files: np.ndarray) -> np.ndarray:
    """Parse list_eval_partition.txt into 0/1/2 codes in the order of `files`."""
    if not path.exists():
        raise FairbenchError(f"celeba: {path} is missing; {HOW_TO_GET}")
    try:
        table = pd.read_csv(
            path, sep=r"\s+", header=None, names=["image", "partition"], dtype={"image": str}, engine="c"
        )
        codes = table["partition"].to_numpy(dtype=np.int64)
    except (ValueError, pd.errors.ParserError):
        raise FairbenchError(
            f"celeba: {path} line {_first_bad_row(path, 2, 0) or '?'} is not '<file> <0|1|2>'; "
            f"replace it with the official file"
        ) from None
    if len(table) != len(files) or not np.array_equal(table["image"].to_numpy(dtype=str), files.astype(str)):
        raise FairbenchError(
            f"celeba: {path} lists {len(table)} images that do not match the {len(files)} of "
            f"{ATTR_FILE}; use the two files of one official release"
        )
    if not np.isin(codes, (0, 1, 2)).all():
        raise FairbenchError(f"celeba: {path} has partitions other than 0/1/2")
    return codes


class CelebA(Dataset):
    """CelebA (Liu et al. 2015), official files; images cached once as uint8 (N, 3, size, size).

    Protocols: `official` (list_eval_partition: train 1..162770, val ..182637, test ..202599) and
    `dvge` (the released DVGE code: images 1..180000 train, the rest test; a seeded
    `val_fraction` of the train range is validation).
    """

    name = "celeba"
    description = "CelebA faces, 40 binary attributes (user-supplied; see 'fairbench data import')"
    kind = "image"
    protocols = ("official", "dvge")
    label = "Attractive"
    folder = "celeba"
    options = {
        "size": Option(64, "side of the square images after resizing"),
        "crop": Option(0, "centre square cut before resizing, in original pixels (0 = none, as DVGE)"),
        "draft": Option(True, "fast JPEG decode at reduced DCT scale (False = full decode, slower)"),
        "val_fraction": Option(0.1, "protocol dvge: share of the train range used for validation"),
    }

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(
            int(self.settings["size"]), int(self.settings["crop"]), bool(self.settings["draft"])
        )

    def ensure_files(self, allow_download: bool = True) -> None:
        """Only the two text files are needed for attributes; images are checked in `inputs`."""
        missing = [name for name in (ATTR_FILE, PARTITION_FILE) if not (self.root / name).exists()]
        if missing:
            raise FairbenchError(f"celeba: {', '.join(missing)} missing in {self.root}; {HOW_TO_GET}")

    def column_names(self) -> list[str]:
        return [*ATTRIBUTES, "image_id", "partition"]

    def read_frame(self, seed: int) -> pd.DataFrame:
        frame = read_attributes(self.root / ATTR_FILE)
        frame["partition"] = read_partition(self.root / PARTITION_FILE, frame["image"].to_numpy())
        return frame

    def split(self, frame: pd.DataFrame, protocol: str, seed: int) -> dict[str, np.ndarray]:
        if protocol == "official":
            part = frame["partition"].to_numpy()
            return {name: np.flatnonzero(part == code) for code, name in enumerate(("train", "val", "test"))}
        ids = frame["image_id"].to_numpy()
        train_range = np.flatnonzero(ids <= DVGE_TRAIN_LAST)
        rng = np.random.default_rng(seed)
        n_val = int(round(float(self.settings["val_fraction"]) * len(train_range)))
        val = np.sort(rng.choice(train_range, size=n_val, replace=False))
        return {
            "train": np.setdiff1d(train_range, val),
            "val": val,
            "test": np.flatnonzero(ids > DVGE_TRAIN_LAST),
        }

    def image_listing(self, files: np.ndarray) -> list[int]:
        """Byte sizes of `files` in img_align_celeba/; stops naming the missing ones."""
        folder = self.root / IMAGES
        if not folder.is_dir():
            raise FairbenchError(f"celeba: image folder {folder} is missing; {HOW_TO_GET}")
        present: dict[str, int] = {}
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    present[entry.name] = entry.stat().st_size
                except OSError:  # a dangling link
                    continue
        missing = [f for f in files if f not in present]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise FairbenchError(
                f"celeba: {len(missing)} of {len(files)} images missing in {folder} ({shown}); "
                f"re-extract img_align_celeba.zip there"
            )
        return [present[f] for f in files]

    def inputs(self, frame: pd.DataFrame, exclude: frozenset[str], train: np.ndarray) -> Inputs:
        """The (N, 3, size, size) uint8 memmap of every row, built once under celeba/cache/
        (decoding processes: $FAIRBENCH_DECODE_WORKERS, default all cores)."""
        files = frame["image"].to_numpy()
        prep = self.preprocess
        expected = source_hash(files, self.image_listing(files), prep)
        cache = ImageCache(self.root / "cache", f"images_{prep.key()}")
        folder = self.root / IMAGES
        x = cached_images(cache, [folder / f for f in files], prep, expected, self.name)
        return Inputs(x=x, feature_names=[f"image_{prep.key()}"], feature_sources=[])
