"""CelebA in its official layout: 40 binary attributes, aligned 178x218 JPEGs, cached at 64x64.

    <data>/celeba/img_align_celeba/000001.jpg .. 202599.jpg
    <data>/celeba/list_attr_celeba.txt      count line, names line, "<file> <40 x -1/1>" rows
    <data>/celeba/list_eval_partition.txt   "<file> <0|1|2>" rows

Attribute-only work (column names, the frame, `data describe`) reads only the two text files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairbench.bounds import NON_NEGATIVE, SHARE, at_least
from fairbench.data.base import Dataset, DatasetStatus, Inputs, Option, TaskShape, data_dir_from_env
from fairbench.data.download import RemoteFile, md5_of
from fairbench.data.images import ImageCache, Preprocess, cached_images, source_hash
from fairbench.data.placing import file_sizes, place
from fairbench.errors import FairbenchError

ATTRIBUTES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
IMAGES = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
OFFICIAL_COUNT = 202599
# md5 of the official text files (as listed by torchvision's CelebA dataset)
OFFICIAL_MD5 = {
    ATTR_FILE: "75e246fa4810816ffd6ee81facbd244c",
    PARTITION_FILE: "d32c9cbf5e040fd4025c592c306e6668",
}
# The official partition: train 1..162770 (see list_eval_partition.txt).
OFFICIAL_TRAIN_LAST = 162770
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
            path,
            sep=r"\s+",
            skiprows=2,
            header=None,
            names=["image", *ATTRIBUTES],
            engine="c",
            dtype={"image": str, **dict.fromkeys(ATTRIBUTES, np.int8)},
        )
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


def _find(src: Path, name: str, subfolders: tuple[str, ...]) -> Path | None:
    for sub in ("", "celeba", *subfolders):
        candidate = src / sub / name
        if candidate.exists():
            return candidate
    return None


class CelebA(Dataset):
    """CelebA (Liu et al. 2015), official files; images cached once as uint8 (N, 3, size, size).

    Protocols: `official` (list_eval_partition: train 1..162770, val ..182637, test ..202599),
    `dvge` (the released DVGE code: images 1..180000 train, the rest test) and `lff` (LfF, Nam
    et al. 2020, as GBA Table 3 uses it: trains on the official train partition and tests on
    the official validation partition, 19867 images, where LfF reports accuracy averaged over
    the (target, bias) cells, the `acc_unbiased` metric). In `dvge` and `lff` a seeded
    `val_fraction` of the train range is the validation split (model selection; LfF itself
    selects nothing and reports its last step).
    """

    name = "celeba"
    description = "CelebA faces, 40 binary attributes (user-supplied; see 'fairbench data import')"
    kind = "image"
    protocols = ("official", "dvge", "lff")
    label = "Attractive"
    folder = "celeba"
    options = {
        "size": Option(64, "side of the square images after resizing", at_least(8)),
        "crop": Option(0, "centre square cut before resizing, in original pixels (0 = none, as DVGE)", NON_NEGATIVE),
        "draft": Option(True, "fast JPEG decode at reduced DCT scale (False = full decode, slower)"),
        "val_fraction": Option(0.1, "protocols dvge, lff: share of the train range used for validation", SHARE),
    }

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(int(self.settings["size"]), int(self.settings["crop"]), bool(self.settings["draft"]))

    def shape(self, protocol: str) -> TaskShape:
        train_range = {"official": OFFICIAL_TRAIN_LAST, "dvge": DVGE_TRAIN_LAST, "lff": OFFICIAL_TRAIN_LAST}[protocol]
        val = 0 if protocol == "official" else round(float(self.settings["val_fraction"]) * train_range)
        side = int(self.settings["size"])
        return TaskShape(train_range - val, (3, side, side))

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
        if protocol == "lff":
            part = frame["partition"].to_numpy()
            train_range, test = np.flatnonzero(part == 0), np.flatnonzero(part == 1)
        else:
            ids = frame["image_id"].to_numpy()
            train_range, test = np.flatnonzero(ids <= DVGE_TRAIN_LAST), np.flatnonzero(ids > DVGE_TRAIN_LAST)
        rng = np.random.default_rng(seed)
        n_val = int(round(float(self.settings["val_fraction"]) * len(train_range)))
        val = np.sort(rng.choice(train_range, size=n_val, replace=False))
        return {"train": np.setdiff1d(train_range, val), "val": val, "test": test}

    def image_listing(self, files: np.ndarray) -> list[int]:
        """Byte sizes of `files` in img_align_celeba/; stops naming the missing ones."""
        folder = self.root / IMAGES
        if not folder.is_dir():
            raise FairbenchError(f"celeba: image folder {folder} is missing; {HOW_TO_GET}")
        present = file_sizes(folder)
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

    @classmethod
    def fetch(cls, data_dir: Path | None = None, files: tuple[RemoteFile, ...] | None = None) -> list[str]:
        raise FairbenchError(
            f"celeba cannot be downloaded automatically (its licence needs a click-through); {HOW_TO_GET}"
        )

    @classmethod
    def status(cls, data_dir: Path | None = None, options: dict[str, Any] | None = None) -> DatasetStatus:
        """Both text files, the image count against the attribute file's, and the built caches."""
        root = data_dir_from_env(data_dir) / cls.folder
        status = DatasetStatus(cls.name, cls.kind, "present", str(root))
        status.missing = [name for name in (ATTR_FILE, PARTITION_FILE) if not (root / name).exists()]
        declared = None
        if (root / ATTR_FILE).exists():
            with open(root / ATTR_FILE, "rb") as handle:
                try:
                    declared = int(handle.readline().strip())
                except ValueError:
                    status.notes.append(f"{ATTR_FILE} line 1 is not a count")
        images = root / IMAGES
        if not images.is_dir():
            status.missing.append(IMAGES + "/")
        else:
            with os.scandir(images) as entries:
                found = sum(1 for entry in entries if entry.name.endswith(".jpg"))
            if declared is not None and found < declared:
                status.missing.append(f"{declared - found} of {declared} images")
            status.notes.append(f"{found} images")
            caches = sorted(p.stem.removeprefix("images_") for p in (root / "cache").glob("images_*.json"))
            status.notes.append("cache: " + (", ".join(caches) or "not built yet"))
        only_images = bool(status.missing) and all(m.endswith(("images", "/")) for m in status.missing)
        status.state = "present" if not status.missing else ("partial" if only_images else "missing")
        status.action = "" if not status.missing else HOW_TO_GET
        return status

    @classmethod
    def import_files(
        cls, src: Path, data_dir: Path | None = None, copy: bool = False, verify: bool = True
    ) -> list[str]:
        """Check a user's CelebA copy and link (or copy) it into `<data>/celeba/`.

        Accepts the official folder (img_align_celeba/ and both text files side by side), its
        parent, or the Google Drive layout (Img/, Anno/, Eval/). `verify` checks the md5 of the
        two text files and the official count of 202599 images; structure and image presence
        are always checked.
        """
        src = Path(src).expanduser()
        if not src.is_dir():
            raise FairbenchError(f"celeba: {src} is not a folder; give the folder that holds {IMAGES}/")
        attr = _find(src, ATTR_FILE, ("Anno",))
        part = _find(src, PARTITION_FILE, ("Eval",))
        images = _find(src, IMAGES, ("Img",))
        missing = [n for n, p in ((ATTR_FILE, attr), (PARTITION_FILE, part)) if p is None]
        if images is None or not images.is_dir():
            zipped = _find(src, IMAGES + ".zip", ("Img",))
            if zipped is not None:
                raise FairbenchError(f"celeba: found {zipped} but no {IMAGES}/; unzip it next to it first")
            missing.append(IMAGES + "/")
        if missing:
            raise FairbenchError(f"celeba: {src} lacks {', '.join(missing)}; {HOW_TO_GET}")
        assert attr is not None and part is not None and images is not None
        frame = read_attributes(attr)
        read_partition(part, frame["image"].to_numpy())
        if verify:
            for path in (attr, part):
                got = md5_of(path)
                if got != OFFICIAL_MD5[path.name]:
                    raise FairbenchError(
                        f"celeba: {path} has md5 {got}, not the official {OFFICIAL_MD5[path.name]}; "
                        f"use the original file, or pass --skip-checksums for a modified copy"
                    )
            if len(frame) != OFFICIAL_COUNT:
                raise FairbenchError(
                    f"celeba: {attr} lists {len(frame)} images, not {OFFICIAL_COUNT}; "
                    f"pass --skip-checksums to import a subset"
                )
        sizes = file_sizes(images)
        files = frame["image"].tolist()
        absent = [f for f in files if f not in sizes]
        empty = [f for f in files if sizes.get(f) == 0]
        for what, bad in (("missing", absent), ("empty (0 bytes)", empty)):
            if bad:
                shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
                raise FairbenchError(
                    f"celeba: {len(bad)} of {len(files)} images {what} in {images} ({shown}); "
                    f"re-extract img_align_celeba.zip"
                )
        lines = [f"celeba: {len(files)} images and both text files check out in {src}"]
        items = [(images, IMAGES), (attr, ATTR_FILE), (part, PARTITION_FILE)]
        lines += place(items, data_dir_from_env(data_dir) / cls.folder, copy, cls.name)
        lines.append("celeba: the 64x64 image cache is built on first use (all cores, a few minutes)")
        return lines
