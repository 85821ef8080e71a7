"""Report writers: report.json, report.md, report.html, plots, and the CLI's results table."""

from edgekd.report.markdown import to_markdown
from edgekd.report.table import results_table
from edgekd.report.write import write_report

__all__ = ["results_table", "to_markdown", "write_report"]
