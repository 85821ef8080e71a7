"""The human-readable report as GitHub-flavoured markdown."""

from __future__ import annotations

from typing import Any

from edgekd.report import fmt

TABLE_ERROR_WIDTH = 60  # table cells stay readable; the full error is repeated under "Failures"


def md_escape(text: Any) -> str:
    """Make free text safe inside a markdown table or paragraph.

    Renderers pass raw HTML through, so ``<`` and ``&`` become entities (an error message quoting ``<script>`` must
    not turn into markup); ``|`` would split a table cell; newlines would end the row.
    """
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = s.replace("|", "\\|").replace("`", "\\`")
    return " ".join(s.split())


def _table(report: dict[str, Any], variants: list[dict[str, Any]]) -> list[str]:
    cols = fmt.columns(report)
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---:" if c in fmt.NUMERIC_COLUMNS else "---" for c in cols) + "|",
    ]
    for v in variants:
        cells = [md_escape(c) for c in fmt.cells(report, v, TABLE_ERROR_WIDTH)]
        if v.get("role") == "teacher":
            cells[0] = f"**{cells[0]}**"
        if fmt.is_failed(v):
            cells[3] = f"**{cells[3]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _where(variant: dict[str, Any]) -> str:
    name = str(variant.get("name", "?"))
    return f"{name} on {variant['device']}" if variant.get("device") not in (None, "local") else name


def to_markdown(report: dict[str, Any]) -> str:
    """Render a report dict (see :func:`edgekd.report.write_report`) as markdown; plots are linked relatively."""
    out = [f"# edgekd report: {md_escape(report.get('pipeline', '?'))}", ""]
    meta = []
    if report.get("created"):
        meta.append(f"created {md_escape(report['created'])}")
    if report.get("edgekd_version"):
        meta.append(f"edgekd {md_escape(report['edgekd_version'])}")
    if meta:
        out += [", ".join(meta), ""]
    out += [
        f"**Host:** {md_escape(fmt.host_line(report))}  ",
        f"**Threads:** {md_escape(report.get('threads', fmt.MISSING))}  ",
    ]
    if fmt.measurement_line(report):
        out.append(f"**Measured with:** {md_escape(fmt.measurement_line(report))}  ")
    if fmt.versions_line(report):
        out.append(f"**Versions:** {md_escape(fmt.versions_line(report))}  ")
    out[-1] = out[-1].rstrip()
    out.append("")

    out += ["## Results", ""]
    for device, variants in fmt.device_groups(report):  # one table per device when several were measured
        if device is not None:
            out += [f"### {md_escape(device)}", "", md_escape(fmt.device_line(report, device)), ""]
        out += [*_table(report, variants), ""]

    failed = [v for v in report.get("variants") or [] if fmt.is_failed(v)]
    if failed:
        out += ["### Failures", ""]
        out += [f"- **{md_escape(_where(v))}**: {md_escape(v.get('error') or 'unknown error')}" for v in failed]
        out.append("")

    lines = fmt.figure_lines(report)
    if lines:
        out += ["## Figures and goals", ""]
        for met, text in lines:
            mark = fmt.goal_mark(met)
            out.append(f"- {f'**{mark}** ' if mark else ''}{md_escape(text)}")
        out.append("")

    notes = report.get("notes") or []
    if notes:
        out += ["## Notes", ""] + [f"- {md_escape(n)}" for n in notes] + [""]

    stages = report.get("stages") or []
    if stages:
        out += ["## Stage times", "", "| Stage | Time |", "|---|---:|"]
        out += [f"| {md_escape(s.get('name', '?'))} | {fmt.stage_time(s)} |" for s in stages]
        out.append("")

    frontier = fmt.frontier_lines(report)
    if frontier:
        out += (
            [f"## Pareto frontier ({fmt.quality(report)[0]} vs p50 latency)", ""]
            + [f"- {md_escape(f)}" for f in frontier]
            + [""]
        )

    out += ["## Plots", ""]
    for name, title in fmt.plot_files(report).items():
        out += [f"![{title}]({name})", ""]
    if report.get("config"):
        import yaml

        text = yaml.safe_dump(report["config"], sort_keys=False).rstrip()
        out += ["## Resolved config", "", "```yaml", text, "```", ""]
    return "\n".join(out)
