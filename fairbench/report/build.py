"""Build one results folder's report: run the analyses, write files, collect sections for the
console and the HTML page. The click command in cli.py only parses options and calls this.

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
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import yaml

from fairbench.errors import FairbenchError, did_you_mean
from fairbench.report import cd as cd_mod
from fairbench.report import declared as declared_mod
from fairbench.report import intervals as intervals_mod
from fairbench.report import pareto as pareto_mod
from fairbench.report import sweep as sweep_mod
from fairbench.report import tables as tables_mod
from fairbench.report.choices import PARTS
from fairbench.report.common import fmt_mean_std, fmt_num, markdown_table, slug, untagged
from fairbench.report.figures import FORMATS, plot_pareto, png_bytes, save_figure
from fairbench.report.spec import ReportTable, table_from_mapping
from fairbench.store import load_jobs, load_results

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


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    console: bool = True  # long tables go to the files and the HTML page only
    html: bool = True  # a compact console copy of a long table stays off the page


@dataclass
class Figure:
    title: str
    png: bytes | None
    paths: list[Path]


@dataclass
class Section:
    title: str
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Report:
    folder: Path
    out: Path
    sections: list[Section] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


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


def _suite_spec(folder: Path) -> dict:
    """The results folder's suite.yaml as written by the run ({} when absent or unreadable)."""
    path = folder / "suite.yaml"
    try:
        spec = yaml.safe_load(path.read_text()) if path.exists() else None
    except yaml.YAMLError:
        return {}
    return spec if isinstance(spec, dict) else {}


def suite_report(folder: Path, key: str, convert):
    """`convert` of the suite's own `report: {<key>: ...}`, or None when its suite.yaml lacks it."""
    try:
        value = _suite_spec(folder).get("report", {}).get(key)
        return convert(value) if value else None
    except (AttributeError, TypeError, ValueError):
        return None  # a malformed optional key must not stop the report; defaults apply


def suite_pairs(folder: Path) -> list[tuple[str, str]] | None:
    """The suite's own `report: {pareto: [[dp, acc], ...]}`, when its suite.yaml has one."""
    return suite_report(folder, "pareto", lambda pairs: [(str(a), str(b)) for a, b in pairs])


def suite_labels(folder: Path) -> list[str]:
    """The suite's method labels in its order (a method's name where it has no label)."""
    methods = _suite_spec(folder).get("methods", [])
    entries = methods if isinstance(methods, list) else []
    return [str(m.get("label") or m.get("method")) for m in entries if isinstance(m, dict)]


def suite_tables(folder: Path) -> list[ReportTable]:
    """The tables the suite declares under `report: {tables: [...]}` (checked when the suite was
    loaded; entries that no longer parse are left out)."""
    out = []
    for entry in suite_report(folder, "tables", lambda entries: list(entries)) or []:
        try:
            out.append(table_from_mapping(entry))
        except (ValueError, TypeError):
            continue
    return out


def _write(report: Report, name: str, text: str) -> None:
    path = report.out / name
    path.write_text(text)
    report.files.append(path)


def _write_csv(report: Report, name: str, frame: pd.DataFrame) -> None:
    path = report.out / name
    frame.to_csv(path, index=False, float_format="%.6g")
    report.files.append(path)


def _figure(report: Report, fig, stem: str, title: str, opts: Options, want_png: bool) -> Figure:
    paths = save_figure(fig, report.out / stem, opts.formats)
    report.files.extend(paths)
    data = None
    if want_png:  # reuse the PNG file when one was written: rendering twice doubles the cost
        png = [p for p in paths if p.suffix == ".png"]
        data = png[0].read_bytes() if png else png_bytes(fig)
    plt.close(fig)
    return Figure(title, data, paths)


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
    explicit = opts.parts is not None
    parts = set(PARTS) if opts.parts is None else set(opts.parts)
    if "html" in parts and explicit and parts == {"html"}:
        parts = set(PARTS)  # --html alone: the page with everything the results support
    report = Report(folder, Path(opts.out) if opts.out else folder / "report")
    report.out.mkdir(parents=True, exist_ok=True)
    want_png = "html" in parts
    metrics = set(untagged(df)["metric"])
    intervals = None
    if opts.ci is not None and ("tables" in parts or (opts.ci_bars and "pareto" in parts)):
        # Error bars need every point; the tables only the selected ones (bootstrapping is the cost).
        selected = None if opts.ci_bars and "pareto" in parts else _selection(df, opts)
        intervals = intervals_mod.point_intervals(folder, df, "test", opts.ci, opts.bootstrap, points=selected)

    hv_frames: list[pd.DataFrame] = []
    if parts & {"pareto", "cd"}:
        pairs = opts.pairs or suite_pairs(folder) or DEFAULT_PAIRS
        usable = []
        for x, y in pairs:
            missing = [m for m in (x, y) if m not in metrics]
            if missing and opts.pairs:
                raise FairbenchError(
                    f"--pairs: metric {missing[0]!r} is not in {folder}{did_you_mean(missing[0], metrics)}"
                )
            if not missing:
                usable.append((x, y))
        section = Section("Pareto fronts")
        if not usable:
            section.notes.append(
                f"no metric pair of {', '.join(f'{x}:{y}' for x, y in pairs)} is in the results"
            )
        front_frames = []
        for x, y in usable:
            bars = intervals if opts.ci_bars else None
            points = pareto_mod.pareto_points(df, x, y, intervals=bars)
            if points.empty:
                continue
            hv = pareto_mod.hypervolume_table(points, x, y)
            hv_frames.append(hv)
            front = pareto_mod.front_table(points).assign(pair=f"{x}-{y}")
            front_frames.append(front)
            if "pareto" in parts:
                for exp, sub in points.groupby("experiment", sort=True):
                    level = opts.ci if bars is not None else None
                    fig = plot_pareto(sub, x, y, title=f"{exp}: {x} vs {y} (test)", level=level)
                    section.figures.append(
                        _figure(
                            report,
                            fig,
                            f"pareto_{slug(exp)}_{slug(x)}-{slug(y)}",
                            f"{exp}: {x} vs {y}",
                            opts,
                            want_png,
                        )
                    )
        if "pareto" in parts and front_frames:
            fronts = pd.concat(front_frames, ignore_index=True)
            hv_all = pd.concat(hv_frames, ignore_index=True)
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
            section.tables.append(
                Table(
                    "Hypervolume (reference: the experiment's worst gap and accuracy, "
                    "pushed out by 10% of their range)",
                    hv_header,
                    hv_rows,
                )
            )
            section.tables.append(Table("Front points (seed mean and std)", cols, front_rows, console=False))
        if "pareto" in parts:
            report.sections.append(section)

    if "cd" in parts:
        report.sections.append(_cd_section(report, hv_frames, opts, want_png))

    if "sweep" in parts:
        section = _sweep_section(report, df, metrics, opts, want_png)
        if section.figures or (explicit and "sweep" in opts.parts):
            report.sections.append(section)

    if "ablation" in parts:
        suite_specs = suite_tables(folder)
        specs = declared_mod.declared_specs(df) + suite_specs
        tables = declared_mod.declared_tables(df, suite_specs, suite_labels(folder), opts.selection == "all")
        section = Section("Declared tables: the methods' and the suite's")
        if not tables:
            if explicit and "ablation" in opts.parts:
                wanted = ", ".join(f"{s.split}-split '{'/'.join(s.metric_names)}'" for s in specs) or "nothing"
                raise FairbenchError(
                    f"--ablation: {folder} has no rows for the tables its methods and suite declare (they "
                    f"read: {wanted}); run a suite whose methods report them (see `fairbench ls methods`) "
                    f"or drop --ablation"
                )
        else:
            for t in tables:
                _write(report, t.stem + ".md", t.markdown())
                _write(report, t.stem + ".tex", t.latex())
                _write_csv(report, t.stem + ".csv", t.csv_frame())
                section.tables.append(Table(t.caption, t.header, t.text_rows()))
            report.sections.append(section)

    if "tables" in parts:
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
        report.sections.append(section)

    if "html" in parts:
        from fairbench.report.html import render_html

        page = render_html(report, load_jobs(folder))
        _write(report, "report.html", page)
    return report


def _sweep_section(report: Report, df: pd.DataFrame, metrics: set[str], opts: Options, want_png: bool) -> Section:
    """Metrics against each swept parameter: --sweep, else the suite's `report: {sweep: [...]}`,
    else every numeric parameter with at least sweep.MIN_VALUES values."""
    section = Section("Parameter sweeps")
    declared = suite_report(report.folder, "sweep", lambda v: [str(p) for p in v])
    params = opts.sweep or declared or sweep_mod.swept_params(df)
    source = "--sweep" if opts.sweep else "suite.yaml report: sweep"
    wanted = opts.sweep_metrics or suite_report(report.folder, "sweep_metrics", lambda v: [str(m) for m in v])
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
            fig = sweep_mod.plot_sweep(sub, param, names, title=f"{exp}: metrics against {param} (test)")
            stem = f"sweep_{slug(exp)}_{slug(param)}"
            section.figures.append(_figure(report, fig, stem, f"{exp}: metrics against {param}", opts, want_png))
    return section


def _cd_section(report: Report, hv_frames: list[pd.DataFrame], opts: Options, want_png: bool) -> Section:
    section = Section("Critical-difference diagram")
    if not hv_frames:
        section.notes.append("Critical-difference diagram skipped: no hypervolumes (no usable metric pair)")
        return section
    hv = pd.concat(hv_frames, ignore_index=True)
    scores = hv.pivot_table(
        index=["experiment", "pair"], columns="label", values="hypervolume", aggfunc="first"
    )
    result = cd_mod.critical_difference(scores, test=opts.cd_test, alpha=opts.alpha)
    section.notes.append(result.summary())
    lines = [f"# Critical-difference analysis ({result.test})", "", result.summary(), ""]
    if not result.skipped:
        header = ["rank", "method", "average rank"]
        rows = [[str(i + 1), str(m), f"{r:.3f}"] for i, (m, r) in enumerate(result.avg_ranks.items())]
        section.tables.append(Table("Average ranks by hypervolume (1 = best)", header, rows))
        lines.append(markdown_table(header, rows))
        _write_csv(
            report, "cd.csv", result.avg_ranks.rename("average_rank").rename_axis("label").reset_index()
        )
        fig = cd_mod.plot_cd(result)
        section.figures.append(
            _figure(report, fig, "cd_diagram", "Critical-difference diagram", opts, want_png)
        )
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
