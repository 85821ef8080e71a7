"""The one rich console and progress factory every stage uses, so output stays consistent and can be silenced."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Not a terminal (CI logs, pipes): rich would assume 80 columns and squeeze the results table; logs can be wide.
console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 180)


def progress() -> Progress:
    """A progress bar (epochs, conversions, benchmark runs); hidden when stderr is not a terminal or EDGEKD_QUIET=1."""
    disable = os.environ.get("EDGEKD_QUIET") == "1" or not sys.stderr.isatty()
    return Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=disable,
    )


def log(msg: str) -> None:
    if os.environ.get("EDGEKD_QUIET") != "1":
        console.print(msg)
