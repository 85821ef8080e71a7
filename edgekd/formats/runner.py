"""Running exported models: edgekd reuses the standalone device agent (``devices/agent.py``) as its only inference
and measurement code, so verification on the host and benchmarking on a device cannot drift apart."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from edgekd.core.errors import EdgekdError


def agent_path() -> Path:
    """Location of the agent file: ``devices/agent.py`` in the source tree, or the copy installed in the package."""
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "devices" / "agent.py", here.parents[1] / "_devices" / "agent.py"):
        if cand.is_file():
            return cand
    raise EdgekdError("cannot find the edgekd device agent (devices/agent.py); reinstall edgekd")


@cache
def agent() -> ModuleType:
    """The agent module, imported from its file."""
    path = agent_path()
    spec = importlib.util.spec_from_file_location("edgekd_device_agent", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_runner(model_path: str | Path, meta: dict, threads: int = 1):
    """A Runner (see devices/agent.py) for an .onnx, .tflite or .pt2 file; ``predict`` takes raw [0, 1] NCHW images."""
    return agent().load_runner(str(model_path), meta, threads)
