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

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data folder (default: $FAIRBENCH_DATA, else ~/.cache/fairbench/data).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fairbench")
def cli() -> None:
    """fairbench: benchmark debiasing methods from YAML suites.

    \b
      fairbench run suites/quickstart.yaml     run a suite (resumes; --dry-run shows the plan)
      fairbench report --pareto                figures and tables from ./results
      fairbench rescore results/quickstart     recompute metrics from kept predictions
      fairbench postprocess RESULTS --rule dp  threshold variants of finished jobs (no training)
      fairbench ls methods|datasets|metrics    what is available (and suites, executors)
      fairbench validate SUITE...              check suite files without running
      fairbench status RESULTS                 done / failed / pending jobs, failures, who runs it
      fairbench compare RESULTS_A RESULTS_B    B - A per shared point and metric, with intervals
      fairbench data describe DATASET ...      group sizes, base rates, dp of a perfect classifier
    """


@cli.command()
@click.argument("suite_file", type=click.Path(path_type=Path))
@click.option(
    "--results",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Results folder (default: results/<suite name>/).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a suite key, e.g. --set seeds=[0] --set budget=quick (repeatable).",
)
@click.option(
    "--executor",
    default="local",
    show_default=True,
    metavar="local|ray|slurm|...",
    help="local processes, tasks on a Ray cluster, a SLURM job array, or a plugin's "
    "(fairbench ls executors; see the README).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Parallel worker processes [default: 1]; ray: tasks at once on a local Ray instance; "
    "slurm: array tasks at once.",
)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:<i>.")
@click.option(
    "--devices",
    default=None,
    metavar="0,1,..|all",
    help="Local: run on these CUDA devices (all: every visible one), --jobs-per-device at once on each.",
)
@click.option(
    "--jobs-per-device",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Jobs sharing one GPU at once (--devices; on Ray each task asks for 1/K of a GPU).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Torch threads per worker [default: 1; with --devices the cores divided by the workers]. Small nets run "
    "fastest on one; use --workers to use more cores.",
)
@click.option("--address", default=None, help="Ray: the cluster's address (default: start a local Ray instance).")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Ray: times a job whose worker died is rerun.",
)
@click.option("--force", is_flag=True, help="Rerun jobs that are already done.")
@click.option("--dry-run", is_flag=True, help="Print the plan, missing data and time estimates; run nothing.")
@click.option(
    "--rates",
    "rates_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="--dry-run: price jobs the results folder has no history of with these benchmark rates "
    "(bench/bench_gpu.py --save-rates; default $FAIRBENCH_RATES, else rates.json in the cache folder, if present).",
)
@click.option(
    "--stack",
    type=click.Choice(["auto", "on", "off"]),
    default=None,
    help="Train the seeds and grid points of a small network (and the VAE encoders of a latent method's seeds "
    "and FFVAE's alpha x gamma grid, and DVGE's eta grid) as one batched model: "
    "auto (the suite's default) = on a GPU, one by one on a CPU, where each job keeps bit-identical numbers; "
    "on | off force it.",
)
@click.option("--no-stack", is_flag=True, help="Same as --stack off.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "tf32", "bf16"]),
    default=None,
    help="Training arithmetic (the suite's `precision:`, default fp32): tf32 matmuls on CUDA, or bf16 "
    "autocast with fp32 weights. Part of each job's id.",
)
@click.option(
    "--compile/--no-compile",
    "compile_steps",
    default=None,
    help="Compile the training steps (the engine's step on a method's loss, alone or stacked; DVGE's d and g; "
    "the VAE encoders) with torch.compile, as CUDA graphs on a GPU (the suite's `compile:`, default off). "
    "Needs torch >= 2.9. Not part of a job's id.",
)
@_DATA_DIR
def run(
    suite_file: Path,
    results: Path | None,
    overrides: tuple[str, ...],
    executor: str,
    workers: int | None,
    device: str,
    devices: str | None,
    jobs_per_device: int,
    threads: int | None,
    address: str | None,
    retries: int,
    force: bool,
    dry_run: bool,
    rates_file: Path | None,
    stack: str | None,
    no_stack: bool,
    precision: str | None,
    compile_steps: bool | None,
    data_dir: Path | None,
) -> int:
    """Run every job of SUITE_FILE not already done.

    \b
    Exit codes:
      0  every job done
      1  some jobs failed (the rest finish; tracebacks in RESULTS/logs/)
      2  bad input (suite, option, missing data): one line on stderr, nothing run
    """
    from fairbench.execution import Execution
    from fairbench.execution.devices import parse_devices
    from fairbench.runner import auto_device, dry_run_plan, run_suite
    from fairbench.suite import load_suite

    settings = [*([f"precision={precision}"] if precision else [])]
    settings += [f"compile={str(compile_steps).lower()}"] if compile_steps is not None else []
    suite, _ = load_suite(suite_file, (*overrides, *settings))
    chosen = None if devices is None else parse_devices(devices)
    execution = Execution(
        executor,
        workers,
        device,
        chosen,
        jobs_per_device,
        threads,
        address,
        retries,
        suite.execution.slurm.model_dump(),
    )
    execution = auto_device(suite, execution)
    results = results or Path("results") / suite.name
    stack = "off" if no_stack else stack
    if rates_file and not dry_run:
        raise FairbenchError("--rates prices the plan of a --dry-run; add --dry-run (a run times its own jobs)")
    if dry_run:
        from fairbench.execution.estimates import default_rates_path, load_rates

        rates_path = rates_file or default_rates_path()
        plan = dry_run_plan(
            suite,
            results,
            force=force,
            stack=stack or suite.stack,
            device=execution.planning_device(),
            data_dir=data_dir,
            rates=load_rates(rates_path) if rates_file or rates_path.exists() else None,
        )
        for part in plan:
            console.print(part)
        return 0
    outcome = run_suite(
        suite, results, execution=execution, force=force, stack=stack, data_dir=data_dir, console=err_console
    )
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
@click.argument("what", type=click.Choice(["methods", "datasets", "suites", "metrics", "executors"]))
@click.argument("name", required=False)
@click.option(
    "--suites-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("suites"),
    show_default=True,
    help="Where `ls suites` looks.",
)
def ls_(what: str, name: str | None, suites_dir: Path) -> int:
    """List methods (with parameters and defaults), datasets, suites, metrics, or executors.

    `ls methods NAME` documents one method: its paper, every parameter with type, default, where
    the default comes from and help, its budgets, selection rules and report tables.
    """
    from fairbench.registry import DATASETS, EXECUTORS, METHODS

    if name is not None:
        if what != "methods":
            raise FairbenchError(f"ls {what} takes no NAME; only `ls methods NAME` documents one entry")
        from rich.markdown import Markdown

        from fairbench.methods.describe import method_markdown

        text = method_markdown(name)
        if console.is_terminal:
            console.print(Markdown(text))
        else:  # piped or logged: the Markdown itself
            click.echo(text)
        return 0
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
    elif what == "executors":
        for column in ("name", "origin", "description"):
            table.add_column(column)
        for name in EXECUTORS.names():
            table.add_row(name, EXECUTORS.origin(name), EXECUTORS.get(name).description)
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


@cli.command()
@click.argument("results", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--rule",
    type=click.Choice(["dp", "eo"]),
    required=True,
    help="dp: equal selection rates; eo: equal true-positive rates (per group, on validation).",
)
@click.option(
    "--with",
    "chosen",
    type=click.Choice(["threshold_optimizer", "group_threshold"]),
    multiple=True,
    help="Post-processor (repeatable) [default: both]: fairlearn's ThresholdOptimizer, or a plain "
    "per-group threshold search.",
)
@_DATA_DIR
def postprocess(results: Path, rule: str, chosen: tuple[str, ...], data_dir: Path | None) -> int:
    """Add a fairness-constrained variant of every finished job in RESULTS, without retraining.

    Each variant is fitted on the job's kept validation scores, applied to its test scores, and
    stored as a job labelled '<label> + ThresholdOpt (dp)' (or GroupThreshold) whose info names
    the job it came from; reports show it like any job. Running it again refits the variants.
    """
    from fairbench.postprocess import POSTPROCESSORS
    from fairbench.postprocess import postprocess as postprocess_folder

    counts = postprocess_folder(results, rule, chosen or tuple(POSTPROCESSORS), data_dir)
    console.print(
        f"{results}: {counts['variants']} post-processed variants of {counts['sources']} finished jobs (rule {rule})",
        soft_wrap=True,
    )
    for label, job_id, reason in counts["skipped"]:
        console.print(f"skipped {label} ({job_id}): {reason}", soft_wrap=True, highlight=False)
    return 0


@cli.command()
@click.argument("results", type=click.Path(file_okay=False, path_type=Path))
def status(results: Path) -> int:
    """Where the run in RESULTS stands: done / failed / running / pending jobs per label, the
    failures' first error lines, who holds the folder, durations and git revisions."""
    from fairbench.status import LOG_INDEX, folder_status

    state = folder_status(results)
    jobs = state.jobs
    if jobs.empty:
        console.print(f"{results}: no jobs recorded or planned")
        return 0
    counts = jobs["state"].value_counts()
    summary = ", ".join(
        f"{counts[name]} {name}" for name in ("done", "failed", "running", "interrupted", "pending") if name in counts
    )
    console.print(f"[bold]{results}[/]: {len(jobs)} jobs: {summary}", soft_wrap=True, highlight=False)
    running = jobs[jobs["state"] == "running"]
    described = [f"{row.label} {row.point} seed={row.seed}" for row in running.itertuples()]
    holder = f"held by {state.holder}" if state.holder else "free (no run in progress)"
    doing = f"; running {', '.join(described)}" if described else ""
    console.print(f"lock: {holder}{doing}", soft_wrap=True, highlight=False)
    table = Table(title="jobs per label (durations of the finished ones)")
    counted = state.counts()
    for column in counted.columns:
        text = column in ("label", "method")
        table.add_column(str(column), justify="left" if text else "right", no_wrap=text)
    for row in counted.itertuples(index=False):
        table.add_row(*(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    failed = jobs[jobs["state"] == "failed"]
    if len(failed):
        console.print(f"[red]failed[/] (first error line; the log index is {results / 'logs' / LOG_INDEX}):")
    for row in failed.itertuples():
        first = (row.error.strip().splitlines() or ["(no error recorded)"])[0]
        console.print(
            f"  {row.label} {row.point} seed={row.seed} {row.experiment}: {escape(first)} (logs/{row.job_id}.log)",
            soft_wrap=True,
            highlight=False,
        )
    revisions = jobs[jobs["git_rev"] != ""]["git_rev"].value_counts()
    if len(revisions):
        listed = ", ".join(f"{rev} ({n} jobs)" for rev, n in revisions.items())
        console.print(f"git revisions: {listed}", soft_wrap=True, highlight=False)
    return 0


@cli.command()
@click.argument("results_a", type=click.Path(file_okay=False, path_type=Path))
@click.argument("results_b", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option(
    "--labels",
    default=None,
    metavar="A,B",
    help="Compare label B with label A (e.g. a new method with a baseline) in RESULTS_A.",
)
@click.option("--metrics", "names", default=None, metavar="M,...", help="Metrics to compare [default: the summary's].")
@click.option("--split", type=click.Choice(["val", "test"]), default="test", show_default=True)
@click.option(
    "--ci",
    "level",
    type=click.FloatRange(0.5, 0.999),
    default=0.95,
    show_default=True,
    help="Level of the bootstrap interval of B - A.",
)
@click.option(
    "--bootstrap", "reps", type=click.IntRange(min=100), default=500, show_default=True, help="Bootstrap replicates."
)
def compare(
    results_a: Path, results_b: Path | None, labels: str | None, names: str | None, split: str, level: float, reps: int
) -> int:
    """Compare RESULTS_B with RESULTS_A (e.g. after a code change, or a new method against a baseline).

    Per shared experiment x label x grid point x metric: both means over the paired seeds, B - A,
    and a paired bootstrap interval of B - A (seeds and rows resampled); then one verdict line per
    metric, and which paired jobs ran different code.
    """
    from fairbench.compare import compare as compare_folders
    from fairbench.compare import metric_verdicts
    from fairbench.report.common import fmt_num
    from fairbench.report.tables import CONSOLE_METRICS

    pair = None
    if labels is not None:
        pair = tuple(labels.split(","))
        if len(pair) != 2 or not all(pair):
            raise FairbenchError(f"--labels '{labels}': give two labels, A,B (B is compared with A)")
    elif results_b is None:
        raise FairbenchError("compare: give two results folders, or --labels A,B to compare two labels")
    results_b = results_b or results_a
    chosen = names.split(",") if names else CONSOLE_METRICS
    result = compare_folders(results_a, results_b, split, chosen, level, reps, labels=pair)
    sides = f"B = {results_b} against A = {results_a}" if results_b != results_a else f"{results_a}"
    table = Table(title=f"{sides} ({split} split, {level:.0%} paired bootstrap)")
    for column in ("experiment", "label", "point", "metric", "A", "B", "B - A", "interval", "seeds", "verdict"):
        table.add_column(column, justify="left" if column in ("experiment", "label", "point", "metric") else "right")
    for row in result.rows.itertuples():
        interval = f"[{fmt_num(row.ci_low)}, {fmt_num(row.ci_high)}]"
        table.add_row(
            row.experiment,
            row.label,
            row.point,
            row.metric,
            fmt_num(row.mean_a),
            fmt_num(row.mean_b),
            fmt_num(row.diff),
            interval,
            str(row.seeds),
            row.verdict,
        )
    console.print(table)
    for line in metric_verdicts(result.rows):
        console.print(line, soft_wrap=True, highlight=False)
    for row in result.revisions.itertuples():
        same = "same code revision" if row.git_a == row.git_b else "different code revisions"
        console.print(
            f"{row.jobs} of {result.pairs} paired jobs: A at {row.git_a}, B at {row.git_b} ({same})",
            soft_wrap=True,
            highlight=False,
        )
    if result.changed_ids:
        console.print(
            f"{result.changed_ids} of {result.pairs} paired jobs have different ids: a method's or "
            "dataset's version, the precision or the store format changed between the runs",
            soft_wrap=True,
            highlight=False,
        )
    return 0


@cli.group()
def data() -> None:
    """Inspect and get datasets."""


@data.command()
@click.argument("dataset")
@click.option("--target", default=None, help="Target column or boolean expression.")
@click.option("--sensitive", default=None, help="Sensitive group: a boolean expression, e.g. 'alter > 25'.")
@click.option(
    "--columns",
    "list_columns",
    is_flag=True,
    help="List the columns usable in --target / --sensitive, with types and example values.",
)
@click.option("--protocol", default=None, help="Split protocol (default: the dataset's first).")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="all", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Dataset option (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_DATA_DIR
def describe(
    dataset: str,
    target: str | None,
    sensitive: str | None,
    list_columns: bool,
    protocol: str | None,
    split: str,
    seed: int,
    options: tuple[str, ...],
    as_json: bool,
    data_dir: Path | None,
) -> int:
    """Group sizes, base rates per group and dp_perfect (the gap of a perfect classifier), or
    with --columns the dataset's columns."""
    import yaml

    from fairbench.data.describe import describe_columns, describe_task

    parsed = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise FairbenchError(f"--option '{option}': expected KEY=VALUE")
        parsed[key] = yaml.safe_load(value)
    if list_columns:
        rows = describe_columns(dataset, data_dir, parsed, seed)
        title = f"{dataset}: columns (for targets, sensitive groups and bias)"
    elif target is None or sensitive is None:
        raise FairbenchError("data describe: give --target and --sensitive, or --columns to list the columns")
    else:
        rows = describe_task(dataset, target, sensitive, protocol, seed, data_dir, parsed, split)
        title = f"{dataset}: target '{target}', group '{sensitive}' (seed {seed})"
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return 0
    table = Table(title=title)
    for column in rows[0]:
        text = column in ("split", "protocol", "column", "type", "examples")
        table.add_column(column, justify="left" if text else "right")
    for row in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else escape(str(v)) for v in row.values()))
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
        for line in str(error).splitlines():  # several problems found at once: one line each
            err_console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        err_console.print("interrupted; finished jobs are saved, rerun the same command to resume")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
