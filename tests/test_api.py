"""The Python API: run_pipeline / load_pipeline / load_run / run_stage / predict / inspect, imported lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest
from _exported import MODELS, exported_doc, exported_run

import edgekd
from edgekd.core.errors import ConfigError, EdgekdError


def test_import_edgekd_stays_light():
    """`import edgekd` (and so `edgekd --help`) loads no torch; the API appears on first use."""
    code = (
        "import sys, edgekd; assert 'torch' not in sys.modules and 'edgekd.api' not in sys.modules; "
        "f = edgekd.run_pipeline; assert callable(f) and 'torch' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert set(edgekd.__all__) >= {"run_pipeline", "load_pipeline", "run_stage", "predict", "inspect"}
    with pytest.raises(AttributeError):
        edgekd.no_such_thing  # noqa: B018


def test_load_pipeline_from_dict_with_overrides():
    cfg = edgekd.load_pipeline(exported_doc(), ["seed=3", "distill.train.epochs=2"])
    assert cfg.seed == 3 and cfg.stage("distill").train.epochs == 2
    assert edgekd.load_pipeline(cfg) is cfg
    with pytest.raises(ConfigError, match="modle"):
        doc = exported_doc()
        doc["stages"][0]["modle"] = {}
        edgekd.load_pipeline(doc)


def test_run_pipeline_is_cached_and_load_run_finds_every_artifact(tmp_path_factory):
    run_dir, _ = exported_run(tmp_path_factory)
    again = edgekd.run_pipeline(exported_doc(), run_dir)
    assert {s.status for s in again.stages} == {"cached"}
    loaded = edgekd.load_run(run_dir)
    assert set(MODELS.values()) <= set(loaded) and all(a.verify() for a in loaded.values())
    with pytest.raises(EdgekdError, match="not a finished edgekd run directory"):
        edgekd.load_run(tmp_path_factory.mktemp("empty"))


def test_run_stage_from_a_notebook(tmp_path_factory, tmp_path):
    """One stage on a finished run's artifacts, into a folder of one's own; the file it writes is self-describing."""
    run_dir, _ = exported_run(tmp_path_factory)
    arts = edgekd.load_run(run_dir)
    cfg = edgekd.load_pipeline(exported_doc())
    out = edgekd.run_stage("export_onnx", {"int8": False, "exporter": "torchscript"}, arts, tmp_path / "nb", cfg)
    assert [a.name for a in out] == ["onnx/student-fp32"] and out[0].path.parent == tmp_path / "nb"
    md = edgekd.read_metadata(out[0].path)
    assert md["labels"] == [str(i) for i in range(10)] and md["stage"] == "export_onnx"
    info = edgekd.inspect(out[0].path)
    assert info["precision"] == "fp32" and info["metadata"]["input_shape"] == [1, 1, 8, 8]
    with pytest.raises(ConfigError, match="stage 'export_onnx': opset"):
        edgekd.run_stage("export_onnx", {"opset": 3}, arts, tmp_path / "bad")
