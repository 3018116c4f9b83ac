"""Regenerate every figure and table the README shows, from the current code.

    FAIRBENCH_DATA=/path/to/data python docs/make_figures.py [--results DIR] [--workers N]

Runs the suites behind them (resuming in --results, so a second call only redraws), draws the
figures with `fairbench report`, copies them into docs/, rewrites the README's quickstart table
between its `<!-- quickstart-table -->` markers, and writes docs/figures/PROVENANCE.md: the
commit, the machine and the numbers the README's text quotes. Needs the real data for
grad_german (Statlog German) and grad_lambda (Adult).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console

from fairbench.execution import Execution
from fairbench.provenance import git_revision
from fairbench.report.build import Options, build_report
from fairbench.report.common import point_stats
from fairbench.runner import print_summary, run_suite
from fairbench.store import load_jobs
from fairbench.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKER = "<!-- quickstart-table -->"
SUITES = ("quickstart", "grad_german", "grad_lambda")
# README figure -> (suite, report options, the figure `fairbench report` writes)
FIGURES = {
    DOCS / "pareto_grad_german.png": (
        "grad_german",
        {"parts": {"pareto"}, "pairs": [("discrimination", "acc")]},
        "pareto_german_credit_age_25_discrimination-acc.png",
    ),
    DOCS / "figures" / "grad_lambda_adult.png": (
        "grad_lambda",
        {"parts": {"sweep"}, "sweep": ["lam"]},
        "sweep_adult_income_sex_Male_lam.png",
    ),
}


def run(name: str, results: Path, workers: int) -> pd.DataFrame:
    suite, _ = load_suite(ROOT / "suites" / f"{name}.yaml")
    outcome = run_suite(
        suite, results / name, execution=Execution(workers=workers, device="cpu"), console=Console(stderr=True)
    )
    if outcome["failed"]:
        sys.exit(f"{name}: {outcome['failed']} jobs failed; see {results / name / 'logs'}")
    return outcome["table"]


def quickstart_table(table: pd.DataFrame) -> str:
    console = Console(record=True, width=110, file=open(os.devnull, "w"))  # noqa: SIM115 (recorded, not shown)
    print_summary(table, console)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()).strip("\n")


def replace_between_markers(text: str, block: str) -> str:
    parts = text.split(MARKER)
    if len(parts) != 3:
        sys.exit(f"README.md needs exactly two {MARKER} lines around the quickstart table")
    return f"{parts[0]}{MARKER}\n```\n{block}\n```\n{MARKER}{parts[2]}"


def quoted_numbers(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The seed means the README's text quotes, as measured in this run."""
    lines = []
    stats = point_stats(tables["grad_german"], "test", ["acc", "discrimination"])
    for row in stats.itertuples():
        lines.append(f"grad_german {row.label} {row.point} {row.metric}: {row.mean:.3f} ± {row.std:.3f} (n={row.n})")
    stats = point_stats(tables["grad_lambda"], "test", ["acc", "discrimination", "consistency"])
    for row in stats.itertuples():
        lines.append(f"grad_lambda {row.label} {row.point} {row.metric}: {row.mean:.3f} ± {row.std:.3f} (n={row.n})")
    return lines


def job_revisions(results: Path) -> list[str]:
    """The git revisions the suites' jobs ran at (a rerun of this script only redraws)."""
    revisions = pd.concat([load_jobs(results / name)["git_rev"] for name in SUITES])
    return sorted(revisions.fillna("unknown").unique())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "docs")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    tables = {name: run(name, args.results, args.workers) for name in SUITES}
    for target, (name, options, drawn) in FIGURES.items():
        report = build_report(args.results / name, Options(**options))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report.out / drawn, target)
    readme = ROOT / "README.md"
    readme.write_text(replace_between_markers(readme.read_text(), quickstart_table(tables["quickstart"])))
    cpu = re.sub(r"\s+", " ", platform.processor() or platform.machine())
    torch_version = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    provenance = [
        "# Where the README's figures and tables come from",
        "",
        "Written by `python docs/make_figures.py`; rerun it after a change that moves any number.",
        "",
        f"- commit the jobs ran at: {', '.join(job_revisions(args.results))}; figures drawn at {git_revision()}",
        f"- machine: {platform.node()}, {cpu}, {os.cpu_count()} CPU cores, no GPU used",
        f"- python {platform.python_version()}, torch {torch_version}",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "- figures: " + ", ".join(str(path.relative_to(ROOT)) for path in FIGURES),
        "",
        "Test-split seed means ± std quoted by the README:",
        "",
        *[f"    {line}" for line in quoted_numbers(tables)],
        "",
    ]
    (DOCS / "figures" / "PROVENANCE.md").write_text("\n".join(provenance))


if __name__ == "__main__":
    main()
