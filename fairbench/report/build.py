"""Build one results folder's report: run the analyses, write files, collect sections for the
console and the HTML page. The click command in cli.py only parses options and calls this.

Everything comes from the results folder's store: the tidy results, the jobs, and what the run
recorded about its methods and suite (store.ReportSpecs: declared tables, defaults, the suite's
`report:` settings), so a folder made by an uninstalled plugin reports the same.

Files written under the output folder (default `<results>/report/`):
    pareto_<experiment>_<x>-<y>.<fmt>   one figure per experiment and metric pair
    sweep_<experiment>_<param>.<fmt>    metrics against a swept numeric parameter (report/sweep.py)
    sweep_<param>.{csv,md}              its seed means and std per parameter value
    pareto_fronts.{csv,md}              the front points (seed means and std)
    hypervolume.{csv,md}                hypervolume per experiment x pair x label, reference point
    cd_diagram.<fmt>, cd.{md,csv}       critical-difference analysis (ranks, statistics)
    <table>_<experiment>_<values>.{md,tex,csv}  the tables the methods and the suite declare
    summary.{md,tex,csv}
    report.html                         everything above in one self-contained page
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from fairbench.errors import FairbenchError, did_you_mean
from fairbench.report import cd as cd_mod
from fairbench.report import declared as declared_mod
from fairbench.report import intervals as intervals_mod
from fairbench.report import pareto as pareto_mod
from fairbench.report import sweep as sweep_mod
from fairbench.report import tables as tables_mod
from fairbench.report.choices import PARTS
from fairbench.report.common import (
    experiment_title,
    fmt_mean_std,
    fmt_num,
    markdown_table,
    metric_label,
    slug,
    untagged,
)
from fairbench.report.document import Figure, Report, Section, Table
from fairbench.report.figures import FORMATS, plot_pareto, png_bytes, save_figure
from fairbench.report.html import render_html
from fairbench.store import ReportSpecs, load_jobs, load_report_specs, load_results

DEFAULT_PAIRS = [("dp", "acc"), ("eo", "acc")]


@dataclass
class Options:
    """What to build; parts=None means everything the results support."""

    parts: set[str] | None = None
    out: Path | None = None
    formats: tuple[str, ...] = ("png",)
    pairs: list[tuple[str, str]] | None = None
    cd_test: str = "nemenyi"
    alpha: float = 0.05
    selection: str = "best-val-acc"
    acc_floor: float | None = None
    ci: float | None = None  # bootstrap interval level (e.g. 0.95) in the summary tables
    bootstrap: int = 1000  # bootstrap replicates per job
    ci_bars: bool = False  # Pareto error bars: the bootstrap interval instead of the seed std
    sweep: list[str] | None = None  # parameters to draw metrics against (default: the suite's, else every swept one)
    sweep_metrics: list[str] | None = None  # metrics of the sweep figures (default: sweep.DEFAULT_METRICS)


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """'dp:acc,eo:acc' -> [('dp', 'acc'), ('eo', 'acc')]."""
    pairs = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        parts = [p.strip() for p in item.split(":")]
        if len(parts) != 2 or not all(parts):
            raise FairbenchError(f"--pairs: {item!r} is not of the form x:y (e.g. dp:acc)")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise FairbenchError("--pairs: no metric pair given (e.g. --pairs dp:acc,eo:acc)")
    return pairs


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()))
    for fmt in formats:
        if fmt not in FORMATS:
            raise FairbenchError(f"--format: unknown figure format {fmt!r}{did_you_mean(fmt, FORMATS)}")
    if not formats:
        raise FairbenchError("--format: give at least one of png, pdf, svg")
    return formats


def parse_names(text: str, option: str) -> list[str]:
    """'lam,eta1' -> ['lam', 'eta1'] (for --sweep and --sweep-metrics)."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise FairbenchError(f"{option}: give at least one name (e.g. {option} lam)")
    return names


def _write(report: Report, name: str, text: str) -> None:
    path = report.out / name
    path.write_text(text)
    report.files.append(path)


def _write_csv(report: Report, name: str, frame: pd.DataFrame) -> None:
    path = report.out / name
    frame.to_csv(path, index=False, float_format="%.6g")
    report.files.append(path)


def _figure(report: Report, fig, stem: str, title: str, opts: Options, want_png: bool, wide: bool = False) -> Figure:
    paths = save_figure(fig, report.out / stem, opts.formats)
    report.files.extend(paths)
    data = None
    if want_png:  # reuse the PNG file when one was written: rendering twice doubles the cost
        png = [p for p in paths if p.suffix == ".png"]
        data = png[0].read_bytes() if png else png_bytes(fig)
    plt.close(fig)
    return Figure(title, data, paths, wide)


def _selection(df: pd.DataFrame, opts: Options) -> pd.DataFrame:
    try:
        return tables_mod.select_points(df, opts.selection, opts.acc_floor)
    except ValueError as exc:
        raise FairbenchError(f"--selection: {exc}") from None


def build_report(folder: Path, opts: Options) -> Report:
    """Run every requested analysis on one results folder and write its files."""
    folder = Path(folder)
    df = load_results(folder)
    if df.empty:
        raise FairbenchError(f"{folder} holds no finished jobs to report on")
    specs = load_report_specs(folder)
    parts = requested_parts(opts)
    report = Report(folder, Path(opts.out) if opts.out else folder / "report")
    report.out.mkdir(parents=True, exist_ok=True)
    want_png = "html" in parts
    metrics = set(untagged(df)["metric"])
    unrecorded = _unrecorded_note(folder, specs, df)
    intervals = _intervals(folder, df, opts, parts)
    hv_frames: list[pd.DataFrame] = []
    if parts & {"pareto", "cd"}:
        requested = opts.pairs or list(specs.pairs) or DEFAULT_PAIRS
        pairs = _metric_pairs(folder, metrics, requested, named=opts.pairs is not None)
        points = _pareto_points(df, pairs, intervals if opts.ci_bars else None)
        hv_frames = [pareto_mod.hypervolume_table(frame, x, y) for (x, y), frame in points.items()]
        if "pareto" in parts:
            section = _pareto_section(report, df, points, hv_frames, opts, want_png)
            if not pairs:
                shown = ", ".join(f"{x}:{y}" for x, y in requested)
                section.notes.append(f"no metric pair of {shown} is in the results")
            report.sections.append(section)
    if "cd" in parts:
        report.sections.append(_cd_section(report, hv_frames, opts, want_png))
    if "sweep" in parts:
        section = _sweep_section(report, df, metrics, specs, opts, want_png)
        section.notes += unrecorded  # the defaults the figures mark
        if section.figures or _named(opts, "sweep") or unrecorded:
            report.sections.append(section)
    if "ablation" in parts:
        section = _declared_section(report, df, specs, opts, unrecorded)
        if section.tables or section.notes:
            report.sections.append(section)
    if "tables" in parts:
        report.sections.append(_summary_section(report, df, intervals, opts))
    if "html" in parts:
        _write(report, "report.html", render_html(report, load_jobs(folder)))
    return report


def requested_parts(opts: Options) -> set[str]:
    """The parts to build: those named, or every part when none is (or only --html: the page with
    everything the results support)."""
    if opts.parts is None or set(opts.parts) == {"html"}:
        return set(PARTS)
    return set(opts.parts)


def _named(opts: Options, part: str) -> bool:
    """True when `part` was asked for by name (its absence from the results is then an error)."""
    return opts.parts is not None and part in opts.parts


def _unrecorded_note(folder: Path, specs: ReportSpecs, df: pd.DataFrame) -> list[str]:
    """A note naming the methods of the results whose tables and defaults the store lacks (a
    store written before fairbench recorded them), and how to record them; [] when none."""
    missing = specs.unrecorded(df["method"].dropna().unique())
    if not missing:
        return []
    return [
        f"{folder} records no report tables or defaults for {', '.join(missing)} (written before fairbench "
        f"recorded them), nor the suite's report settings: run the suite again with `fairbench run SUITE "
        f"--results {folder}` to record them (finished jobs of unchanged methods are not rerun)"
    ]


def _intervals(folder: Path, df: pd.DataFrame, opts: Options, parts: set[str]) -> pd.DataFrame | None:
    """Bootstrap intervals per point when --ci asks for them in the tables or the Pareto bars."""
    if opts.ci is None or not ("tables" in parts or (opts.ci_bars and "pareto" in parts)):
        return None
    # Error bars need every point; the tables only the selected ones (bootstrapping is the cost).
    selected = None if opts.ci_bars and "pareto" in parts else _selection(df, opts)
    return intervals_mod.point_intervals(folder, df, "test", opts.ci, opts.bootstrap, points=selected)


def _metric_pairs(folder: Path, metrics: set[str], pairs: list[tuple[str, str]], named: bool) -> list[tuple[str, str]]:
    """The `pairs` whose metrics the results hold; with `named` (--pairs), a metric they lack is
    an error."""
    usable = []
    for x, y in pairs:
        missing = [m for m in (x, y) if m not in metrics]
        if missing and named:
            raise FairbenchError(
                f"--pairs: metric {missing[0]!r} is not in {folder}{did_you_mean(missing[0], metrics)}"
            )
        if not missing:
            usable.append((x, y))
    return usable


def _pareto_points(
    df: pd.DataFrame, pairs: list[tuple[str, str]], bars: pd.DataFrame | None
) -> dict[tuple[str, str], pd.DataFrame]:
    """Each pair's points (seed mean and std, or the `bars` intervals), for the pairs that have any."""
    points = {(x, y): pareto_mod.pareto_points(df, x, y, intervals=bars) for x, y in pairs}
    return {pair: frame for pair, frame in points.items() if not frame.empty}


def _pareto_section(
    report: Report,
    df: pd.DataFrame,
    points: dict[tuple[str, str], pd.DataFrame],
    hv_frames: list[pd.DataFrame],
    opts: Options,
    want_png: bool,
) -> Section:
    """Pareto figures per experiment and metric pair, and the fronts and hypervolume files."""
    section = Section("Pareto fronts")
    level = opts.ci if opts.ci_bars else None
    for (x, y), frame in points.items():
        for exp, sub in frame.groupby("experiment", sort=True):
            name = f"{experiment_title(df, exp)}: {metric_label(y)} vs {metric_label(x)}"
            fig = plot_pareto(sub, x, y, title=f"{name} (test)", level=level)
            stem = f"pareto_{slug(exp)}_{slug(x)}-{slug(y)}"
            section.figures.append(_figure(report, fig, stem, name, opts, want_png))
    if points:
        fronts = [pareto_mod.front_table(frame).assign(pair=f"{x}-{y}") for (x, y), frame in points.items()]
        section.tables += _front_tables(
            report, pd.concat(fronts, ignore_index=True), pd.concat(hv_frames, ignore_index=True)
        )
    return section


def _front_tables(report: Report, fronts: pd.DataFrame, hv_all: pd.DataFrame) -> list[Table]:
    """Write the front points and the hypervolumes (csv, md); their tables for the page."""
    cols = ["experiment", "pair", "label", "point", "x", "x_std", "y", "y_std", "n"]
    _write_csv(report, "pareto_fronts.csv", fronts[cols])
    front_rows = [
        [
            r.experiment,
            r.pair,
            r.label,
            r.point,
            fmt_num(r.x),
            fmt_num(r.x_std),
            fmt_num(r.y),
            fmt_num(r.y_std),
            str(r.n),
        ]
        for r in fronts[cols].itertuples()
    ]
    _write(report, "pareto_fronts.md", markdown_table(cols, front_rows))
    _write_csv(report, "hypervolume.csv", hv_all)
    hv_header = ["experiment", "pair", "label", "hypervolume", "front/points", "reference (x, y)"]
    hv_rows = [
        [
            r.experiment,
            r.pair,
            r.label,
            f"{r.hypervolume:.5f}",
            f"{r.n_front}/{r.n_points}",
            f"({r.ref_x:.4f}, {r.ref_y:.4f})",
        ]
        for r in hv_all.itertuples()
    ]
    _write(report, "hypervolume.md", markdown_table(hv_header, hv_rows))
    return [
        Table(
            "Hypervolume (reference: the experiment's worst gap and accuracy, pushed out by 10% of their range)",
            hv_header,
            hv_rows,
        ),
        Table("Front points (seed mean and std)", cols, front_rows, console=False),
    ]


def _declared_section(
    report: Report, df: pd.DataFrame, specs: ReportSpecs, opts: Options, unrecorded: list[str]
) -> Section:
    """The tables the methods in the results and the suite declare, as the run recorded them
    (`unrecorded`: the note on methods it recorded nothing for)."""
    section = Section("Declared tables: the methods' and the suite's", notes=list(unrecorded))
    tables = declared_mod.declared_tables(
        df, specs.method_tables, specs.tables, specs.labels, every_point=opts.selection == "all"
    )
    if not tables and _named(opts, "ablation"):
        if unrecorded:
            raise FairbenchError(f"--ablation: {unrecorded[0]}")
        declared = declared_mod.declared_specs(df, specs.method_tables) + list(specs.tables)
        wanted = ", ".join(f"{s.split}-split '{'/'.join(s.metric_names)}'" for s in declared) or "nothing"
        raise FairbenchError(
            f"--ablation: {report.folder} has no rows for the tables its methods and suite declare (they "
            f"read: {wanted}); run a suite whose methods report them (see `fairbench ls methods`) "
            f"or drop --ablation"
        )
    for t in tables:
        _write(report, t.stem + ".md", t.markdown())
        _write(report, t.stem + ".tex", t.latex())
        _write_csv(report, t.stem + ".csv", t.csv_frame())
        section.tables.append(Table(t.caption, t.header, t.text_rows()))
    return section


def _summary_section(report: Report, df: pd.DataFrame, intervals: pd.DataFrame | None, opts: Options) -> Section:
    """The summary tables at the selected hyperparameter points (files, page, compact console copy)."""
    _selection(df, opts)  # a bad rule fails here with the option's name
    summaries = tables_mod.summary_tables(df, opts.selection, opts.acc_floor, intervals, opts.ci)
    section = Section("Summary")
    _write(report, "summary.md", "\n".join(t.markdown() for t in summaries))
    _write(report, "summary.tex", "\n".join(t.latex() for t in summaries))
    _write_csv(report, "summary.csv", tables_mod.summary_csv(summaries))
    for t in summaries:
        section.tables.append(Table(t.caption, t.header, t.text_rows(), console=False))
        compact = [m for m in tables_mod.CONSOLE_METRICS if m in t.metrics]
        section.tables.append(Table(t.caption, t.header_for(compact), t.text_rows(compact), html=False))
    rankings = tables_mod.rankings(summaries)
    if rankings:
        _write(
            report,
            "ranking.md",
            "\n\n".join(f"**{r.caption}**\n\n" + markdown_table(r.header, r.text_rows()) for r in rankings),
        )
        section.tables += [Table(r.caption, r.header, r.text_rows(), console=False) for r in rankings]
    return section


def _sweep_section(
    report: Report, df: pd.DataFrame, metrics: set[str], specs: ReportSpecs, opts: Options, want_png: bool
) -> Section:
    """Metrics against each swept parameter: --sweep, else the suite's `report: {sweep: [...]}`,
    else every numeric parameter with at least sweep.MIN_VALUES values."""
    section = Section("Parameter sweeps")
    params: Sequence[str] = opts.sweep or specs.sweep or sweep_mod.swept_params(df)
    source = "--sweep" if opts.sweep else "the suite's report: sweep"
    wanted = opts.sweep_metrics or list(specs.sweep_metrics) or None
    names = sweep_mod.sweep_metrics(metrics, wanted)
    for name in names:
        if name not in metrics:
            raise FairbenchError(f"sweep metrics: {name!r} is not in {report.folder}{did_you_mean(name, metrics)}")
    known = [c.removeprefix("param_") for c in df.columns if c.startswith("param_")]
    if not params:
        section.notes.append("no numeric parameter takes three or more values; nothing to sweep")
    for param in params:
        if param not in known:
            raise FairbenchError(f"{source}: no parameter {param!r} in {report.folder}{did_you_mean(param, known)}")
        stats = sweep_mod.sweep_stats(df, param, names)
        if stats.empty:
            if opts.sweep:
                raise FairbenchError(
                    f"--sweep: {param!r} takes fewer than two numeric values in every label of {report.folder}"
                )
            continue
        _write_csv(report, f"sweep_{slug(param)}.csv", stats)
        header = ["experiment", "series", param, *names]
        rows = []
        for (exp, series, x), sub in stats.groupby(["experiment", "series", "x"], sort=True):
            cell = {r.metric: fmt_mean_std(r.mean, r.std, r.n) for r in sub.itertuples()}
            rows.append([exp, series, f"{x:g}", *[cell.get(m, "-") for m in names]])
        _write(report, f"sweep_{slug(param)}.md", markdown_table(header, rows))
        section.tables.append(Table(f"{', '.join(names)} against {param} (test, seed mean ± std)", header, rows))
        for exp, sub in stats.groupby("experiment", sort=True):
            name = f"{experiment_title(df, exp)}: metrics against {param}"
            fig = sweep_mod.plot_sweep(sub, param, names, specs.defaults, title=f"{name} (test)")
            stem = f"sweep_{slug(exp)}_{slug(param)}"
            section.figures.append(_figure(report, fig, stem, name, opts, want_png, wide=True))
    return section


def _cd_section(report: Report, hv_frames: list[pd.DataFrame], opts: Options, want_png: bool) -> Section:
    section = Section("Critical-difference diagram")
    if not hv_frames:
        section.notes.append("Critical-difference diagram skipped: no hypervolumes (no usable metric pair)")
        return section
    hv = pd.concat(hv_frames, ignore_index=True)
    scores = hv.pivot_table(index=["experiment", "pair"], columns="label", values="hypervolume", aggfunc="first")
    result = cd_mod.critical_difference(scores, test=opts.cd_test, alpha=opts.alpha)
    section.notes.append(result.summary())
    lines = [f"# Critical-difference analysis ({result.test})", "", result.summary(), ""]
    if not result.skipped:
        header = ["rank", "method", "average rank"]
        rows = [[str(i + 1), str(m), f"{r:.3f}"] for i, (m, r) in enumerate(result.avg_ranks.items())]
        section.tables.append(Table("Average ranks by hypervolume (1 = best)", header, rows))
        lines.append(markdown_table(header, rows))
        _write_csv(report, "cd.csv", result.avg_ranks.rename("average_rank").rename_axis("label").reset_index())
        fig = cd_mod.plot_cd(result)
        section.figures.append(_figure(report, fig, "cd_diagram", "Critical-difference diagram", opts, want_png))
    stats = {
        "test": result.test,
        "alpha": result.alpha,
        "n_blocks": result.n_blocks,
        "methods": result.methods,
        "chi2": result.chi2,
        "p_value": result.p_value,
        "ff": result.ff,
        "ff_p_value": result.ff_p_value,
        "cd": result.cd,
        "skipped": result.skipped,
    }
    lines += ["", "```json", json.dumps(stats, indent=1, default=str), "```", ""]
    _write(report, "cd.md", "\n".join(lines))
    return section
