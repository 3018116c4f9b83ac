"""Reports: Pareto fronts, critical-difference diagrams, the tables methods declare, summary tables, HTML.

Reads only the results store (fairbench.store: load_results, load_jobs, load_report_specs). Public names load
lazily so that `from fairbench.report.cli import report` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Options": "build",
    "build_report": "build",
    "declared_tables": "declared",
    "critical_difference": "cd",
    "friedman_statistic": "cd",
    "nemenyi_cd": "cd",
    "hypervolume": "pareto",
    "pareto_front": "pareto",
    "pareto_points": "pareto",
    "select_points": "tables",
    "summary_tables": "tables",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fairbench.report' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fairbench.report.{_EXPORTS[name]}"), name)
