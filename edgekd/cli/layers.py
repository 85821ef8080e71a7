"""``edgekd layers MODEL``: the layer names a pipeline can tap (feature, attention and relational terms,
``ignore_layers``), with each one's output shape on an example input, read by running the model once with hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekd.cli._common import guard


def _spec(model: str) -> dict:
    """A zoo name, ``timm:NAME``, ``torchvision:NAME``, ``package.module:Class``, or a folder holding a saved Hugging
    Face model."""
    library, colon, name = model.partition(":")
    if colon and library in ("timm", "torchvision"):
        return {library: name}
    if ":" in model:
        return {"import": model}
    if Path(model).expanduser().is_dir():
        return {"hf": model}
    return {"name": model}


def layer_table(model: str, channels: int, size: int, classes: int) -> list[tuple[str, str, str, int]]:
    """(name, module type, output shape, parameters of the module itself and below) for every named submodule."""
    import torch

    from edgekd.core.errors import ConfigError
    from edgekd.distill.taps import FeatureTaps, layer_names
    from edgekd.models import build_model

    if not (1 <= channels <= 4 and 8 <= size <= 1024 and 1 <= classes <= 100_000):
        raise ConfigError("--channels must be 1..4, --size 8..1024 and --classes 1..100000")
    net = build_model(_spec(model), channels, classes, pretrained=False).eval()
    names = layer_names(net)
    taps = FeatureTaps(net, names)
    try:
        with torch.no_grad():
            net(torch.zeros(1, channels, size, size))
        out = taps.take()
    finally:
        taps.remove()
    modules = dict(net.named_modules())
    rows = []
    for name in names:
        t = out.get(name)
        shape = "x".join(str(d) for d in t.shape) if isinstance(t, torch.Tensor) else "—"
        rows.append((name, type(modules[name]).__name__, shape, sum(p.numel() for p in modules[name].parameters())))
    return rows


def layers(
    model: Annotated[
        str, typer.Argument(help="A zoo name, timm:NAME, torchvision:NAME, pkg.module:Class, or a saved HF folder.")
    ],
    channels: Annotated[int, typer.Option("--channels", help="Input channels.")] = 3,
    size: Annotated[int, typer.Option("--size", help="Input side in pixels.")] = 32,
    classes: Annotated[int, typer.Option("--classes", help="Classes of the head.")] = 10,
) -> None:
    """List the layer names a pipeline can tap (feature/attention terms, ignore_layers), with output shapes."""
    rows = guard(layer_table, model, channels, size, classes)
    width = max(len(r[0]) for r in rows)
    kinds = max(len(r[1]) for r in rows)
    typer.echo(f"{model}: {len(rows)} layers, input 1x{channels}x{size}x{size}")
    for name, kind, shape, params in rows:
        typer.echo(f"  {name:<{width}}  {kind:<{kinds}}  {shape:<16}  {params:,}")
