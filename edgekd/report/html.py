"""The report as one self-contained HTML page: inline CSS, plots embedded as base64 PNG, no external requests."""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from edgekd.report import fmt

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; max-width: 1400px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.meta { color: #555; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.teacher td:first-child { font-weight: bold; }
tr.failed { background: #fdecea; }
tr.failed td.status { color: #b00020; font-weight: bold; }
.err { font-family: ui-monospace, monospace; font-size: 0.8rem; font-weight: normal; white-space: pre-wrap;
       overflow-wrap: anywhere; max-width: 40em; }
ul.checks { list-style: none; padding-left: 0; }
.met { color: #1b7f3b; font-weight: bold; } .missed { color: #b00020; font-weight: bold; }
pre.config { background: #f7f7f7; padding: 0.5rem; font-size: 0.8rem; max-height: 40em; overflow: auto; }
.plots img { max-width: 100%; margin: 0.5rem 1rem 0.5rem 0; border: 1px solid #eee; }
"""


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _row(report: dict[str, Any], variant: dict[str, Any]) -> str:
    # Cells come unshortened (error_width=None): the status cell is rebuilt below so the full error can be shown.
    cells = fmt.cells(report, variant)
    classes = []
    if variant.get("role") == "teacher":
        classes.append("teacher")
    failed = fmt.is_failed(variant)
    if failed:
        classes.append("failed")
    tds = []
    for col, cell in zip(fmt.columns(report), cells, strict=True):
        if col == "Status":
            if failed:
                err = variant.get("error") or "unknown error"
                tds.append(f'<td class="status">FAILED<div class="err">{_e(err)}</div></td>')
            else:
                tds.append(f'<td class="status">{_e(cell)}</td>')
        elif col in fmt.NUMERIC_COLUMNS:
            tds.append(f'<td class="num">{_e(cell)}</td>')
        else:
            tds.append(f"<td>{_e(cell)}</td>")
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return f"<tr{cls}>" + "".join(tds) + "</tr>"


def _table(report: dict[str, Any]) -> list[str]:
    head = "".join(f"<th>{_e(c)}</th>" for c in fmt.columns(report))
    out: list[str] = []
    for device, variants in fmt.device_groups(report):  # one table per device when several were measured
        if device is not None:
            out += [f"<h3>{_e(device)}</h3>", f'<p class="meta">{_e(fmt.device_line(report, device))}</p>']
        rows = [_row(report, v) for v in variants]
        out += ["<table>", f"<thead><tr>{head}</tr></thead>", "<tbody>", *rows, "</tbody>", "</table>"]
    return out


def _sections(report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    lines = fmt.figure_lines(report)
    if lines:
        out += ["<h2>Figures and goals</h2>", '<ul class="checks">']
        for met, text in lines:
            mark = fmt.goal_mark(met)
            lead = f'<span class="{"met" if met else "missed"}">{mark}</span>' if mark else "•"
            out.append(f"<li>{lead} {_e(text)}</li>")
        out.append("</ul>")
    notes = report.get("notes") or []
    if notes:
        out += ["<h2>Notes</h2>", "<ul>", *(f"<li>{_e(n)}</li>" for n in notes), "</ul>"]
    stages = report.get("stages") or []
    if stages:
        out += ["<h2>Stage times</h2>", "<table>", "<thead><tr><th>Stage</th><th>Time</th></tr></thead>", "<tbody>"]
        out += [
            f'<tr><td>{_e(s.get("name", "?"))}</td><td class="num">{_e(fmt.stage_time(s))}</td></tr>' for s in stages
        ]
        out += ["</tbody>", "</table>"]
    frontier = fmt.frontier_lines(report)
    if frontier:
        out += [
            f"<h2>Pareto frontier ({_e(fmt.quality(report)[0])} vs p50 latency)</h2>",
            "<ul>",
            *(f"<li>{_e(f)}</li>" for f in frontier),
        ]
        out.append("</ul>")
    return out


def _config(report: dict[str, Any]) -> list[str]:
    if not report.get("config"):
        return []
    import yaml

    text = yaml.safe_dump(report["config"], sort_keys=False)
    return ["<h2>Resolved config</h2>", f'<details><summary>every option, defaults filled in</summary>'
            f'<pre class="config">{_e(text)}</pre></details>']  # fmt: skip


def _plots(images: dict[str, bytes]) -> list[str]:
    if not images:
        return []
    out = ["<h2>Plots</h2>", '<div class="plots">']
    for name, data in images.items():
        alt = {**fmt.PLOT_FILES, **fmt.DISTRIBUTION_PLOT}.get(name, name)
        b64 = base64.b64encode(data).decode("ascii")
        out.append(f'<img alt="{_e(alt)}" title="{_e(name)}" src="data:image/png;base64,{b64}">')
    out.append("</div>")
    return out


def to_html(report: dict[str, Any], images: dict[str, bytes]) -> str:
    """Render a report dict as a standalone HTML page; ``images`` maps plot file names to PNG bytes."""
    title = f"edgekd report: {report.get('pipeline', '?')}"
    meta = ", ".join(
        x
        for x in (
            f"created {report['created']}" if report.get("created") else "",
            f"edgekd {report['edgekd_version']}" if report.get("edgekd_version") else "",
        )
        if x
    )
    body = [f"<h1>{_e(title)}</h1>"]
    if meta:
        body.append(f'<p class="meta">{_e(meta)}</p>')
    body += [
        f"<p><strong>Host:</strong> {_e(fmt.host_line(report))}<br>",
        f"<strong>Threads:</strong> {_e(report.get('threads', fmt.MISSING))}<br>",
        f"<strong>Measured with:</strong> {_e(fmt.measurement_line(report) or fmt.MISSING)}<br>",
        f"<strong>Versions:</strong> {_e(fmt.versions_line(report) or fmt.MISSING)}</p>",
        "<h2>Results</h2>",
        *_table(report),
        *_sections(report),
        *_plots(images),
        *_config(report),
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{_e(title)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
