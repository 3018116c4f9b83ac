"""Getting official data files: resumable download, sha256 check, manual instructions offline."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fairbench.errors import FairbenchError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One official file of a dataset: where it lives in the data folder and where to get it.

    `member` names the file inside a zip archive at `url` (the sha256 is the member's).
    """

    path: str
    url: str
    sha256: str | None = None
    member: str | None = None


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return _digest(path, "sha256")


def md5_of(path: Path) -> str:
    """md5 (not for security: only to compare with the checksums other projects publish)."""
    return _digest(path, "md5")


def set_aside(path: Path, what: str, got: str, want: str, dataset: str) -> None:
    """Rename a file with a wrong checksum to `<name>.bad` (never used, never lost) and stop."""
    bad = path.with_name(path.name + ".bad")
    path.replace(bad)
    raise FairbenchError(
        f"{dataset}: {path.name} has {what} {got}, expected {want}; kept it as {bad} - "
        f"delete it and fetch again, or copy a correct file to {path}"
    )


def _fetch(url: str, target: Path, timeout: float) -> None:
    """Download `url` to `target`, resuming a partial `target.part` with an HTTP Range request."""
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        mode = "ab" if offset and response.status == 206 else "wb"
        with open(part, mode) as handle:
            shutil.copyfileobj(response, handle, _CHUNK)
    part.replace(target)


def download(file: RemoteFile, root: Path, dataset: str, timeout: float = 30.0) -> Path:
    """Put `file` under `root`, verifying its sha256; raise one clear line if that fails."""
    target = root / file.path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if file.member:
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                archive = Path(tmp) / "archive.zip"
                _fetch(file.url, archive, timeout)
                part = target.with_name(target.name + ".part")
                with zipfile.ZipFile(archive) as zipped, zipped.open(file.member) as src, open(part, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
                part.replace(target)
        else:
            _fetch(file.url, target, timeout)
    except (urllib.error.URLError, OSError, zipfile.BadZipFile) as error:
        reason = getattr(error, "reason", error)
        raise FairbenchError(
            f"{dataset}: {target} is missing and downloading {file.url} failed ({reason}); "
            f"download it by hand into {target.parent}/ or point --data-dir/FAIRBENCH_DATA at a copy"
        ) from None
    if file.sha256 and sha256_of(target) != file.sha256:
        set_aside(target, "sha256", sha256_of(target), file.sha256, dataset)
    return target


def ensure(files: tuple[RemoteFile, ...], root: Path, dataset: str, allow_download: bool = True) -> None:
    """Make sure every file exists under `root`, downloading the missing ones
    (never when $FAIRBENCH_OFFLINE is set: then say what to do instead)."""
    offline = os.environ.get("FAIRBENCH_OFFLINE", "") not in ("", "0")
    for file in files:
        if (root / file.path).exists():
            continue
        if not allow_download or offline:
            raise FairbenchError(
                f"{dataset}: {root / file.path} is missing; run 'fairbench data fetch {dataset}' "
                f"or copy it there from {file.url}"
            )
        download(file, root, dataset)
