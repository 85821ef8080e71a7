"""Model registry and the single factory: zoo names or a user's ``package.module:Class`` import path."""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from edgekd.errors import ConfigError, ModelError
from edgekd.registry import Registry

MODELS: Registry = Registry("model")
register_model = MODELS.register


def import_object(path: str) -> Any:
    """Import ``package.module:Name``: the only user code a pipeline ever imports is the path its author wrote."""
    if ":" not in path:
        raise ConfigError(f"model import path '{path}' must look like 'package.module:ClassName'")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module '{module_name}' for model '{path}': {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module '{module_name}' has no attribute '{attr}' (model '{path}')") from None


def build_model(spec: dict, in_channels: int, num_classes: int) -> nn.Module:
    """Build a model from a spec ``{"name": ...}`` or ``{"import": "pkg.mod:Class"}`` plus ``kwargs``."""
    kwargs = {"in_channels": in_channels, "num_classes": num_classes, **(spec.get("kwargs") or {})}
    if spec.get("name"):
        import edgekd.models.zoo  # noqa: F401  (fills the registry)

        factory = MODELS.get(spec["name"])
        label = spec["name"]
    else:
        factory = import_object(spec["import"])
        label = spec["import"]
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise ModelError(f"cannot build model '{label}' with kwargs {sorted(kwargs)}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model '{label}' did not return a torch.nn.Module (got {type(model).__name__})")
    return model
