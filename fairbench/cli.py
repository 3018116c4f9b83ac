"""The `fairbench` command: click commands only; the work happens in the modules they call."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fairbench import __version__
from fairbench.errors import FairbenchError

console = Console()
err_console = Console(stderr=True)

_DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="Data folder (default: $FAIRBENCH_DATA, else ~/.cache/fairbench/data).")  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fairbench")
def cli() -> None:
    """fairbench: benchmark debiasing methods from YAML suites.

    \b
      fairbench run suites/quickstart.yaml     run a suite (resumes; --dry-run shows the plan)
      fairbench report --pareto                figures and tables from ./results
      fairbench rescore results/quickstart     recompute metrics from kept predictions
      fairbench ls methods|datasets|metrics    what is available (and suites)
      fairbench validate SUITE...              check suite files without running
      fairbench data describe DATASET ...      group sizes, base rates, dp of a perfect classifier
    """


@cli.command()
@click.argument("suite_file", type=click.Path(path_type=Path))
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results folder (default: results/<suite name>/).")  # fmt: skip
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a suite key, e.g. --set seeds=[0] --set budget=quick (repeatable).")  # fmt: skip
@click.option("--executor", type=click.Choice(["local", "ray", "slurm"]), default="local", show_default=True,
              help="local processes, tasks on a Ray cluster, or a SLURM job array (see the README).")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Parallel worker processes [default: 1]; ray: tasks at once on a local Ray instance; "
                   "slurm: array tasks at once.")  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:<i>.")
@click.option(
    "--devices",
    default=None,
    metavar="0,1,..|all",
    help="Local: run on these CUDA devices (all: every visible one), --jobs-per-device at once on each.",
)
@click.option("--jobs-per-device", type=click.IntRange(min=1), default=1, show_default=True,
              help="Jobs sharing one GPU at once (--devices; on Ray each task asks for 1/K of a GPU).")  # fmt: skip
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Torch threads per worker [default: 1; with --devices the cores divided by the workers]. Small nets run "
    "fastest on one; use --workers to use more cores.",
)
@click.option("--address", default=None, help="Ray: the cluster's address (default: start a local Ray instance).")
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True,
              help="Ray: times a job whose worker died is rerun.")  # fmt: skip
@click.option("--force", is_flag=True, help="Rerun jobs that are already done.")
@click.option("--dry-run", is_flag=True, help="Print the plan, missing data and time estimates; run nothing.")
@click.option("--stack", type=click.Choice(["auto", "on", "off"]), default=None,
              help="Train stackable sweep members as one model: auto (the suite's default) = on a GPU, "
                   "one by one on a CPU, where stacking is slower; on | off force it.")  # fmt: skip
@click.option("--no-stack", is_flag=True, help="Same as --stack off.")
@_DATA_DIR
def run(suite_file: Path, results: Path | None, overrides: tuple[str, ...], executor: str, workers: int | None,
        device: str, devices: str | None, jobs_per_device: int, threads: int | None, address: str | None,
        retries: int, force: bool, dry_run: bool, stack: str | None, no_stack: bool,
        data_dir: Path | None) -> int:  # fmt: skip
    """Run every job of SUITE_FILE not already done.

    \b
    Exit codes:
      0  every job done
      1  some jobs failed (the rest finish; tracebacks in RESULTS/logs/)
      2  bad input (suite, option, missing data): one line on stderr, nothing run
    """
    from fairbench.execution import Execution, parse_devices
    from fairbench.runner import dry_run_plan, run_suite
    from fairbench.suite import load_suite

    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise FairbenchError(f"--device '{device}': use auto, cpu, cuda or cuda:<index>")
    suite, _ = load_suite(suite_file, overrides)
    chosen = None if devices is None else parse_devices(devices)
    execution = Execution(executor, workers, device, chosen, jobs_per_device, threads,
                          address, retries, suite.execution.slurm.model_dump())  # fmt: skip
    results = results or Path("results") / suite.name
    stack = "off" if no_stack else stack
    if dry_run:
        plan = dry_run_plan(suite, results, force=force, stack=stack or suite.stack,
                            device=execution.planning_device(), data_dir=data_dir)  # fmt: skip
        for part in plan:
            console.print(part)
        return 0
    outcome = run_suite(suite, results, execution=execution, force=force, stack=stack,
                        data_dir=data_dir, console=err_console)  # fmt: skip
    return 1 if outcome["failed"] else 0


@cli.command()
@click.argument("suite_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a suite key.")
def validate(suite_files: tuple[Path, ...], overrides: tuple[str, ...]) -> int:
    """Check suite files (schema, names, parameters, columns) without running anything."""
    from fairbench.plan import expand
    from fairbench.suite import load_suite

    for path in suite_files:
        suite, _ = load_suite(path, overrides)
        console.print(f"[green]ok[/] {path}: {suite.name}, {len(expand(suite))} jobs")
    return 0


@cli.command(name="ls")
@click.argument("what", type=click.Choice(["methods", "datasets", "suites", "metrics"]))
@click.option("--suites-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("suites"),
              show_default=True, help="Where `ls suites` looks.")  # fmt: skip
def ls_(what: str, suites_dir: Path) -> int:
    """List methods (with parameters and defaults), datasets, suites, or metrics."""
    from fairbench.registry import DATASETS, METHODS

    table = Table(title=what, show_lines=what != "suites")
    if what == "methods":
        for column in ("name", "origin", "description", "parameters (defaults)"):
            table.add_column(column)
        for name in METHODS.names():
            cls = METHODS.get(name)
            params = ", ".join(f"{p}={hp.default!r}" for p, hp in cls.hparams.items())
            table.add_row(name, METHODS.origin(name), cls.description, params)
    elif what == "datasets":
        for column in ("name", "origin", "kind", "protocols", "description"):
            table.add_column(column)
        for name in DATASETS.names():
            cls = DATASETS.get(name)
            table.add_row(name, DATASETS.origin(name), cls.kind, ", ".join(cls.protocols), cls.description)
    elif what == "metrics":
        from fairbench.metrics import registered

        for column in ("name", "origin", "better", "needs"):
            table.add_column(column)
        for name, entry in sorted(registered().items()):
            needs = ", ".join(entry.needs) if entry.compute else "(reported by a method)"
            table.add_row(name, entry.origin, "higher" if entry.higher_is_better else "lower", needs)
    else:
        import yaml

        table.add_column("suite")
        table.add_column("description")
        for path in sorted(suites_dir.glob("*.yaml")):
            try:
                description = (yaml.safe_load(path.read_text()) or {}).get("description", "")
            except yaml.YAMLError:
                description = "[red](malformed YAML)"
            table.add_row(str(path), str(description))
    console.print(table)
    return 0


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@_DATA_DIR
def rescore(results: tuple[Path, ...], data_dir: Path | None) -> int:
    """Recompute every metric of every finished job in RESULTS folders from its kept predictions.

    No training: scores come from <results>/predictions/; the dataset is read only for tabular
    tasks (consistency needs their features). Method-reported rows (sens_acc) stay as they are.
    Rewrites the store's metric rows and results.parquet/csv.
    """
    from fairbench.rescore import rescore as rescore_folder
    from fairbench.store import STORE_FILE

    for folder in results:
        if not (folder / STORE_FILE).exists():
            raise FairbenchError(f"{folder} is not a results folder ({STORE_FILE} not found)")
    for folder in results:
        counts = rescore_folder(folder, data_dir)
        done = f"rescored {counts['jobs']} finished jobs ({counts['rows']} metric rows)"
        console.print(f"{folder}: {done}", soft_wrap=True)
    return 0


@cli.group()
def data() -> None:
    """Inspect and get datasets."""


@data.command()
@click.argument("dataset")
@click.option("--target", required=True, help="Target column or boolean expression.")
@click.option("--sensitive", required=True, help="Sensitive group: a boolean expression, e.g. 'alter > 25'.")
@click.option("--protocol", default=None, help="Split protocol (default: the dataset's first).")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="all", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Dataset option (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_DATA_DIR
def describe(dataset: str, target: str, sensitive: str, protocol: str | None, split: str, seed: int,
             options: tuple[str, ...], as_json: bool, data_dir: Path | None) -> int:  # fmt: skip
    """Group sizes, base rates per group and dp_perfect (the gap of a perfect classifier)."""
    import yaml

    from fairbench.data.describe import describe_task

    parsed = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise FairbenchError(f"--option '{option}': expected KEY=VALUE")
        parsed[key] = yaml.safe_load(value)
    rows = describe_task(dataset, target, sensitive, protocol, seed, data_dir, parsed, split)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"{dataset}: target '{target}', group '{sensitive}' (seed {seed})")
    for column in rows[0]:
        table.add_column(column, justify="left" if column in ("split", "protocol") else "right")
    for row in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))
    console.print(table)
    return 0


def _attach_plugins() -> None:
    from fairbench.data.commands import COMMANDS
    from fairbench.report.cli import report

    cli.add_command(report)
    for command in COMMANDS:
        data.add_command(command)


_attach_plugins()


def main() -> None:
    """Entry point: user errors print one line on stderr and exit 2, without a traceback."""
    try:
        code = cli.main(standalone_mode=False)
    except FairbenchError as error:
        err_console.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        err_console.print("interrupted; finished jobs are saved, rerun the same command to resume")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
