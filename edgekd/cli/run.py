"""``edgekd validate`` and ``edgekd run``: a pipeline file checked, then run stage by stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekd.cli._common import fail, guard

Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a key: dotted.key=value (repeatable).")]


def validate(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")], overrides: Overrides = None
) -> None:
    """Check a pipeline file without running anything."""
    from edgekd.core.console import step

    with step(f"validating {pipeline}"):  # a few seconds: torch imports, then models built for the stage checks
        from edgekd.core.loader import load_pipeline

        cfg = guard(load_pipeline, pipeline, overrides or [])
    enabled = [s.id for s in cfg.stages if s.enabled]
    typer.echo(f"{pipeline}: valid — {len(cfg.stages)} stages ({', '.join(enabled)} enabled)")


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
    from edgekd.core import console as out
    from edgekd.core.loader import load_pipeline
    from edgekd.core.pipeline import run_pipeline

    if quiet and verbose:
        fail(ValueError("--quiet and --verbose cannot be used together"), 2)
    out.set_verbosity(out.QUIET if quiet else out.VERBOSE if verbose else out.NORMAL, capture=True)
    cfg = guard(load_pipeline, pipeline, overrides or [])
    result = guard(run_pipeline, cfg, output_dir, force)
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
