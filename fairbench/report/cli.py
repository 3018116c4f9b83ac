"""`fairbench report`: figures and tables from one or more results folders (logic lives in build.py)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table as RichTable

from fairbench.errors import FairbenchError
from fairbench.report.choices import CD_TESTS, SELECTION_RULES

# Kept in sync with fairbench.store.STORE_FILE (a test checks); importing the store here would
# load pandas for every `fairbench` command.
STORE_FILE = "fairbench.sqlite"
TEXT_COLUMNS = {"Selected point", "point", "experiment", "pair", "label", "method"}


def find_results(root: Path = Path("results")) -> list[Path]:
    """Every folder under root that holds a results store."""
    return sorted(p.parent for p in root.rglob(STORE_FILE)) if root.is_dir() else []


def print_report(report, console: Console) -> None:  # report: fairbench.report.build.Report
    console.rule(f"[bold]{report.folder}")
    for section in report.sections:
        console.print(f"[bold]{section.title}")
        for note in section.notes:
            console.print(f"  {note}", highlight=False)
        for table in (t for t in section.tables if t.console):
            rich_table = RichTable(title=table.title, title_justify="left", show_lines=False)
            for i, col in enumerate(table.header):
                text = i == 0 or col in TEXT_COLUMNS  # names left, numbers right
                rich_table.add_column(col, justify="left" if text else "right", overflow="fold")
            for row in table.rows:
                rich_table.add_row(*row)
            console.print(rich_table)
    console.print(f"wrote {len(report.files)} files to {report.out}")


@click.command("report")
@click.argument("results", nargs=-1, type=click.Path(path_type=Path))
@click.option("--pareto", is_flag=True, help="Pareto-front figures and hypervolume tables.")
@click.option("--cd", is_flag=True, help="Critical-difference diagram (Friedman + post-hoc test).")
@click.option("--ablation", is_flag=True, help="The tables the methods in the results declare (e.g. an ablation).")
@click.option("--tables", is_flag=True, help="Summary tables at the selected hyperparameter point.")
@click.option("--html", "html_", is_flag=True, help="One self-contained HTML page.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder (default: report/ inside each results folder; with several "
    "results folders, one subfolder per folder).",
)
@click.option("--format", "formats", default="png", show_default=True, help="Figure formats: png,pdf,svg.")
@click.option("--pairs", default=None, help="Metric pairs x:y (default: the suite's, else dp:acc,eo:acc).")
@click.option("--cd-test", type=click.Choice(CD_TESTS), default="nemenyi", show_default=True)
@click.option(
    "--selection",
    type=click.Choice(SELECTION_RULES),
    default="best-val-acc",
    show_default=True,
    help="How the summary picks each method's hyperparameter point (validation split).",
)
@click.option("--acc-floor", type=float, default=None, help="Validation-accuracy floor for gap-floor.")
def report(
    results: tuple[Path, ...],
    pareto: bool,
    cd: bool,
    ablation: bool,
    tables: bool,
    html_: bool,
    out: Path | None,
    formats: str,
    pairs: str | None,
    cd_test: str,
    selection: str,
    acc_floor: float | None,
) -> None:
    """Figures and tables from RESULTS folders (default: every folder under ./results)."""
    # Imported here: scipy/matplotlib take seconds to load and other commands do not need them.
    from fairbench.report.build import Options, build_report, parse_formats, parse_pairs

    folders = list(results) or find_results()
    if not folders:
        raise FairbenchError(
            "no results folders given and none found under ./results; run 'fairbench run' first"
        )
    for folder in folders:
        if not (folder / STORE_FILE).exists():
            raise FairbenchError(f"{folder} is not a results folder ({STORE_FILE} not found)")
    if selection == "gap-floor" and acc_floor is None:
        raise FairbenchError("--selection gap-floor needs --acc-floor F (a validation accuracy, e.g. 0.7)")
    if acc_floor is not None and not 0 <= acc_floor <= 1:
        raise FairbenchError(f"--acc-floor must be between 0 and 1, got {acc_floor}")
    chosen = {
        n
        for n, on in (
            ("pareto", pareto),
            ("cd", cd),
            ("ablation", ablation),
            ("tables", tables),
            ("html", html_),
        )
        if on
    }
    opts = Options(
        parts=chosen or None,
        formats=parse_formats(formats),
        pairs=parse_pairs(pairs) if pairs is not None else None,
        cd_test=cd_test,
        selection=selection,
        acc_floor=acc_floor,
    )
    console = Console()
    names = [f.resolve().name for f in folders]
    for folder, name in zip(folders, names, strict=True):
        # Several folders into one --out would overwrite each other's files.
        opts.out = None if out is None else (out if len(folders) == 1 else out / name)
        print_report(build_report(folder, opts), console)
