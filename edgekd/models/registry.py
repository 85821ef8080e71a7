"""The model registry (zoo names) and the safe import of a user's ``package.module:Class``; a leaf: the zoo
registers itself here, edgekd.models.factory builds from either."""

from __future__ import annotations

import importlib
import re
from typing import Any

from edgekd.core.errors import ConfigError
from edgekd.core.registry import Registry

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
