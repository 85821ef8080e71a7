"""Fixtures for the device tests: a tiny stored model with its eval data, and a real OpenSSH server on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekd.edge.transports.loopback_sshd import LoopbackSshd, SshdUnavailable
from edgekd.edge.transports.measure import Settings, Variant

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict:
    """tiny_cnn.tflite (1x8x8 -> 4 classes, see data/make_tiny_model.py), its metadata and a 40-sample eval set."""
    out = tmp_path_factory.mktemp("tiny")
    model = shutil.copyfile(DATA / "tiny_cnn.tflite.bin", out / "tiny_cnn.tflite")
    meta = {"input_layout": "NCHW", "input_shape": [1, 1, 8, 8], "mean": [0.5], "std": [0.25], "precision": "fp32"}
    (out / "tiny_cnn.meta.json").write_text(json.dumps(meta))
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8), dtype=np.float32)
    np.savez(out / "eval.npz", x=x, y=rng.integers(0, 4, 40), teacher_pred=rng.integers(0, 4, 40))
    return {"dir": out, "model": Path(model), "meta": out / "tiny_cnn.meta.json", "data": out / "eval.npz"}


@pytest.fixture
def fast() -> Settings:
    """Few runs: these tests check transports and rows, not speed."""
    return Settings(threads=1, warmup=1, runs=5)


@pytest.fixture
def variant(tiny) -> Variant:
    return Variant("tiny/tflite-fp32", tiny["model"], tiny["meta"], "litert", {"format": "tflite"})


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real sshd on a free port of 127.0.0.1, with its own keys and an ssh_config alias (see loopback_sshd.py)."""
    try:
        server = LoopbackSshd.start(tmp_path_factory.mktemp("sshd"))
    except SshdUnavailable as exc:
        print(f"\nSKIP reason: {exc}", file=sys.stderr)
        pytest.skip(f"sshd cannot start here: {exc}")
    yield server
    server.stop()
