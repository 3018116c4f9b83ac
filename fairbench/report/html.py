"""The self-contained HTML report: one file, figures embedded as base64 PNG, no scripts, no
external resources, so it opens from disk (file://) or an e-mail attachment without a server.
Provenance comes from the jobs table: suite, package versions, git revision, machines, and the
time of every job.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from collections import Counter

import pandas as pd

from fairbench import __version__
from fairbench.report.document import Report, Table

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1em;margin-bottom:.3em}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0 1.2em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right;white-space:nowrap}th{background:#f4f4f4}
.scroll{overflow-x:auto}
td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.5em 1em .5em 0}figure img{max-width:520px;height:auto}
figure.wide{display:block}figure.wide img{max-width:100%}
figcaption{font-size:.8em;color:#555}.note{color:#555;font-size:.9em}
details{margin:.5em 0}code{font-size:.9em}
"""


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in table.rows)
    title = html.escape(table.title)
    # cells do not wrap (0.867 ± 0.023 stays one value); a table wider than the page scrolls
    table_html = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<h3>{title}</h3>\n<div class='scroll'>{table_html}</div>"


def _when(ts: float | None) -> str:
    if ts is None or pd.isna(ts):
        return ""
    return dt.datetime.fromtimestamp(float(ts), tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _provenance(jobs: pd.DataFrame) -> str:
    """Suite, versions, git revision, machines and per-job timings."""
    if jobs.empty:
        return "<p class='note'>No jobs recorded.</p>"

    def values(col: str) -> str:
        if col not in jobs:
            return "-"
        counts = Counter(str(v) for v in jobs[col].dropna() if str(v) != "")
        return ", ".join(f"{v} ({n} jobs)" if len(counts) > 1 else v for v, n in counts.most_common()) or "-"

    versions: dict[str, Counter] = {}
    for text in jobs.get("versions", pd.Series(dtype=object)).dropna():
        try:
            for pkg, ver in json.loads(text).items():
                versions.setdefault(pkg, Counter())[str(ver)] += 1
        except (ValueError, AttributeError):
            continue  # an unreadable provenance field must not hide the rest of the report
    ver_rows = "".join(
        f"<tr><td>{html.escape(p)}</td><td>{html.escape(', '.join(c))}</td></tr>" for p, c in sorted(versions.items())
    )
    status = Counter(jobs["status"].fillna("?"))
    total = pd.to_numeric(jobs.get("duration"), errors="coerce").sum()
    info = [
        ("Suite", values("suite")),
        ("Jobs", ", ".join(f"{n} {s}" for s, n in status.most_common())),
        ("Total job time", f"{total:.1f} s"),
        ("Git revision", values("git_rev")),
        ("Hosts", values("host")),
        ("Devices", values("device")),
        ("First job started", _when(pd.to_numeric(jobs.get("started"), errors="coerce").min())),
        ("Last job finished", _when(pd.to_numeric(jobs.get("finished"), errors="coerce").max())),
    ]
    parts = ["<table>" + "".join(f"<tr><th>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in info) + "</table>"]
    if ver_rows:
        parts.append(f"<h3>Package versions</h3><table><tr><th>package</th><th>version</th></tr>{ver_rows}</table>")
    cols = [
        "job_id",
        "experiment",
        "label",
        "seed",
        "params",
        "status",
        "duration",
        "device",
        "host",
        "error",
    ]
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = []
    for job in jobs.itertuples():
        cells = []
        for c in cols:
            v = getattr(job, c, "")
            if c == "duration":
                v = "" if v is None or pd.isna(v) else f"{float(v):.2f} s"
            elif c == "job_id":
                v = str(v)[:12]
            cells.append(f"<td>{html.escape('' if v is None else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    parts.append(
        f"<details><summary>Time per job ({len(jobs)} jobs)</summary><table><tr>{head}</tr>"
        f"{''.join(body)}</table></details>"
    )
    return "\n".join(parts)


def render_html(report: Report, jobs: pd.DataFrame) -> str:
    """The whole page as one string."""
    title = f"fairbench report: {report.folder.name}"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Results folder <code>{html.escape(str(report.folder))}</code>; generated "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} by fairbench {__version__}.</p>",
    ]
    for section in report.sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [f"<p class='note'>{html.escape(n)}</p>" for n in section.notes]
        for fig in section.figures:
            if fig.png is None:
                continue
            data = base64.b64encode(fig.png).decode("ascii")
            body.append(
                f"<figure{' class=wide' if fig.wide else ''}><img src='data:image/png;base64,{data}' "
                f"alt='{html.escape(fig.title)}'>"
                f"<figcaption>{html.escape(fig.title)}</figcaption></figure>"
            )
        body += [_table(t) for t in section.tables if t.html]
    body += ["<h2>Provenance</h2>", _provenance(jobs)]
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
