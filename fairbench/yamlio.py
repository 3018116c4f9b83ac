"""YAML loading that remembers where every key came from, for errors that name file and line.

A suite is small: a file past `MAX_BYTES`, nesting past `MAX_DEPTH` or more than `MAX_NODES`
values once its aliases are expanded is refused before it can exhaust memory or time (a few
hundred bytes of nested aliases expand to gigabytes). A key given twice in one mapping is an
error: YAML would keep the last silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fairbench.errors import FairbenchError

# A key path (("methods", 0, "grid", "eta1")) -> (file, line).
Lines = dict[tuple[Any, ...], tuple[str, int]]

MAX_BYTES = 1_000_000
MAX_DEPTH = 40
MAX_NODES = 100_000


def load_yaml(path: Path) -> tuple[Any, Lines]:
    """Parse `path`; return the data and the file/line of every key path in it."""
    text = _read_text(Path(path))
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: Lines = {}
        if node is not None:
            _walk(node, (), str(path), lines, [0])
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise FairbenchError(f"{where}: malformed YAML: {problem}") from None
    except RecursionError:
        raise FairbenchError(f"{path}: nested too deeply (a suite nests at most {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()
    return data, lines


def _read_text(path: Path) -> str:
    """The file's text: a regular file of at most MAX_BYTES bytes of UTF-8 without NUL bytes."""
    try:
        if not path.is_file():
            raise FairbenchError(f"{path}: not a regular file; a suite (or an include) must be a YAML file")
        if path.stat().st_size > MAX_BYTES:
            raise FairbenchError(f"{path}: {path.stat().st_size} bytes; a suite file is at most {MAX_BYTES} bytes")
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise FairbenchError(f"{path}: cannot read suite file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise FairbenchError(f"{path}: not UTF-8 text (byte {error.start}); save the suite as UTF-8") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise FairbenchError(f"{path}:{line}: a NUL byte: not a text file; save the suite as UTF-8 text")
    return text


def _walk(node: yaml.Node, path: tuple[Any, ...], file: str, lines: Lines, count: list[int]) -> None:
    """Record every key path's line; refuse nesting past MAX_DEPTH, more than MAX_NODES values
    (aliases counted each time they are used) and a key given twice in one mapping."""
    count[0] += 1
    if count[0] > MAX_NODES:
        raise FairbenchError(f"{file}: more than {MAX_NODES} values (aliases expanded); a suite is smaller than that")
    if len(path) > MAX_DEPTH:
        raise FairbenchError(f"{file}:{node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
    lines.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: the including keys win, as YAML says
                _walk(value, path, file, lines, count)
                continue
            if not isinstance(key, yaml.ScalarNode):
                raise FairbenchError(
                    f"{file}:{key.start_mark.line + 1}: a key must be a plain word, not a list or mapping"
                )
            if key.value in seen:
                raise FairbenchError(
                    f"{file}:{key.start_mark.line + 1}: key '{key.value}' appears twice in one mapping; keep one"
                )
            seen.add(key.value)
            child = (*path, key.value)
            lines[child] = (file, key.start_mark.line + 1)
            _walk(value, child, file, lines, count)
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            _walk(value, (*path, index), file, lines, count)


def locate(lines: Lines, path: tuple[Any, ...], default: str) -> str:
    """'file:line' of the deepest known prefix of `path`."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            file, line = lines[path[:end]]
            return f"{file}:{line}" if line else file
    return default
