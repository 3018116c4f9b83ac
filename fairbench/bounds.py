"""The values a declared parameter (a method's `HParam`, a dataset's `Option`) may take: its
type, its choices and its numeric bounds, checked before anything is written.

Every number must be finite; `Bound` narrows it further (`POSITIVE`, `at_least(1)`,
`between(0, 1)`). A bad value is a one-line error naming where it was given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fairbench.errors import FairbenchError


@dataclass(frozen=True)
class Bound:
    """An interval from low to high; `low_open` / `high_open` exclude that end."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"> {self.low:g}" if self.low_open else f">= {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Bound(0.0, low_open=True)
NON_NEGATIVE = Bound(0.0)
# A share that must select something: (0, 1].
SHARE = Bound(0.0, 1.0, low_open=True)
# A probability, a mixing factor: [0, 1].
FRACTION = Bound(0.0, 1.0)
# A factor that must stay below 1 (Adam's betas, a share dropped): [0, 1).
BELOW_ONE = Bound(0.0, 1.0, high_open=True)


def at_least(low: float) -> Bound:
    return Bound(low)


def between(low: float, high: float) -> Bound:
    return Bound(low, high)


POSITIVE_INT = at_least(1)


def coerce(
    default: Any, value: Any, where: str, choices: tuple[Any, ...] | None = None, bound: Bound | None = None
) -> Any:
    """`value` as the type of `default` (an int where a float is declared becomes a float; a
    list where a tuple is, a tuple), within `choices` and `bound`; else a one-line error."""
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is tuple and isinstance(value, list):
        value = tuple(value)
    if default is not None and not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FairbenchError(f"{where}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    if choices is not None and value not in choices:
        raise FairbenchError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FairbenchError(f"{where}: {value!r} is not a finite number")
    if bound is not None and isinstance(value, int | float) and not bound.admits(value):
        raise FairbenchError(f"{where}: {value!r} is out of range; it must be {bound}")
    return value
