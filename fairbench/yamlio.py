"""YAML loading that remembers where every key came from, for errors that name file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fairbench.errors import FairbenchError

# A key path (("methods", 0, "grid", "eta1")) -> (file, line).
Lines = dict[tuple[Any, ...], tuple[str, int]]


def load_yaml(path: Path) -> tuple[Any, Lines]:
    """Parse `path`; return the data and the file/line of every key path in it."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise FairbenchError(f"{path}: cannot read suite file ({error.strerror})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise FairbenchError(f"{where}: malformed YAML: {problem}") from None
    finally:
        loader.dispose()
    lines: Lines = {}
    if node is not None:
        _walk(node, (), str(path), lines)
    return data, lines


def _walk(node: yaml.Node, path: tuple[Any, ...], file: str, lines: Lines) -> None:
    lines.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            lines[child] = (file, key.start_mark.line + 1)
            _walk(value, child, file, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            _walk(value, (*path, index), file, lines)


def locate(lines: Lines, path: tuple[Any, ...], default: str) -> str:
    """'file:line' of the deepest known prefix of `path`."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            file, line = lines[path[:end]]
            return f"{file}:{line}" if line else file
    return default
