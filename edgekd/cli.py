"""The ``edgekd`` command: thin commands over library calls. Errors print as one line, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from edgekd import __version__
from edgekd.cli_bench import bench
from edgekd.cli_init import init, templates
from edgekd.cli_model import inspect, predict


class _FlagHelp:
    """Help that shows a flag (``--json``, ``--force``) as a flag: typer 0.29 prints ``<bool>`` after it, which reads
    as if it took a value (and ``--json true`` is then refused)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class _FlagsCommand(_FlagHelp, typer.core.TyperCommand):
    pass


class _FlagsGroup(_FlagHelp, typer.core.TyperGroup):
    pass


app = typer.Typer(
    cls=_FlagsGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Distil a big PyTorch model into a small one and ship it to the edge, with measured numbers.",
    epilog="Errors print as one line. Set EDGEKD_DEBUG=1 to see the Python traceback behind an error (for bug "
    "reports); EDGEKD_QUIET=1 silences progress output.",
)


def _fail(exc: BaseException, code: int) -> None:
    from rich.markup import escape

    from edgekd.console import console
    from edgekd.errors import one_line

    problems = getattr(exc, "problems", None)  # several config errors: a heading, then one indented line each
    text = escape(one_line(exc.heading if problems else str(exc)))
    console.print(f"[bold red]error:[/] {text}", markup=True, highlight=False, soft_wrap=True)
    for p in problems or []:
        console.print(f"  {escape(p)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _guard(fn, *args, **kwargs):
    """Run a library call; any error becomes one red line and an exit code (EDGEKD_DEBUG=1: the traceback)."""
    from edgekd.errors import EdgekdError, debugging, describe_unexpected

    try:
        return fn(*args, **kwargs)
    except (typer.Exit, typer.Abort):
        raise
    except EdgekdError as exc:
        if debugging():
            raise
        _fail(exc, exc.exit_code)
    except KeyboardInterrupt:
        _fail(RuntimeError("interrupted; finished stages are kept and the same command resumes from them"), 130)
    except Exception as exc:  # OSError, ValueError, MemoryError...: still one line, never a traceback
        if debugging():
            raise
        _fail(RuntimeError(describe_unexpected(exc)), 1)


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


@app.command(cls=_FlagsCommand)
def validate(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")], overrides: Overrides = None
) -> None:
    """Check a pipeline file without running anything."""
    from edgekd.console import step

    with step(f"validating {pipeline}"):  # a few seconds: torch imports, then models built for the stage checks
        from edgekd.config import load_pipeline

        cfg = _guard(load_pipeline, pipeline, overrides or [])
    enabled = [s.id for s in cfg.stages if s.enabled]
    typer.echo(f"{pipeline}: valid — {len(cfg.stages)} stages ({', '.join(enabled)} enabled)")


@app.command(cls=_FlagsCommand)
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Run directory.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Ignore the cache and re-run every stage.")] = False,
    overrides: Overrides = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the final table.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="More detail, and third-party output on the console too.")
    ] = False,
) -> None:
    """Run a pipeline; unchanged stages are reused from the run directory. Exits 1 when a report goal is missed.

    Progress and one line per training epoch go to the console; everything, including what libraries print, is
    appended to <run directory>/run.log.
    """
    from edgekd import console as out
    from edgekd.config import load_pipeline
    from edgekd.pipeline import run_pipeline

    if quiet and verbose:
        _fail(ValueError("--quiet and --verbose cannot be used together"), 2)
    out.set_verbosity(out.QUIET if quiet else out.VERBOSE if verbose else out.NORMAL, capture=True)
    cfg = _guard(load_pipeline, pipeline, overrides or [])
    result = _guard(run_pipeline, cfg, output_dir, force)
    report = result.report
    missed = []
    if report:
        from edgekd.report import results_table
        from edgekd.report.goals import goal_line

        out.console.print(results_table(report))
        goals = report.get("goals") or []
        missed = [g for g in goals if not g["met"]]
        if goals and not missed:
            out.log(f"[green]all {len({g['goal'] for g in goals})} goals met[/] ({len(goals)} figures checked)")
        for g in missed:
            out.console.print(f"[bold red]error:[/] {goal_line(g)}", markup=True, highlight=False, soft_wrap=True)
    out.log(f"run directory: {result.run_dir} (log: {result.run_dir / 'run.log'})")
    if missed:
        raise typer.Exit(1)


app.command(cls=_FlagsCommand)(bench)  # edgekd bench MODEL --device PROFILE
app.command(cls=_FlagsCommand)(predict)  # edgekd predict MODEL IMAGE...
app.command(cls=_FlagsCommand)(inspect)  # edgekd inspect MODEL
app.command(cls=_FlagsCommand)(templates)  # edgekd templates
app.command(cls=_FlagsCommand)(init)  # edgekd init [TEMPLATE] [DIR]


def entry() -> None:
    """Console-script entry point; the last guard: whatever escaped a command's own guard is still one line."""
    from edgekd.errors import debugging, describe_unexpected

    try:
        code = app()
    except Exception as exc:
        if debugging():
            raise
        from edgekd.console import console

        console.print(f"error: {describe_unexpected(exc)}", markup=False, highlight=False, soft_wrap=True)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    entry()
