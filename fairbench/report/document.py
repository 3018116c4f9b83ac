"""What a report holds once built: sections of notes, tables and figures, and the files written.
build.py fills it; the console (cli.py) and the HTML page (html.py) render it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    console: bool = True  # long tables go to the files and the HTML page only
    html: bool = True  # a compact console copy of a long table stays off the page


@dataclass
class Figure:
    title: str
    png: bytes | None
    paths: list[Path]
    wide: bool = False  # several panels: the HTML page gives it the full width


@dataclass
class Section:
    title: str
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Report:
    folder: Path
    out: Path
    sections: list[Section] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
