"""Every distillation method's student is the plain student: same state-dict keys, through ONNX and TFLite int8.

One tiny run per method (tests/distill/methods_catalog.py). All runs share one run directory, so the teacher is
trained once; the export stages verify each file in onnxruntime and the LiteRT interpreter themselves.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _shared import tiny_pipeline_doc
from methods_catalog import METHODS

from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline
from edgekd.models import build_model

pytestmark = pytest.mark.integration


def _doc(entry: dict) -> dict:
    doc = tiny_pipeline_doc()
    teacher, distill = doc["stages"][0], doc["stages"][1]
    distill["baseline"] = False
    middle = copy.deepcopy(entry["_stages"]) if "_stages" in entry else [{**distill, **copy.deepcopy(entry)}]
    doc["stages"] = [
        teacher,
        *middle,
        {"stage": "export_onnx", "exporter": "torchscript", "min_int8_agreement": 0.0},
        {"stage": "convert_tflite", "precisions": ["int8"], "min_int8_agreement": 0.0},
    ]
    return doc


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("methods")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_student_exports_unchanged(method, run_dir):
    cfg = validate_document(_doc(METHODS[method]))
    res = run_pipeline(cfg, run_dir)  # one directory: the teacher is trained once, for every method
    student = res.artifacts["student"]
    meta = student.meta
    fresh = build_model(meta["model"], meta["input_shape"][1], len(meta["labels"]))
    saved = torch.load(student.path, map_location="cpu", weights_only=True)
    assert set(saved) == set(fresh.state_dict()), "the method left training-only parts in the student"
    assert res.artifacts["onnx/student-int8"].meta["precision"] == "int8"
    assert res.artifacts["tflite/student-int8"].meta["precision"] == "int8"
