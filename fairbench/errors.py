"""User-facing errors: one line, no traceback, exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FairbenchError(Exception):
    """A problem with the user's input (suite, options, data folder); printed as one line."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest choice, or a list of valid names."""
    choices = sorted(set(choices))
    close = closest(name, choices)
    if close:
        return close
    if len(choices) <= 12:
        return f" (valid: {', '.join(choices)})"
    return ""


def closest(name: str, choices: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
