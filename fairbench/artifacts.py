"""Artifacts shared between jobs (a trained encoder, a sensitive classifier): keyed by a hash of
everything that determines them, built once under a file lock, reused from disk afterwards."""

from __future__ import annotations

import hashlib
import json
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
        if (final / "done").exists():
            return final, False
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            if (final / "done").exists():
                return final, False
            staging = final.with_name(final.name + ".building")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            (staging / "key.json").write_text(json.dumps(key, sort_keys=True, indent=1, default=str))
            build(staging)
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
            (final / "done").touch()
        return final, True
