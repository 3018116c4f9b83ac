"""LFW (Huang et al. 2007) with the 73 attributes of Kumar et al. 2009, official files:

    <data>/lfw/lfw_attributes.txt   line 1 "# lfw attributes file, version 1.1", line 2 "#" then
                                    the tab-separated names "person", "imagenum" and the 73
                                    attributes, then one tab-separated row per image: person
                                    name, image number and 73 classifier scores (> 0: present)
    <data>/lfw/lfw/<Person_Name>/<Person_Name>_<NNNN>.jpg   (lfw.tgz, 250x250)

Attribute names become identifiers ("Wavy Hair" -> Wavy_Hair, "5 o' Clock Shadow" ->
5_o_Clock_Shadow) with 0/1 values (score > 0). FAAP's LFW target "Young" is the file's
"Youth"; `Young` is kept as that alias. Attribute-only work reads only the text file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairbench.bounds import NON_NEGATIVE, at_least
from fairbench.data.base import (
    Dataset,
    DatasetStatus,
    Inputs,
    Option,
    TaskShape,
    data_dir_from_env,
    user_supplied_status,
)
from fairbench.data.download import RemoteFile
from fairbench.data.images import ImageCache, Preprocess, cached_images, source_hash
from fairbench.data.placing import file_sizes, place
from fairbench.errors import FairbenchError

ATTR_FILE = "lfw_attributes.txt"
IMAGES = "lfw"
# The 73 attribute names of lfw_attributes.txt, in file order.
ATTRIBUTES = (
    "Male",
    "Asian",
    "White",
    "Black",
    "Baby",
    "Child",
    "Youth",
    "Middle Aged",
    "Senior",
    "Black Hair",
    "Blond Hair",
    "Brown Hair",
    "Bald",
    "No Eyewear",
    "Eyeglasses",
    "Sunglasses",
    "Mustache",
    "Smiling",
    "Frowning",
    "Chubby",
    "Blurry",
    "Harsh Lighting",
    "Flash",
    "Soft Lighting",
    "Outdoor",
    "Curly Hair",
    "Wavy Hair",
    "Straight Hair",
    "Receding Hairline",
    "Bangs",
    "Sideburns",
    "Fully Visible Forehead",
    "Partially Visible Forehead",
    "Obstructed Forehead",
    "Bushy Eyebrows",
    "Arched Eyebrows",
    "Narrow Eyes",
    "Eyes Open",
    "Big Nose",
    "Pointy Nose",
    "Big Lips",
    "Mouth Closed",
    "Mouth Slightly Open",
    "Mouth Wide Open",
    "Teeth Not Visible",
    "No Beard",
    "Goatee",
    "Round Jaw",
    "Double Chin",
    "Wearing Hat",
    "Oval Face",
    "Square Face",
    "Round Face",
    "Color Photo",
    "Posed Photo",
    "Attractive Man",
    "Attractive Woman",
    "Indian",
    "Gray Hair",
    "Bags Under Eyes",
    "Heavy Makeup",
    "Rosy Cheeks",
    "Shiny Skin",
    "Pale Skin",
    "5 o' Clock Shadow",
    "Strong Nose-Mouth Lines",
    "Wearing Lipstick",
    "Flushed Face",
    "High Cheekbones",
    "Brown Eyes",
    "Wearing Earrings",
    "Wearing Necktie",
    "Wearing Necklace",
)
ALIASES = {"Young": "Youth"}
HOW_TO_GET = (
    "download lfw.tgz from http://vis-www.cs.umass.edu/lfw/ and lfw_attributes.txt from "
    "https://www.cs.columbia.edu/CAVE/databases/pubfig/download/, extract the archive next to the "
    "text file and run 'fairbench data import lfw PATH'"
)


def identifier(name: str) -> str:
    """An attribute name as a column identifier: runs of non-alphanumerics become '_'."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")


def read_attributes(path: Path) -> pd.DataFrame:
    """Parse lfw_attributes.txt: person, imagenum, image (relative path) and the attributes as 0/1."""
    if not path.exists():
        raise FairbenchError(f"lfw: {path} is missing; {HOW_TO_GET}")
    with open(path, encoding="utf-8", errors="replace") as handle:
        head = [handle.readline() for _ in range(2)]
    names = [field.strip() for field in head[1].lstrip("#").split("\t") if field.strip()]
    if not head[0].startswith("#") or names != ["person", "imagenum", *ATTRIBUTES]:
        raise FairbenchError(
            f"lfw: {path} lines 1-2 must be the comment line and '#', person, imagenum and the "
            f"{len(ATTRIBUTES)} official attribute names, tab-separated; replace it with the official file"
        )
    columns = ["person", "imagenum", *(identifier(n) for n in names[2:])]
    try:
        frame = pd.read_csv(path, sep="\t", skiprows=2, header=None, names=columns, dtype={"person": str})
        scores = frame[columns[2:]].to_numpy(dtype=np.float64)
        numbers = frame["imagenum"].to_numpy(dtype=np.int64)
    except (ValueError, pd.errors.ParserError):
        raise FairbenchError(
            f"lfw: {path} has a row that is not a name, an image number and {len(ATTRIBUTES)} numbers; "
            f"replace it with the official file"
        ) from None
    if np.isnan(scores).any() or frame["person"].isna().any():
        row = int(np.flatnonzero(np.isnan(scores).any(1) | frame["person"].isna().to_numpy())[0]) + 3
        raise FairbenchError(f"lfw: {path} line {row} has missing fields; replace it with the official file")
    out = pd.DataFrame({"person": frame["person"], "imagenum": numbers})
    folders = frame["person"].str.replace(" ", "_")
    out["image"] = folders + "/" + folders + "_" + frame["imagenum"].map("{:04d}".format) + ".jpg"
    binary = pd.DataFrame((scores > 0).astype(np.int8), columns=columns[2:])
    for alias, source in ALIASES.items():
        binary[alias] = binary[source]
    return pd.concat([out, binary], axis=1)


class LFW(Dataset):
    """LFW faces with Kumar et al.'s 73 attributes; images cached once as uint8 (N, 3, size, size).

    Protocol `faap` (FAAP section 5.1): a seeded random `train_size` rows for training,
    `val_size` for validation, the rest for testing.
    """

    name = "lfw"
    description = "LFW faces with the 73 Kumar et al. attributes (user-supplied; see 'fairbench data import')"
    kind = "image"
    protocols = ("faap",)
    label = "Smiling"
    folder = "lfw"
    options = {
        "size": Option(64, "side of the square images after resizing", at_least(8)),
        "crop": Option(0, "centre square cut before resizing, in original pixels (0 = none)", NON_NEGATIVE),
        "train_size": Option(6000, "protocol faap: rows drawn for training", at_least(1)),
        "val_size": Option(3600, "protocol faap: rows drawn for validation (the rest is test)", at_least(1)),
    }

    def ensure_files(self, allow_download: bool = True) -> None:
        """Only the attribute file is needed for attributes; images are checked in `inputs`."""
        if not (self.root / ATTR_FILE).exists():
            raise FairbenchError(f"lfw: {ATTR_FILE} missing in {self.root}; {HOW_TO_GET}")

    def column_names(self) -> list[str]:
        return ["person", "imagenum", *(identifier(n) for n in ATTRIBUTES), *ALIASES]

    def read_frame(self, seed: int) -> pd.DataFrame:
        return read_attributes(self.root / ATTR_FILE)

    def shape(self, protocol: str) -> TaskShape:
        side = int(self.settings["size"])
        return TaskShape(int(self.settings["train_size"]), (3, side, side))

    def split(self, frame: pd.DataFrame, protocol: str, seed: int) -> dict[str, np.ndarray]:
        n_train, n_val = int(self.settings["train_size"]), int(self.settings["val_size"])
        if n_train < 1 or n_val < 0 or n_train + n_val >= len(frame):
            raise FairbenchError(
                f"lfw: options train_size {n_train} + val_size {n_val} must leave test rows of the {len(frame)}"
            )
        order = np.random.default_rng([seed, 6000]).permutation(len(frame))
        parts = np.split(order, [n_train, n_train + n_val])
        return {name: np.sort(rows) for name, rows in zip(("train", "val", "test"), parts)}

    def inputs(self, frame: pd.DataFrame, exclude: frozenset[str], train: np.ndarray) -> Inputs:
        """The (N, 3, size, size) uint8 memmap of every row, built once under lfw/cache/."""
        prep = Preprocess(int(self.settings["size"]), int(self.settings["crop"]))
        files = frame["image"].tolist()
        folder = self.root / IMAGES
        expected = source_hash(files, image_sizes(folder, files), prep)
        cache = ImageCache(self.root / "cache", f"images_{prep.key()}")
        x = cached_images(cache, [folder / f for f in files], prep, expected, self.name)
        return Inputs(x=x, feature_names=[f"image_{prep.key()}"], feature_sources=[])

    @classmethod
    def fetch(cls, data_dir: Path | None = None, files: tuple[RemoteFile, ...] | None = None) -> list[str]:
        raise FairbenchError(f"lfw is not downloaded automatically; {HOW_TO_GET}")

    @classmethod
    def status(cls, data_dir: Path | None = None, options: dict[str, Any] | None = None) -> DatasetStatus:
        return user_supplied_status(cls, data_dir, [ATTR_FILE, IMAGES + "/"], HOW_TO_GET)

    @classmethod
    def import_files(
        cls, src: Path, data_dir: Path | None = None, copy: bool = False, verify: bool = True
    ) -> list[str]:
        """Check a user's LFW copy (lfw_attributes.txt and the lfw/ image folder side by side, in
        `src` or `src/lfw`) and link (or copy) it into `<data>/lfw/`; every listed image must be there."""
        src = Path(src).expanduser()
        if not src.is_dir():
            raise FairbenchError(f"lfw: {src} is not a folder; give the folder that holds {ATTR_FILE} and {IMAGES}/")
        base = src if (src / ATTR_FILE).exists() or not (src / "lfw" / ATTR_FILE).exists() else src / "lfw"
        missing = [name for name in (ATTR_FILE, IMAGES + "/") if not (base / name.rstrip("/")).exists()]
        if missing:
            raise FairbenchError(f"lfw: {base} lacks {', '.join(missing)}; {HOW_TO_GET}")
        frame = read_attributes(base / ATTR_FILE)
        image_sizes(base / IMAGES, frame["image"].tolist())
        lines = [f"lfw: {len(frame)} images and {ATTR_FILE} check out in {base}"]
        items = [(base / IMAGES, IMAGES), (base / ATTR_FILE, ATTR_FILE)]
        return lines + place(items, data_dir_from_env(data_dir) / cls.folder, copy, cls.name)


def image_sizes(folder: Path, files: list[str]) -> list[int]:
    """Byte sizes of `files` (person/file.jpg) under `folder`; stops naming missing or empty ones."""
    if not folder.is_dir():
        raise FairbenchError(f"lfw: image folder {folder} is missing; {HOW_TO_GET}")
    listed: dict[str, dict[str, int]] = {}
    sizes, missing = [], []
    for name in files:
        person, _, file = name.partition("/")
        if person not in listed:
            listed[person] = file_sizes(folder / person) if (folder / person).is_dir() else {}
        size = listed[person].get(file, 0)
        if size == 0:
            missing.append(name)
        sizes.append(size)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise FairbenchError(
            f"lfw: {len(missing)} of {len(files)} images missing or empty in {folder} ({shown}); re-extract lfw.tgz"
        )
    return sizes
