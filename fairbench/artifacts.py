"""Artifacts shared between jobs (a trained encoder, a sensitive classifier): keyed by a hash of
everything that determines them, built once under a file lock, reused from disk afterwards.

An artifact's `done` marker records the sha256 of every file in it; each use checks them, and an
artifact with a missing, damaged or unrecorded file is rebuilt (one warning line naming it):
a damaged cache must never give other numbers silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
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
        return self.get_many(kind, [key], lambda missing: [build])[0]

    def get_many(
        self, kind: str, keys: Sequence[dict[str, Any]], build: Callable[[list[int]], list[Callable[[Path], None]]]
    ) -> list[tuple[Path, bool]]:
        """`get` for artifacts built together (several encoders trained as one stacked model):
        `build(missing)`, given the indices into `keys` of the artifacts not built yet (one per
        distinct key), returns one `build(folder)` for each. Holds every missing key's lock while
        it builds, so concurrent workers build each artifact once."""
        finals = [self.path(kind, key) for key in keys]
        if all(self._ready(kind, final, warn=False) for final in finals):
            return [(final, False) for final in finals]
        with contextlib.ExitStack() as locks:
            for final in sorted(set(finals)):  # one order for every worker: no deadlock
                final.parent.mkdir(parents=True, exist_ok=True)
                locks.enter_context(FileLock(str(final) + ".lock"))
            # Checked again under the locks: another worker may have built some meanwhile.
            missing: list[int] = []
            for index, final in enumerate(finals):
                if final not in finals[:index] and not self._ready(kind, final, warn=True):
                    missing.append(index)
            for index, builder in zip(missing, build(missing) if missing else [], strict=True):
                self._stage(keys[index], finals[index], builder)
        built = {finals[index] for index in missing}
        return [(final, final in built) for final in finals]

    def _ready(self, kind: str, final: Path, warn: bool) -> bool:
        if not (final / MARKER).exists():
            return False
        problem = damage(final)
        if problem is not None and warn:
            log.warning(f"artifact {kind}/{final.name} in {self.root}: {problem}; rebuilding it")
        return problem is None

    @staticmethod
    def _stage(key: dict[str, Any], final: Path, build: Callable[[Path], None]) -> None:
        """Build into a fresh staging folder, rename it into place, then write its marker."""
        staging = final.with_name(final.name + ".building")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        (staging / "key.json").write_text(json.dumps(key, sort_keys=True, indent=1, default=str))
        build(staging)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        write_marker(final)


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
