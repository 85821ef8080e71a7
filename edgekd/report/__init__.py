"""Report writers: report.json, report.md, report.html, plots, and the CLI's results table."""

from edgekd.report.markdown import to_markdown
from edgekd.report.table import results_table
from edgekd.report.write import write_report

# The keys every row of report.json's ``variants`` carries (the machine-readable contract).
REQUIRED_VARIANT_KEYS = ("name", "format", "precision", "size_bytes", "params", "accuracy", "teacher_agreement",
                         "latency_ms", "status")  # fmt: skip

__all__ = ["REQUIRED_VARIANT_KEYS", "results_table", "to_markdown", "write_report"]
