"""Getting data into the data folder and saying what is there, for every registered dataset.

Each dataset class knows its own files (`Dataset.fetch`, `status`, `import_files`, declared
beside its loader); this module only looks names up in the registry, so a plugin dataset gets
`fairbench data fetch | import | ls` without code here. Every user-facing problem is a
one-line `FairbenchError` that says what to do next.
"""

from __future__ import annotations

import os
from pathlib import Path

from fairbench.data.base import DatasetStatus, data_dir_from_env
from fairbench.errors import FairbenchError
from fairbench.registry import DATASETS


def fetch(name: str, data_dir: Path | str | None = None) -> list[str]:
    """Download what dataset `name` needs into the data folder, with checksums; returns report lines."""
    return DATASETS.get(name).fetch(data_dir_from_env(data_dir))


def import_files(
    name: str,
    src: Path | str,
    data_dir: Path | str | None = None,
    copy: bool = False,
    verify: bool = True,
    follow_links: bool = False,
) -> list[str]:
    """Check a user's copy of dataset `name` at `src` and link (or copy) it into the data folder.
    A link inside `src` that leads out of it is refused unless `follow_links`: the import would
    read (or copy) files the user did not point at."""
    src = Path(src).expanduser()
    outside = [] if follow_links else links_out_of(src)
    if outside:
        link, target = outside[0]
        raise FairbenchError(
            f"{name}: {link} links to {target}, outside {src} ({len(outside)} such link(s)); pass --follow-links "
            f"to import through them"
        )
    return DATASETS.get(name).import_files(src, data_dir_from_env(data_dir), copy=copy, verify=verify)


def links_out_of(folder: Path) -> list[tuple[Path, Path]]:
    """(link, target) of every symbolic link under `folder` whose target lies outside it."""
    if not folder.is_dir():
        return []
    root = folder.resolve()
    found = []
    for parent, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(parent) / name
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    found.append((path, target))
    return found


def dataset_status(name: str, data_dir: Path | str | None = None) -> DatasetStatus:
    """Presence of one registered dataset's files and what to do about missing ones."""
    root = data_dir_from_env(data_dir)
    try:
        cls = DATASETS.get(name)
    except FairbenchError as error:
        return DatasetStatus(name, "?", "broken", str(root), action=str(error))
    return cls.status(root)


def ls(data_dir: Path | str | None = None) -> list[DatasetStatus]:
    """Status of every registered dataset (built-ins and plugins)."""
    return [dataset_status(name, data_dir) for name in DATASETS.names()]
