"""Shared fixtures: tiny data, tiny models and tiny pipelines so every test runs in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("EDGEKD_QUIET", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _shared import ROOT, tiny_pipeline_doc  # noqa: F401  (re-exported for fixtures)


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
