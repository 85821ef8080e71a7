"""Model registry and the single factory: zoo names or a user's ``package.module:Class`` import path."""

from __future__ import annotations

import importlib
import re
from typing import Any

from torch import nn

from edgekd.errors import ConfigError, ModelError
from edgekd.registry import Registry

MODELS: Registry = Registry("model")
register_model = MODELS.register


_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
_NAME = re.compile(r"[A-Za-z_]\w*\Z")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def import_object(path: str) -> Any:
    """Import ``package.module:Name``: the only user code a pipeline ever imports is the path its author wrote.

    Whatever importing it raises (a syntax error, a missing dependency, an exception at import time) becomes one
    ConfigError naming the path: ``Exception`` is caught, not ``BaseException`` (Ctrl-C still stops edgekd).
    """
    module_name, colon, attr = path.partition(":")
    if not colon or not _MODULE.match(module_name) or not _NAME.match(attr):
        raise ConfigError(f"model import path '{path}' must look like 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module '{module_name}' for model '{path}': {_first_line(exc)}") from None
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else module_name
        raise ConfigError(f"cannot import model '{path}': syntax error at {where}: {exc.msg}") from None
    except Exception as exc:  # user code running at import time
        raise ConfigError(
            f"cannot import model '{path}': importing '{module_name}' raised {type(exc).__name__}: {_first_line(exc)}"
        ) from None
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
        raise ModelError(f"cannot build model '{label}' with kwargs {sorted(kwargs)}: {_first_line(exc)}") from None
    except Exception as exc:  # the user's constructor (or a zoo model given odd kwargs) raised
        raise ModelError(f"cannot build model '{label}': {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model '{label}' did not return a torch.nn.Module (got {type(model).__name__})")
    return model
