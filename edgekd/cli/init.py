"""``edgekd templates`` and ``edgekd init``: list the shipped pipelines and device profiles, copy one out to edit.

edgekd templates
edgekd init                          # ./mobile_vision.yaml
edgekd init methods/feature my-exp/  # my-exp/feature.yaml
edgekd init raspberry-pi-4 pi.yaml   # a device profile to edit, then --device pi.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def templates() -> None:
    """List the pipelines and device profiles `edgekd init` can copy, with what each is for."""
    from edgekd.cli._common import guard
    from edgekd.cli.templates import templates as shipped

    found = guard(shipped)
    width = max(len(t.name) for t in found)
    for kind, title in (("pipeline", "Pipelines:"), ("device", "Device profiles:")):
        typer.echo(title)
        for t in found:
            if t.kind == kind:
                typer.echo(f"  {t.name:<{width}}  {t.description()}")
        typer.echo("")
    typer.echo("Copy one to edit: edgekd init NAME [DIR]  (no NAME: mobile_vision into the current folder)")


def init(
    template: Annotated[str, typer.Argument(help="A name from `edgekd templates`.")] = "mobile_vision",
    dest: Annotated[Path, typer.Argument(help="Folder to copy into, or a file name ending in .yaml.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Replace the file if it already exists.")] = False,
) -> None:
    """Copy a shipped pipeline or device profile out for editing (never over an existing file without --force)."""
    from edgekd.cli._common import guard
    from edgekd.cli.templates import copy_template

    t, path = guard(copy_template, template, dest, force)
    typer.echo(f"wrote {path} ({t.description()})")
    if t.kind == "pipeline":
        typer.echo(f"next: edgekd validate {path} && edgekd run {path}")
    else:
        typer.echo(f"next: edit it, then edgekd bench MODEL --device {path} (or a benchmark stage's devices: [{path}])")
