"""edgekd: distil a big PyTorch model into a small one and ship it to the edge, with measured numbers.

The Python API (``edgekd.run_pipeline``, ``load_pipeline``, ``load_run``, ``run_stage``, ``predict``, ``inspect``,
``read_metadata``) is imported on first use, so ``import edgekd`` and ``edgekd --help`` stay instant.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_pipeline": "edgekd.api",
    "run_pipeline": "edgekd.api",
    "load_run": "edgekd.api",
    "run_stage": "edgekd.api",
    "predict": "edgekd.api",
    "inspect": "edgekd.api",
    "read_metadata": "edgekd.formats.metadata",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgekd' has no attribute {name!r}")
