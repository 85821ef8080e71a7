"""The single model factory: a zoo name or a user's ``package.module:Class`` import path, plus ``kwargs``; a timm or
torchvision model by name (edgekd.models.libraries); or a Hugging Face image-classification model saved in a local
folder (edgekd.models.hf). ``pretrained``: a local weights file loaded into the new model."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edgekd.core.errors import ModelError
from edgekd.models import vit, zoo  # noqa: F401  (register the built-in models)
from edgekd.models.registry import MODELS, _first_line, import_object


def build_model(spec: dict, in_channels: int, num_classes: int, pretrained: bool = True) -> nn.Module:
    """Build a model from a spec ``{"name": ...}``, ``{"import": "pkg.mod:Class"}``, ``{"timm": ...}``,
    ``{"torchvision": ...}`` (plus ``kwargs``) or ``{"hf": FOLDER}``; then load ``spec["pretrained"]`` unless
    ``pretrained`` is False (a saved artifact is rebuilt and loaded with its own weights)."""
    if spec.get("hf"):
        from edgekd.models.hf import build_hf

        return build_hf(spec["hf"], in_channels, num_classes)
    if spec.get("timm") or spec.get("torchvision"):
        from edgekd.models import libraries

        build = libraries.build_timm if spec.get("timm") else libraries.build_torchvision
        model = build(spec.get("timm") or spec["torchvision"], in_channels, num_classes, spec.get("kwargs") or {})
        return _pretrained(model, spec, num_classes) if pretrained else model
    kwargs = {"in_channels": in_channels, "num_classes": num_classes, **(spec.get("kwargs") or {})}
    if spec.get("name"):
        factory = MODELS.get(spec["name"])
        label = spec["name"]
    else:
        factory = import_object(spec["import"])
        label = spec["import"]
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise ModelError(f"cannot build model '{label}' with kwargs {sorted(kwargs)}: {_first_line(exc)}") from None
    except Exception as exc:  # the user's constructor (or a zoo model given odd kwargs) raised
        raise ModelError(f"cannot build model '{label}': {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model '{label}' did not return a torch.nn.Module (got {type(model).__name__})")
    return _pretrained(model, spec, num_classes) if pretrained else model


def _pretrained(model: nn.Module, spec: dict, num_classes: int) -> nn.Module:
    if not spec.get("pretrained"):
        return model
    from edgekd.core.console import log
    from edgekd.models.checkpoint import load_into

    path = Path(spec["pretrained"]).expanduser()
    if not path.is_file():
        raise ModelError(f"pretrained weights '{path}' do not exist (edgekd never downloads weights: give a file)")
    return load_into(model, path, log=lambda msg: log(f"  pretrained {msg}"), new_head=num_classes)
