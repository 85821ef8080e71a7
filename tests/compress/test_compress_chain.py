"""The real CLI through prune -> qat -> export, prune -> export and qat -> export on tiny models, one run.

Every variant must come out as a report row with the precision found in its file; the QAT int8 files must hold the
ranges QAT learned (every learned scale found in the file); an unstructured-pruned model gets the report's note that
dense runtimes run it no faster.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

# the rows the test reads (the teacher always runs too); every other variant is still built and verified by its stage
MEASURED = ["student_pruned", "onnx/student_pruned-int8", "tflite/student_pruned-int8", "onnx/student_pruned_qat-int8",
            "tflite/student_pruned_qat-int8", "onnx/student_qat-int8", "tflite/student_qat-int8"]  # fmt: skip
STUDENT = {"name": "mobilenetv2_student", "kwargs": {"width": 8, "cfg": [[1, 8, 1, 1], [2, 16, 1, 2]], "last": 32}}


def _doc() -> dict:
    kd = {"temperature": 2.0, "alpha": 0.5}
    one = {"epochs": 1, "batch_size": 128}
    return {
        "name": "chain",
        "data": {"source": "digits", "image_size": 8, "augment": {"enabled": False}},
        "stages": [
            {"stage": "teacher", "model": {"name": "tiny_cnn", "kwargs": {"widths": [8, 16, 16]}}, "train": one},
            {"stage": "distill", "student": STUDENT, "baseline": False, "train": one, **kd},
            {"stage": "prune", "macs_reduction": 0.4, "steps": 1, "round_to": 4, "finetune": one, **kd},
            {
                "stage": "prune",
                "name": "sparse",
                "mode": "unstructured",
                "ratio": 0.5,
                "output": "student_sparse",
                "finetune": one,
            },
            {"stage": "qat", "model": "student_pruned", "output": "student_pruned_qat", "train": {**one, "epochs": 2}},
            {"stage": "qat", "name": "qat_student", "model": "student", "output": "student_qat", "train": one},
            {
                "stage": "export_onnx",
                "exporter": "torchscript",
                "models": ["student_pruned", "student_pruned_qat", "student_qat"],
                "min_int8_agreement": 0.3,
            },
            *[
                {
                    "stage": "convert_tflite",
                    "name": f"tflite_{m}",
                    "model": m,
                    "precisions": ["int8"],
                    "min_int8_agreement": 0.3,
                }
                for m in ("student_pruned", "student_pruned_qat", "student_qat")
            ],
            {"stage": "benchmark", "warmup": 1, "runs": 3, "eval_limit": 64, "models": MEASURED},
            {"stage": "report", "checks": False},
        ],
    }


def test_prune_qat_export_chains_end_to_end(write_pipeline, tmp_path):
    pipe = write_pipeline(_doc())
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", "run", str(pipe), "-o", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    report = json.loads(next(run.glob("*_report/report.json")).read_text())
    rows = {r["name"]: r for r in report["variants"]}
    for variant, precision in {
        "student_pruned/pytorch": "fp32",
        "student_pruned/onnx-int8": "int8",  # prune -> export (post-training int8)
        "student_pruned/tflite-int8": "int8",
        "student_pruned_qat/onnx-int8": "int8",  # prune -> qat -> export
        "student_pruned_qat/tflite-int8": "int8",
        "student_qat/onnx-int8": "int8",  # qat -> export
        "student_qat/tflite-int8": "int8",
    }.items():
        assert rows[variant]["status"] == "ok", (variant, rows[variant].get("error"))
        assert rows[variant]["precision"] == precision, variant
    macs = {o["name"]: o["meta"].get("macs") for m in run.glob("*/manifest.json")
            for o in json.loads(m.read_text())["outputs"]}  # fmt: skip
    assert macs["student_pruned"] <= 0.6 * macs["student"]
    assert macs["student_pruned_qat"] == macs["student_pruned"]
    # unstructured pruning is offered, and the report says what it does not buy
    assert any("student_sparse: unstructured pruning" in n and "not speed up" in n for n in report["notes"])
    for manifest in run.glob("*/manifest.json"):
        for out in json.loads(manifest.read_text())["outputs"]:
            meta = out["meta"]
            scales = meta.get("qat_scales") or (meta.get("converter") or {}).get("scales")
            if "qat" in out["name"] and out["name"].endswith("int8"):
                assert scales["found_in_file"] == scales["learned_activation_scales"] > 0, out["name"]
                assert scales["weight_scales_found"] == scales["learned_weight_scales"] > 0, out["name"]
