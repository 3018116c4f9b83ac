"""Artifacts shared between jobs (a trained encoder, a sensitive classifier): keyed by a hash of
everything that determines them, built once under a file lock, reused from disk afterwards.

An artifact's `done` marker records the sha256 of every file in it; each use checks them, and an
artifact with a missing, damaged or unrecorded file is rebuilt (one warning line naming it):
a damaged cache must never give other numbers silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock


def default_cache_dir() -> Path:
    """$FAIRBENCH_CACHE, else ~/.cache/fairbench/artifacts."""
    env = os.environ.get("FAIRBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fairbench" / "artifacts"


MARKER = "done"
log = logging.getLogger(__name__)


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ArtifactCache:
    """`get(kind, key, build)` returns a folder holding the artifact, building it at most once.

    `build(folder)` writes into a fresh temporary folder that is renamed into place only when it
    returns, and a `done` marker is written last, so a crash never leaves a half artifact in use.
    Concurrent workers asking for the same artifact wait on a file lock; one builds.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: dict[str, Any]) -> Path:
        """The artifact's folder. The key must hold a `version`, bumped when a fix changes what
        `build` makes, so a stale artifact is rebuilt instead of reused."""
        if "version" not in key:
            raise ValueError(f"the key of artifact '{kind}' has no 'version'; add one (e.g. 'version': 1)")
        return self.root / kind / key_hash(key)

    def get(self, kind: str, key: dict[str, Any], build: Callable[[Path], None]) -> tuple[Path, bool]:
        """Return (folder, built_now)."""
        final = self.path(kind, key)
        if (final / MARKER).exists() and damage(final) is None:
            return final, False
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            if (final / MARKER).exists():  # checked again: another worker may have rebuilt it meanwhile
                problem = damage(final)
                if problem is None:
                    return final, False
                log.warning(f"artifact {kind}/{final.name} in {self.root}: {problem}; rebuilding it")
            staging = final.with_name(final.name + ".building")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            (staging / "key.json").write_text(json.dumps(key, sort_keys=True, indent=1, default=str))
            build(staging)
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
            write_marker(final)
        return final, True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_marker(folder: Path) -> None:
    """Record every file's sha256 in the folder's marker, written last and atomically."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER)
    checksums = {str(p.relative_to(folder)): _sha256(p) for p in files}
    staging = folder / f"{MARKER}.tmp"
    staging.write_text(json.dumps({"sha256": checksums}, indent=1))
    staging.replace(folder / MARKER)


def damage(folder: Path) -> str | None:
    """What is wrong with a finished artifact (a file missing or changed, no checksums), or None."""
    try:
        checksums = json.loads((folder / MARKER).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return "its marker records no checksums (an older fairbench, or damaged)"
    if not isinstance(checksums, dict):
        return "its marker is damaged"
    for name, expected in checksums.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != expected:
            return f"{name} does not match its recorded sha256"
    return None
