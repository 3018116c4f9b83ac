"""Placing a user's checked copy of a dataset into the data folder (`fairbench data import`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fairbench.errors import FairbenchError


def file_sizes(folder: Path) -> dict[str, int]:
    """Byte size of every file in `folder` (one directory scan; dangling links left out)."""
    sizes: dict[str, int] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                sizes[entry.name] = entry.stat().st_size
            except OSError:
                continue
    return sizes


def place(items: list[tuple[Path, str]], target: Path, copy: bool, dataset: str) -> list[str]:
    """Link (or copy) each (source, name) to `target/name`; one report line each. An existing
    entry pointing elsewhere is an error, never overwritten."""
    target.mkdir(parents=True, exist_ok=True)
    lines = []
    for source, name in items:
        dst = target / name
        if dst.exists() or dst.is_symlink():
            if dst.resolve() == source.resolve():
                lines.append(f"{dataset}: {dst} already in place")
                continue
            raise FairbenchError(f"{dataset}: {dst} already exists; remove it first to import {source}")
        if copy:
            if source.is_dir():
                shutil.copytree(source, dst)
            else:
                shutil.copy2(source, dst)
            lines.append(f"{dataset}: copied {source} -> {dst}")
        else:
            dst.symlink_to(source.resolve(), target_is_directory=source.is_dir())
            lines.append(f"{dataset}: linked {dst} -> {source.resolve()}")
    return lines
