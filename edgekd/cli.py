"""The ``edgekd`` command: thin commands over library calls. Errors print as one line, never a traceback."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgekd import __version__
from edgekd.cli_bench import bench
from edgekd.cli_model import inspect, predict

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Distil a big PyTorch model into a small one and ship it to the edge, with measured numbers.",
)


def _fail(exc: BaseException, code: int) -> None:
    from rich.markup import escape

    from edgekd.console import console
    from edgekd.errors import one_line

    console.print(f"[bold red]error:[/] {escape(one_line(str(exc)))}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _guard(fn, *args, **kwargs):
    """Run a library call; edgekd errors become one red line and their exit code."""
    from edgekd.errors import EdgekdError

    try:
        return fn(*args, **kwargs)
    except EdgekdError as exc:
        if os.environ.get("EDGEKD_DEBUG") == "1":
            raise
        _fail(exc, exc.exit_code)
    except KeyboardInterrupt:
        _fail(RuntimeError("interrupted; finished stages are kept and the next run resumes from them"), 130)


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


Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a key: dotted.key=value (repeatable).")]


@app.command()
def validate(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")], overrides: Overrides = None
) -> None:
    """Check a pipeline file without running anything."""
    from edgekd.config import load_pipeline

    cfg = _guard(load_pipeline, pipeline, overrides or [])
    enabled = [s.id for s in cfg.stages if s.enabled]
    typer.echo(f"{pipeline}: valid — {len(cfg.stages)} stages ({', '.join(enabled)} enabled)")


@app.command()
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Run directory.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Ignore the cache and re-run every stage.")] = False,
    overrides: Overrides = None,
) -> None:
    """Run a pipeline; unchanged stages are reused from the run directory."""
    from edgekd.config import load_pipeline
    from edgekd.console import console
    from edgekd.pipeline import run_pipeline

    cfg = _guard(load_pipeline, pipeline, overrides or [])
    result = _guard(run_pipeline, cfg, output_dir, force)
    report = result.report
    if report:
        from edgekd.report import results_table

        console.print(results_table(report))
        failed = [c for c in report.get("checks", []) if not c["passed"]]
        if failed:
            console.print(f"[yellow]{len(failed)} target check(s) not met:[/] " + "; ".join(c["name"] for c in failed))
    console.print(f"run directory: {result.run_dir}")


app.command()(bench)  # edgekd bench MODEL --device PROFILE
app.command()(predict)  # edgekd predict MODEL IMAGE...
app.command()(inspect)  # edgekd inspect MODEL


def entry() -> None:
    """Console-script entry point."""
    sys.exit(app())


if __name__ == "__main__":
    entry()
