"""Shared fixtures: tiny data, tiny models and tiny pipelines so every test runs in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("EDGEKD_QUIET", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The only torchvision wheel for this machine is a CUDA build whose compiled operators cannot load beside the CPU torch:
# its model code (and timm's) runs with the documented workaround (edgekd.models.libraries, docs/how-to/your-model.md).
os.environ.setdefault("EDGEKD_TORCHVISION_WITHOUT_OPS", "1")

from _shared import ROOT, tiny_pipeline_doc  # noqa: F401  (re-exported for fixtures)

from edgekd.models.libraries import prepare_torchvision

prepare_torchvision()  # before any test imports timm, torchvision or transformers' image code itself


@pytest.fixture
def write_pipeline(tmp_path):
    """Write a pipeline dict (or YAML text) to a file and return its path."""

    def _write(doc, name: str = "pipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
        return path

    return _write


@pytest.fixture
def tiny_doc() -> dict:
    return tiny_pipeline_doc()
