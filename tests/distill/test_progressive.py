"""Progressive distillation (teacher assistant): teacher -> assistant -> student as two distill stages in one pipeline.

The assistant is a torch model: it is benchmarked in PyTorch and shown in the report under its own role; export and
conversion take the final student.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from _shared import tiny_pipeline_doc
from methods_catalog import ASSISTANT
from strategy_helpers import assert_one_line_error, edgekd, fresh_keys

from edgekd.core.errors import ConfigError
from edgekd.core.loader import validate_document
from edgekd.core.pipeline import run_pipeline


def progressive_doc() -> dict:
    doc = tiny_pipeline_doc()
    teacher, distill, export, _convert, bench, report = doc["stages"]
    distill = {**distill, "teachers": ["assistant"]}
    export = {**export, "int8": False}  # int8 export of every method is tests/distill/test_method_export.py's
    doc["stages"] = [
        teacher,
        copy.deepcopy(ASSISTANT),
        distill,
        export,
        {**bench, "eval_limit": 64, "models": ["teacher", "assistant", "student"]},
        report,
    ]
    return doc


@pytest.mark.integration
def test_progressive_chain_runs_end_to_end(tmp_path):
    res = run_pipeline(validate_document(progressive_doc()), tmp_path / "run")
    arts = res.artifacts
    assert arts["assistant"].meta["teachers"] == ["teacher"]
    assert arts["student"].meta["teachers"] == ["assistant"]
    saved = torch.load(arts["student"].path, map_location="cpu", weights_only=True)
    assert set(saved) == fresh_keys()
    # export takes the final student, never the assistant
    assert "onnx/student-fp32" in arts
    assert not any(n.startswith("onnx/assistant") for n in arts)
    report = json.loads((tmp_path / "run" / "06_report" / "report.json").read_text())
    rows = {r["name"]: r for r in report["variants"]}
    assert rows["assistant/pytorch"]["role"] == "assistant" and rows["assistant/pytorch"]["status"] == "ok"
    assert 0 <= rows["assistant/pytorch"]["teacher_agreement"] <= 1
    assert rows["student/pytorch"]["role"] == "student"
    assert set(rows) == {"teacher/pytorch", "assistant/pytorch", "student/pytorch"}
    # the report's targets compare the student with the teacher, never the assistant
    ratio = next(f for f in report["figures"] if f["key"] == "params_ratio")
    assert ratio["name"] == "teacher params / student params" and ratio["value"] == pytest.approx(
        rows["teacher/pytorch"]["params"] / rows["student/pytorch"]["params"], rel=1e-2
    )
    assert "assistant/pytorch" in (tmp_path / "run" / "06_report" / "report.md").read_text()


def test_misspelled_assistant_is_a_one_line_error_at_validate(write_pipeline):
    doc = progressive_doc()
    doc["stages"][2]["teachers"] = ["asistant"]
    assert_one_line_error(
        edgekd("validate", write_pipeline(doc)),
        r"stages\[2\] \(distill\): teacher 'asistant' is not produced by any earlier stage \(did you mean "
        r"'assistant'\?\); torch models available here: teacher, assistant",
    )


def test_assistant_after_its_student_is_reported_with_the_order():
    doc = progressive_doc()
    doc["stages"][1], doc["stages"][2] = doc["stages"][2], doc["stages"][1]
    with pytest.raises(ConfigError, match=r"teacher 'assistant' is produced by stage 'assistant', which runs after"):
        validate_document(doc)


def test_disabled_assistant_stage_does_not_count():
    doc = progressive_doc()
    doc["stages"][1]["enabled"] = False
    with pytest.raises(ConfigError, match=r"teacher 'assistant' is not produced by any earlier stage"):
        validate_document(doc)
