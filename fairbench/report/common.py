"""Shared helpers of the reports: hyperparameter points, seed averaging, table rendering.

A *hyperparameter point* is the set of all `param_<name>` values of one (experiment, label)
group; the seeds of a point are averaged and their spread (sample std, ddof=1; 0 for one seed)
kept. Reports other than the ablation use the *untagged* metric rows only (tag columns all
empty): tagged rows (e.g. an ablation's `sens_acc` per `sens_classifier`) are method diagnostics,
not the model's own scores, and would otherwise be averaged into the wrong numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fairbench.store import TABLE_COLUMNS

GROUP = ["experiment", "label"]


def param_columns(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if c.startswith("param_"))


def tag_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in TABLE_COLUMNS and not c.startswith("param_")]


def _fmt_param(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) >= 1 else f"{value:g}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def point_keys(df: pd.DataFrame) -> pd.Series:
    """A readable key per row naming its hyperparameter point, e.g. "eta1=0.1, eta2=0.4".

    Only parameters that vary within the row's (experiment, label) group are named: the others
    are the same at every point. A group with a single point gets the key "default".
    """
    cols = param_columns(df)
    keys = pd.Series("default", index=df.index)
    if not cols:
        return keys
    for _, group in df.groupby([c for c in GROUP if c in df.columns], sort=False, dropna=False):
        varying = [c for c in cols if group[c].map(_fmt_param).nunique() > 1]
        if not varying:
            continue
        values = [group[c].map(_fmt_param) for c in varying]
        names = [c[len("param_") :] for c in varying]
        keys.loc[group.index] = [
            ", ".join(f"{n}={v}" for n, v in zip(names, row, strict=True) if v != "") or "default"
            for row in zip(*values, strict=True)
        ]
    return keys


def untagged(df: pd.DataFrame) -> pd.DataFrame:
    tags = tag_columns(df)
    if not tags:
        return df
    return df[df[tags].isna().all(axis=1)]


def point_stats(df: pd.DataFrame, split: str, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Seed-averaged metrics per (experiment, label, point) on one split.

    Returns one row per experiment x label x point x metric with columns
    experiment, label, point, metric, mean, std, n (number of seeds).
    """
    rows = untagged(df)
    rows = rows[rows["split"] == split]
    if metrics is not None:
        rows = rows[rows["metric"].isin(list(metrics))]
    if rows.empty:
        return pd.DataFrame(columns=[*GROUP, "point", "metric", "mean", "std", "n"])
    # A job without a label is reported under its method's name.
    rows = rows.assign(point=point_keys(rows), label=rows["label"].fillna(rows["method"]))
    stats = (
        rows.groupby([*GROUP, "point", "metric"], sort=True)["value"]
        .agg(mean="mean", std=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, n="count")
        .reset_index()
    )
    return stats


def wide_points(stats: pd.DataFrame) -> pd.DataFrame:
    """point_stats pivoted: one row per (experiment, label, point), columns <metric>/<metric>_std."""
    if stats.empty:
        return pd.DataFrame(columns=[*GROUP, "point"])
    mean = stats.pivot_table(index=[*GROUP, "point"], columns="metric", values="mean", aggfunc="first")
    std = stats.pivot_table(index=[*GROUP, "point"], columns="metric", values="std", aggfunc="first")
    n = stats.groupby([*GROUP, "point"])["n"].max().rename("n")
    std.columns = [f"{c}__std" for c in std.columns]
    return pd.concat([mean, std, n], axis=1).reset_index()


# ----------------------------------------------------------------------------- rendering


def fmt_num(value: float, digits: int = 3) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def fmt_mean_std(mean: float, std: float, n: int, digits: int = 3, interval: tuple[float, float] | None = None) -> str:
    """ "0.812 ± 0.010" (no ± for a single seed), followed by " [low, high]" when an interval is given."""
    if mean is None or pd.isna(mean):
        return "-"
    text = fmt_num(mean, digits) if n is None or pd.isna(n) or n < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"
    if interval is not None and not pd.isna(interval[0]):
        text += f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    return text


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (written by hand: pandas needs `tabulate` for this)."""

    def cell(value: str) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))
    return out.replace("±", r"$\pm$").replace("η1", r"$\eta_1$").replace("η", r"$\eta$")


def latex_table(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    """A booktabs tabular (written by hand so that no jinja2 dependency is needed)."""
    spec = "l" + "r" * (len(header) - 1)
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    lines += [
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
    ]
    lines.append(r"\midrule")
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def slug(text: str) -> str:
    """A file-name-safe version of an experiment or label name: other characters become one
    underscore per run (`sex == 'Male'` -> `sex_Male`)."""
    out = re.sub(r"[^\w.-]+", "_", str(text), flags=re.ASCII)
    return re.sub(r"_+", "_", out).strip("_") or "x"


def experiment_title(df: pd.DataFrame, experiment: str) -> str:
    """How figures name an experiment: its suite name where it has one, else "dataset: target,
    sensitive" (the id `dataset/target/sensitive` is an internal key)."""
    rows = df[df["experiment"] == experiment]
    if rows.empty:
        return experiment
    first = rows.iloc[0]
    if experiment != f"{first['dataset']}/{first['target']}/{first['sensitive']}":
        return experiment
    return f"{first['dataset']}: {first['target']}, {first['sensitive']}"


def metric_label(metric: str) -> str:
    """The registry's display name of a metric (its name when it is not registered)."""
    from fairbench import metrics

    return metrics.get(metric).label if metric in metrics.registered() else metric
