"""The ``edgekd`` command: thin commands over library calls. Errors print as one line, never a traceback."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from edgekd import __version__
from edgekd.cli._common import FlagsCommand, FlagsGroup
from edgekd.cli.bench import bench
from edgekd.cli.data import synth_photos
from edgekd.cli.init import init, templates
from edgekd.cli.layers import layers
from edgekd.cli.model import inspect, predict
from edgekd.cli.run import run, validate

app = typer.Typer(
    cls=FlagsGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Distil a big PyTorch model into a small one and ship it to the edge, with measured numbers.",
    epilog="Errors print as one line. Set EDGEKD_DEBUG=1 to see the Python traceback behind an error (for bug "
    "reports); EDGEKD_QUIET=1 silences progress output.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgekd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """edgekd: teacher -> distilled student -> ONNX / TFLite -> benchmark -> report."""


app.command(cls=FlagsCommand)(validate)  # edgekd validate PIPELINE
app.command(cls=FlagsCommand)(run)  # edgekd run PIPELINE
app.command(cls=FlagsCommand)(bench)  # edgekd bench MODEL --device PROFILE
app.command(cls=FlagsCommand)(predict)  # edgekd predict MODEL IMAGE...
app.command(cls=FlagsCommand)(inspect)  # edgekd inspect MODEL
app.command(cls=FlagsCommand)(templates)  # edgekd templates
app.command(cls=FlagsCommand)(init)  # edgekd init [TEMPLATE] [DIR]
app.command("synth-photos", cls=FlagsCommand)(synth_photos)  # edgekd synth-photos DIR
app.command(cls=FlagsCommand)(layers)  # edgekd layers MODEL


def entry() -> None:
    """Console-script entry point; the last guard: whatever escaped a command's own guard is still one line."""
    from edgekd.core.errors import debugging, describe_unexpected

    try:
        code = app()
    except Exception as exc:
        if debugging():
            raise
        from edgekd.core.console import console

        console.print(f"error: {describe_unexpected(exc)}", markup=False, highlight=False, soft_wrap=True)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    entry()
