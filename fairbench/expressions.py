"""Boolean expressions over table columns, for sensitive groups and targets.

`alter > 25 and gastarb == 1`, `not (not Male and Young)`, `sex == 'Male'`. A bare column name
means "is 1" and is only allowed on binary (0/1) columns. Parsed with Python's own grammar and
evaluated on a whitelist of node types: no names other than columns, no calls, no attributes.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Iterable

import numpy as np
import pandas as pd

from fairbench.errors import FairbenchError, closest

_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


# Longer expressions are refused before parsing: deep nesting would exhaust the parser's stack.
MAX_LENGTH = 1000


class Expression:
    """A parsed boolean expression; `columns` are the names it reads."""

    def __init__(self, text: str) -> None:
        self.text = str(text)
        if len(self.text) > MAX_LENGTH:
            raise FairbenchError(
                f"expression '{self.text[:40]}...' is {len(self.text)} characters; at most {MAX_LENGTH}"
            )
        try:
            self._tree = ast.parse(self.text, mode="eval").body
            self.columns: frozenset[str] = frozenset(self._check(self._tree))
        except SyntaxError as error:
            raise FairbenchError(f"cannot parse expression '{self.text}': {error.msg}") from None
        except (RecursionError, MemoryError):
            raise FairbenchError(f"expression '{self.text[:40]}...' is nested too deeply") from None

    def _check(self, node: ast.AST) -> Iterable[str]:
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                yield from self._check(value)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield from self._check(node.operand)
        elif isinstance(node, ast.Compare):
            if not all(type(op) in _COMPARE for op in node.ops):
                raise FairbenchError(f"expression '{self.text}': use ==, !=, <, <=, >, >= only")
            for side in [node.left, *node.comparators]:
                if isinstance(side, ast.Name):
                    yield side.id
                elif not (isinstance(side, ast.Constant) and isinstance(side.value, (int, float, str))):
                    raise FairbenchError(f"expression '{self.text}': compare columns with numbers or quoted strings")
        elif isinstance(node, ast.Name):
            yield node.id
        else:
            raise FairbenchError(f"expression '{self.text}': only column names, comparisons, and/or/not are allowed")

    def validate(self, columns: Iterable[str], where: str = "") -> None:
        """Raise if the expression reads a column that is not among `columns`."""
        columns = list(columns)
        for name in sorted(self.columns):
            if name not in columns:
                raise FairbenchError(
                    f"{where}unknown column '{name}' in '{self.text}'{closest(name, columns)}; "
                    f"the columns: {', '.join(columns)}"
                )

    @property
    def column(self) -> str | None:
        """The column's name when the expression is a bare column name, else None."""
        return self._tree.id if isinstance(self._tree, ast.Name) else None

    def atoms(self) -> list[Expression]:
        """The comparisons and bare column names the expression combines, in source order,
        without repeats: one binary attribute each (`not (not Male and Young)` -> Male, Young)."""

        def walk(node: ast.AST) -> Iterable[str]:
            if isinstance(node, ast.BoolOp):
                for value in node.values:
                    yield from walk(value)
            elif isinstance(node, ast.UnaryOp):
                yield from walk(node.operand)
            else:
                yield ast.unparse(node)

        return [Expression(text) for text in dict.fromkeys(walk(self._tree))]

    def evaluate(self, frame: pd.DataFrame) -> np.ndarray:
        """Evaluate on every row of `frame`; returns a boolean array."""
        self.validate(frame.columns)
        return np.asarray(self._eval(self._tree, frame), dtype=bool)

    def _eval(self, node: ast.AST, frame: pd.DataFrame) -> np.ndarray:
        if isinstance(node, ast.BoolOp):
            values = [self._eval(v, frame) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            result = values[0]
            for value in values[1:]:
                result = combine(result, value)
            return result
        if isinstance(node, ast.UnaryOp):
            return np.logical_not(self._eval(node.operand, frame))
        if isinstance(node, ast.Compare):
            result = np.ones(len(frame), dtype=bool)
            left = self._operand(node.left, frame)
            for op, right_node in zip(node.ops, node.comparators):
                right = self._operand(right_node, frame)
                try:
                    result &= np.asarray(_COMPARE[type(op)](left, right), dtype=bool)
                except TypeError:
                    raise FairbenchError(
                        f"expression '{self.text}': '{ast.unparse(node)}' compares numbers with text; "
                        f"compare a number column with a number and a text column with a quoted string"
                    ) from None
                left = right
            return result
        assert isinstance(node, ast.Name)
        column = frame[node.id]
        values = set(pd.unique(column.dropna()))
        if not values <= {0, 1}:
            raise FairbenchError(
                f"expression '{self.text}': column '{node.id}' is not binary; "
                f"compare it instead, e.g. '{node.id} > 25' or \"{node.id} == 'x'\""
            )
        return column.to_numpy() == 1

    @staticmethod
    def _operand(node: ast.AST, frame: pd.DataFrame):
        if isinstance(node, ast.Name):
            return frame[node.id].to_numpy()
        return node.value  # type: ignore[attr-defined]
