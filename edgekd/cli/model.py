"""``edgekd predict`` and ``edgekd inspect``: use and look inside an exported model, no pipeline needed.

edgekd predict runs/mobile_vision/04_convert_tflite/student-int8.tflite digit.png other.png --top 3
edgekd inspect runs/mobile_vision/03_export_onnx/student-int8.onnx
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def _floats(text: str | None, name: str, positive: bool = False) -> list[float] | None:
    """``--mean``/``--std``: finite numbers (and > 0 for a std, which divides); NaN would print ``nan%``."""
    import math

    from edgekd.core.errors import ConfigError

    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
        need = "positive numbers" if positive else "finite numbers"
        raise ConfigError(f"{name} must be comma-separated {need}, e.g. 0.485,0.456,0.406 (got '{text}')")
    return values


def predict(
    model: Annotated[Path, typer.Argument(help="Exported model: .onnx or .tflite (fp32 or int8).")],
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, ...).")],
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="How many classes to show per image.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object per image) for scripts.")] = False,
    mean: Annotated[
        str | None, typer.Option(help="Per-channel mean of [0, 1] pixels (overrides the metadata).")
    ] = None,
    std: Annotated[str | None, typer.Option(help="Per-channel std of [0, 1] pixels (overrides the metadata).")] = None,
    labels: Annotated[
        str | None, typer.Option(help="Label file (one per line) or 'a,b,c' (overrides the metadata).")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="Inference threads.")] = 1,
) -> None:
    """Classify image files with an exported model, preprocessed exactly as in training (read from its metadata)."""
    from edgekd.cli._common import guard
    from edgekd.formats.predict import predict_images, read_labels

    lab = guard(read_labels, labels) if labels is not None else None
    preds = guard(
        predict_images, model, list(images), top, guard(_floats, mean, "--mean"),
        guard(_floats, std, "--std", True), lab, threads,
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in preds], indent=2))
        return
    for p in preds:
        best = ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in p.top)
        typer.echo(f"{p.image}: {best}")


def inspect(
    model: Annotated[Path, typer.Argument(help="An .onnx or .tflite file (edgekd's or anyone's).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
) -> None:
    """Show what is inside a model file: I/O, precision per tensor, operators, size, parameters, MACs, metadata."""
    from edgekd.cli._common import guard
    from edgekd.formats.inspect import format_inspection, inspect_file

    info = guard(inspect_file, model)
    typer.echo(json.dumps(info, indent=2, default=str) if as_json else format_inspection(info))
