"""The single model factory: a zoo name or a user's ``package.module:Class`` import path, plus ``kwargs``; or a
Hugging Face image-classification model saved in a local folder (edgekd.models.hf)."""

from __future__ import annotations

from torch import nn

from edgekd.core.errors import ModelError
from edgekd.models import vit, zoo  # noqa: F401  (register the built-in models)
from edgekd.models.registry import MODELS, _first_line, import_object


def build_model(spec: dict, in_channels: int, num_classes: int) -> nn.Module:
    """Build a model from a spec ``{"name": ...}`` or ``{"import": "pkg.mod:Class"}`` plus ``kwargs``."""
    if spec.get("hf"):
        from edgekd.models.hf import build_hf

        return build_hf(spec["hf"], in_channels, num_classes)
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
    return model
