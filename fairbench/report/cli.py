"""`fairbench report`: figures and tables from one or more results folders (logic lives in build.py)."""

from __future__ import annotations

from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table as RichTable

from fairbench.errors import FairbenchError
from fairbench.report.choices import CD_TESTS, SELECTION_RULES

# Kept in sync with fairbench.store.STORE_FILE (a test checks); importing the store here would
# load pandas for every `fairbench` command.
STORE_FILE = "fairbench.sqlite"
TEXT_COLUMNS = {"Selected point", "Point", "point", "experiment", "pair", "label", "method"}


def find_results(root: Path = Path("results")) -> list[Path]:
    """Every folder under root that holds a results store."""
    return sorted(p.parent for p in root.rglob(STORE_FILE)) if root.is_dir() else []


def print_table(console: Console, title: str, header: list[str], rows: list[list[str]]) -> None:
    """A console table, names left and numbers right, printed at its natural width (a log file or
    a narrow terminal then shows long lines rather than cells folded mid-number)."""
    table = RichTable(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 or col in TEXT_COLUMNS else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    natural = console.measure(table, options=console.options.update_width(1000)).maximum
    width, console.width = console.width, max(console.width, natural)
    try:
        console.print(table, crop=False)
    finally:
        console.width = width


def print_report(report, console: Console) -> None:  # report: fairbench.report.build.Report
    console.rule(f"[bold]{report.folder}")
    for section in report.sections:
        console.print(f"[bold]{section.title}")
        for note in section.notes:
            console.print(f"  {note}", highlight=False)
        for table in (t for t in section.tables if t.console):
            print_table(console, table.title, table.header, table.rows)
    console.print(f"wrote {len(report.files)} files to {report.out}")


@click.command("report")
@click.argument("results", nargs=-1, type=click.Path(path_type=Path))
@click.option("--pareto", is_flag=True, help="Pareto-front figures and hypervolume tables.")
@click.option("--cd", is_flag=True, help="Critical-difference diagram (Friedman + post-hoc test).")
@click.option(
    "--ablation",
    is_flag=True,
    help="The tables the methods in the results and their suite declare (an ablation, a paper table).",
)
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
    "--select",
    "selection",
    type=click.Choice(SELECTION_RULES),
    default="best-val-acc",
    show_default=True,
    help="How the summary picks each method's hyperparameter point (validation split); `all` also "
    "shows every grid point in the declared tables, which otherwise read the point their table selects.",
)
@click.option("--acc-floor", type=float, default=None, help="Validation-accuracy floor for gap-floor.")
@click.option(
    "--ci",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Bootstrap confidence intervals at this level (e.g. 0.95) in the summary tables, from the "
    "kept predictions (rows resampled within each sensitive group).",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=10),
    default=1000,
    show_default=True,
    help="Bootstrap replicates per job for --ci.",
)
@click.option("--ci-bars", is_flag=True, help="Pareto error bars show the --ci interval instead of the seed std.")
@click.option(
    "--sweep",
    "sweep",
    default=None,
    metavar="PARAM[,PARAM]",
    help="Metrics against these swept numeric parameters (default: the suite's report: sweep, else every "
    "numeric parameter with 3 or more values).",
)
@click.option(
    "--sweep-metrics",
    default=None,
    metavar="M[,M]",
    help="Metrics of the sweep figures (default: the first three of acc, discrimination, consistency, dp, eo).",
)
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
    ci: float | None,
    bootstrap: int,
    ci_bars: bool,
    sweep: str | None,
    sweep_metrics: str | None,
) -> None:
    """Figures and tables from RESULTS folders (default: every folder under ./results)."""
    # Imported here: scipy/matplotlib take seconds to load and other commands do not need them.
    from fairbench.report.build import Options, build_report, parse_formats, parse_names, parse_pairs

    folders = list(results) or find_results()
    if not folders:
        raise FairbenchError("no results folders given and none found under ./results; run 'fairbench run' first")
    for folder in folders:
        if not (folder / STORE_FILE).exists():
            raise FairbenchError(f"{folder} is not a results folder ({STORE_FILE} not found)")
    if selection == "gap-floor" and acc_floor is None:
        raise FairbenchError("--selection gap-floor needs --acc-floor F (a validation accuracy, e.g. 0.7)")
    if acc_floor is not None and not 0 <= acc_floor <= 1:
        raise FairbenchError(f"--acc-floor must be between 0 and 1, got {acc_floor}")
    if ci_bars and ci is None:
        raise FairbenchError("--ci-bars needs --ci LEVEL (e.g. --ci 0.95)")
    chosen = {
        n
        for n, on in (
            ("pareto", pareto),
            ("cd", cd),
            ("sweep", sweep is not None),
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
        ci=ci,
        bootstrap=bootstrap,
        ci_bars=ci_bars,
        sweep=parse_names(sweep, "--sweep") if sweep is not None else None,
        sweep_metrics=parse_names(sweep_metrics, "--sweep-metrics") if sweep_metrics is not None else None,
    )
    console = Console()
    names = [f.resolve().name for f in folders]
    for folder, name in zip(folders, names, strict=True):
        # Several folders into one --out would overwrite each other's files.
        opts.out = None if out is None else (out if len(folders) == 1 else out / name)
        print_report(build_report(folder, opts), console)
