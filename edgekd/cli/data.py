"""``edgekd synth-photos DIR``: write the procedural RGB photo set (edgekd.data.synthetic) for the photo pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekd.cli._common import guard


def _write(root: Path, per_class: int, size: int, seed: int) -> dict[str, int]:
    from edgekd.core.errors import ConfigError
    from edgekd.data.synthetic import make_photos

    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"'{root}' exists and is not an empty folder: give a new folder (nothing is overwritten)")
    if not (7 <= per_class <= 100_000) or not (16 <= size <= 1024):
        raise ConfigError("--per-class must be 7..100000 and --size 16..1024")
    return make_photos(root, per_class, size, seed)


def synth_photos(
    root: Annotated[Path, typer.Argument(help="New folder for root/{train,val,test}/<class>/<n>.png.")],
    per_class: Annotated[int, typer.Option("--per-class", help="Images per class (70/15/15 split).")] = 300,
    size: Annotated[int, typer.Option("--size", help="Image side in pixels.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same files for the same seed.")] = 0,
) -> None:
    """Write a synthetic RGB photo set (10 shape classes in clutter) to try pipelines/photo_classifier.yaml."""
    counts = guard(_write, root, per_class, size, seed)
    typer.echo(f"{root}: synthetic RGB set, 10 classes, {size}x{size}: {counts}")
