"""The results table the CLI prints at the end of a run."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from edgekd.report import fmt

ERROR_WIDTH = 40  # a terminal row must stay one line-ish; the full error is in report.md / report.html

# Terminal width is scarce: shorter headers than the markdown/HTML ones, same column order.
SHORT_HEADERS = {
    "Size (KB)": "KB",
    "Accuracy %": "Acc %",
    "Δ acc vs fp32 (points)": "Δfp32",
    "Δ acc vs teacher (points)": "Δteach",
    "Agreement w/ teacher %": "Agree %",
    "Latency mean / p50 / p90 / p99 ms": "Latency ms\nmean/p50/p90/p99",
    "Throughput/s": "Thru/s",
    "Peak RSS MB": "RSS MB",
}


def results_table(report: dict[str, Any]) -> Table:
    """A rich Table with one row per variant; failed variants in red with their error shortened."""
    title = f"edgekd: {report.get('pipeline', '?')}"
    if report.get("threads") is not None:
        title += f" ({report['threads']} thread{'s' if report['threads'] != 1 else ''})"
    devices = [d for d, _ in fmt.device_groups(report) if d is not None]
    caption = " | ".join(f"{d}: {fmt.device_line(report, d)}" for d in devices) if devices else fmt.host_line(report)
    table = Table(title=title, caption=caption or None, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    if devices:  # several devices: one table, each row says where it was measured
        table.add_column("Device", overflow="fold")
    for col in fmt.columns(report):
        header = SHORT_HEADERS.get(col, col)
        if col in fmt.NUMERIC_COLUMNS:
            # Numbers are never folded or cut; on a narrow terminal the text columns wrap instead.
            table.add_column(header, justify="right", no_wrap=True)
        else:
            table.add_column(header, overflow="fold")
    for v in report.get("variants") or []:
        # "/" without spaces: the latency column is the widest and terminal width is scarce.
        cells = fmt.cells(report, v, ERROR_WIDTH, sep="/")
        style = "red" if fmt.is_failed(v) else ("bold" if v.get("role") == "teacher" else None)
        # Text objects, not str: names and errors may contain "[...]", which rich would parse as markup.
        lead = [Text(str(v.get("device") or "—"))] if devices else []
        table.add_row(*lead, *(Text(c) for c in cells), style=style)
    return table
