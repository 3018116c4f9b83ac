"""Getting data into the data folder and saying what is there: fetch, import (CelebA), ls.

Every user-facing problem is a one-line `FairbenchError` that says what to do next.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from fairbench.data.base import Dataset, data_dir_from_env
from fairbench.data.download import RemoteFile, download, sha256_of
from fairbench.errors import FairbenchError


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


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(name: str, data_dir: Path | str | None) -> Dataset:
    from fairbench.registry import DATASETS

    return DATASETS.get(name)(data_dir_from_env(data_dir))


def _reject(path: Path, what: str, got: str, want: str, dataset: str) -> None:
    bad = path.with_name(path.name + ".bad")
    path.replace(bad)
    raise FairbenchError(
        f"{dataset}: {path.name} has {what} {got}, expected {want}; kept it as {bad} - "
        f"delete it and fetch again, or copy a correct file to {path}"
    )


# ---------------------------------------------------------------------------------------- fetch


def fetch(
    name: str, data_dir: Path | str | None = None, files: tuple[RemoteFile, ...] | None = None
) -> list[str]:
    """Download what `name` needs into the data folder, with checksums; returns report lines."""
    root = data_dir_from_env(data_dir)
    dataset = _open(name, root)
    if name == "celeba":
        from fairbench.data.celeba import HOW_TO_GET

        raise FairbenchError(
            f"celeba cannot be downloaded automatically (its licence needs a click-through); {HOW_TO_GET}"
        )
    if name == "cifar10s":
        return _fetch_cifar10(root)
    if name == "colored_mnist":
        return _fetch_mnist(root, files if files is not None else dataset.files)
    if not dataset.files:
        return [f"{name}: generated on the fly, nothing to fetch"]
    lines = []
    for file in files if files is not None else dataset.files:
        target = root / file.path
        if target.exists():
            lines.append(f"{name}: {target} present")
            continue
        download(file, root, name)
        lines.append(f"{name}: {target} downloaded" + (" (sha256 ok)" if file.sha256 else ""))
    return lines


def _fetch_mnist(root: Path, files: tuple[RemoteFile, ...]) -> list[str]:
    from fairbench.data.colored_mnist import MD5, SHA256

    lines = []
    for file in files:
        target = root / file.path
        if target.exists():
            lines.append(f"colored_mnist: {target} present")
            continue
        download(RemoteFile(file.path, file.url), root, "colored_mnist")
        name = Path(file.path).name
        if sha256_of(target) != SHA256.get(name) and md5_of(target) != MD5[name]:
            _reject(target, "md5", md5_of(target), MD5[name], "colored_mnist")
        lines.append(f"colored_mnist: {target} downloaded (checksum ok)")
    return lines


def _fetch_cifar10(root: Path) -> list[str]:
    from fairbench.data import cifar10s

    folder = root / cifar10s.FOLDER
    members = cifar10s.MEMBER_MD5
    if all((folder / member).exists() for member in members):
        return [f"cifar10s: {folder} present"]
    archive_path = "cifar10/cifar-10-python.tar.gz"
    archive = root / archive_path
    if not archive.exists():
        try:
            download(RemoteFile(archive_path, cifar10s.URL), root, "cifar10s", timeout=60.0)
        except FairbenchError as error:
            raise FairbenchError(f"{error}; then run 'fairbench data fetch cifar10s' to extract it") from None
        if md5_of(archive) != cifar10s.ARCHIVE_MD5:
            _reject(archive, "md5", md5_of(archive), cifar10s.ARCHIVE_MD5, "cifar10s")
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
                    _reject(part, "md5", md5_of(part), members[member], "cifar10s")
                part.replace(folder / member)
    except (tarfile.TarError, KeyError, EOFError, OSError) as error:
        raise FairbenchError(
            f"cifar10s: cannot extract {archive} ({type(error).__name__}: {error}); delete it and fetch again"
        ) from None
    return [f"cifar10s: {folder} extracted from {archive.name} (md5 ok)"]


# --------------------------------------------------------------------------------------- import


def _find(src: Path, name: str, subfolders: tuple[str, ...]) -> Path | None:
    for sub in ("", "celeba", *subfolders):
        candidate = src / sub / name
        if candidate.exists():
            return candidate
    return None


def import_celeba(
    src: Path | str, data_dir: Path | str | None = None, copy: bool = False, verify: bool = True
) -> list[str]:
    """Check a user's CelebA copy and link (or copy) it into `<data>/celeba/`.

    Accepts the official folder (img_align_celeba/ and both text files side by side), its parent,
    or the Google Drive layout (Img/, Anno/, Eval/). `verify` checks the md5 of the two text files
    and the official count of 202599 images; structure and image presence are always checked.
    """
    from fairbench.data import celeba

    src = Path(src).expanduser()
    if not src.is_dir():
        raise FairbenchError(f"celeba: {src} is not a folder; give the folder that holds {celeba.IMAGES}/")
    attr = _find(src, celeba.ATTR_FILE, ("Anno",))
    part = _find(src, celeba.PARTITION_FILE, ("Eval",))
    images = _find(src, celeba.IMAGES, ("Img",))
    missing = [n for n, p in ((celeba.ATTR_FILE, attr), (celeba.PARTITION_FILE, part)) if p is None]
    if images is None or not images.is_dir():
        zipped = _find(src, celeba.IMAGES + ".zip", ("Img",))
        if zipped is not None:
            raise FairbenchError(f"celeba: found {zipped} but no {celeba.IMAGES}/; unzip it next to it first")
        missing.append(celeba.IMAGES + "/")
    if missing:
        raise FairbenchError(f"celeba: {src} lacks {', '.join(missing)}; {celeba.HOW_TO_GET}")
    assert attr is not None and part is not None and images is not None
    frame = celeba.read_attributes(attr)
    celeba.read_partition(part, frame["image"].to_numpy())
    if verify:
        for path in (attr, part):
            got = md5_of(path)
            if got != celeba.OFFICIAL_MD5[path.name]:
                raise FairbenchError(
                    f"celeba: {path} has md5 {got}, not the official {celeba.OFFICIAL_MD5[path.name]}; "
                    f"use the original file, or pass --skip-checksums for a modified copy"
                )
        if len(frame) != celeba.OFFICIAL_COUNT:
            raise FairbenchError(
                f"celeba: {attr} lists {len(frame)} images, not {celeba.OFFICIAL_COUNT}; "
                f"pass --skip-checksums to import a subset"
            )
    sizes: dict[str, int] = {}
    with os.scandir(images) as entries:
        for entry in entries:
            try:
                sizes[entry.name] = entry.stat().st_size
            except OSError:
                continue
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
    target = data_dir_from_env(data_dir) / "celeba"
    target.mkdir(parents=True, exist_ok=True)
    lines = [f"celeba: {len(files)} images and both text files check out in {src}"]
    for source, name in ((images, celeba.IMAGES), (attr, celeba.ATTR_FILE), (part, celeba.PARTITION_FILE)):
        dst = target / name
        if dst.exists() or dst.is_symlink():
            if dst.resolve() == source.resolve():
                lines.append(f"celeba: {dst} already in place")
                continue
            raise FairbenchError(f"celeba: {dst} already exists; remove it first to import {source}")
        if copy:
            if source.is_dir():
                shutil.copytree(source, dst)
            else:
                shutil.copy2(source, dst)
            lines.append(f"celeba: copied {source} -> {dst}")
        else:
            dst.symlink_to(source.resolve(), target_is_directory=source.is_dir())
            lines.append(f"celeba: linked {dst} -> {source.resolve()}")
    lines.append("celeba: the 64x64 image cache is built on first use (all cores, a few minutes)")
    return lines


# ------------------------------------------------------------------------------------------- ls


def _celeba_status(dataset: Dataset, status: DatasetStatus) -> DatasetStatus:
    from fairbench.data import celeba

    root = dataset.root
    for name in (celeba.ATTR_FILE, celeba.PARTITION_FILE):
        if not (root / name).exists():
            status.missing.append(name)
    images = root / celeba.IMAGES
    declared = None
    if (root / celeba.ATTR_FILE).exists():
        with open(root / celeba.ATTR_FILE, "rb") as handle:
            try:
                declared = int(handle.readline().strip())
            except ValueError:
                status.notes.append(f"{celeba.ATTR_FILE} line 1 is not a count")
    if not images.is_dir():
        status.missing.append(celeba.IMAGES + "/")
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
    status.action = "" if not status.missing else celeba.HOW_TO_GET
    return status


def dataset_status(name: str, data_dir: Path | str | None = None) -> DatasetStatus:
    """Presence of one registered dataset's files and what to do about missing ones."""
    root = data_dir_from_env(data_dir)
    try:
        dataset = _open(name, root)
    except FairbenchError as error:
        return DatasetStatus(name, "?", "broken", str(root), action=str(error))
    status = DatasetStatus(name, dataset.kind, "present", str(dataset.root))
    if name == "celeba":
        return _celeba_status(dataset, status)
    if not dataset.files:
        status.state, status.location = "generated", "(generated, no files)"
        return status
    status.missing = [file.path for file in dataset.files if not (root / file.path).exists()]
    if status.missing:
        status.state = "partial" if len(status.missing) < len(dataset.files) else "missing"
        folders = {str(Path(path).parent) for path in status.missing}
        if len(status.missing) > 2 and len(folders) == 1:
            status.missing = [f"{folders.pop()}/ ({len(status.missing)} files)"]
        status.action = f"fairbench data fetch {name}"
        if name == "colored_mnist" and all("train-" in m for m in status.missing):
            status.notes.append("option source: t10k works now")
    return status


def ls(data_dir: Path | str | None = None) -> list[DatasetStatus]:
    """Status of every registered dataset (built-ins and plugins)."""
    from fairbench.registry import DATASETS

    return [dataset_status(name, data_dir) for name in DATASETS.names()]
