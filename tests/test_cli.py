"""The real ``edgekd`` command in a subprocess: exit codes and one-line errors, never a traceback."""

import json
import subprocess
import sys

import pytest
from _shared import ROOT


def edgekd(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "edgekd", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def _one_line_error(proc, code: int, pattern: str):
    import re

    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and re.search(pattern, lines[0]), lines[0]


def test_version():
    proc = edgekd("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("edgekd ")


def test_validate_default_pipeline():
    proc = edgekd("validate", ROOT / "pipelines" / "mobile_vision.yaml")
    assert proc.returncode == 0 and "valid" in proc.stdout


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "stages:\n  - stage: teacher\n    modle: {name: resnet_teacher}\n",
            r"pipe.yaml:3: stages\[0\]\.modle: unknown key",
        ),
        ("stages:\n  - stage: compress\n", r"unknown stage 'compress'.*known:"),
        ("stages:\n  - stage: distill\n    student: {name: vgg}\n", r"unknown model 'vgg'"),
        ("stages:\n  - stage: distill\n    temperature: hot\n", r"temperature: Input should be a valid number"),
        ("stages: [\n", r"malformed YAML"),
        ("data: {source: folder}\nstages: [{stage: report}]\n", r"data: Value|needs 'path'"),
    ],
)
def test_bad_config_is_one_line_exit_2(write_pipeline, text, pattern):
    _one_line_error(edgekd("validate", write_pipeline(text)), 2, pattern)
    _one_line_error(edgekd("run", write_pipeline(text)), 2, pattern)


def test_missing_pipeline_file(tmp_path):
    _one_line_error(edgekd("run", tmp_path / "nope.yaml"), 2, "does not exist")


def test_missing_dataset_folder_fails_the_data_stage(write_pipeline, tmp_path, tiny_doc):
    tiny_doc["data"] = {"source": "folder", "path": str(tmp_path / "no_such_dir")}
    _one_line_error(
        edgekd("run", write_pipeline(tiny_doc), "-o", tmp_path / "run"),
        1,
        r"stage 'data': dataset folder .*no_such_dir' does not exist",
    )


def test_teacher_checkpoint_for_other_architecture(write_pipeline, tmp_path, tiny_doc):
    import torch

    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    tiny_doc["stages"][0]["checkpoint"] = str(tmp_path / "other.pt")
    _one_line_error(
        edgekd("run", write_pipeline(tiny_doc), "-o", tmp_path / "run"),
        1,
        r"stage 'teacher': checkpoint .*other.pt' does not fit the ResNetTeacher architecture",
    )


def test_report_goals_decide_the_exit_code(write_pipeline, tmp_path, tiny_doc, monkeypatch):
    """A goal the run misses: exit 1, one error line per missed goal, the table still printed; met: exit 0."""
    tiny_doc["stages"][3]["enabled"] = False  # no TFLite: the goals are about the ONNX int8 file
    tiny_doc["stages"][5]["goals"] = {"variant": "student/onnx-int8", "size_kb_max": 0.001, "int8_acc_drop_max": 100}
    pipe, out = write_pipeline(tiny_doc), tmp_path / "run"
    monkeypatch.delenv("EDGEKD_QUIET", raising=False)  # the suite's default; here the console output is the test
    missed = edgekd("run", pipe, "-o", out)
    assert missed.returncode == 1, missed.stderr[-2000:]
    errors = [ln for ln in missed.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        next(ln for ln in errors if "goal size_kb_max (≤ 0.001) missed: student/onnx-int8 file size = " in ln)
    ]
    assert "student/onnx-int8" in missed.stderr and "Traceback" not in missed.stderr  # the table is there
    assert "teacher · epoch 1/1 · loss" in missed.stderr  # per-epoch lines print even off a terminal
    report = json.loads((out / "06_report" / "report.json").read_text())
    assert {(g["goal"], g["met"]) for g in report["goals"]} == {("size_kb_max", False), ("int8_acc_drop_max", True)}
    assert "distilled student − scratch baseline accuracy, PyTorch" in {f["name"] for f in report["figures"]}

    met = edgekd("run", pipe, "-o", out, "--quiet", "--set", "report.goals.size_kb_max=100000")
    assert met.returncode == 0, met.stderr[-2000:]
    assert "epoch" not in met.stderr and "✓" not in met.stderr and "student/onnx-int8" in met.stderr  # quiet: table
    log = (out / "run.log").read_text()
    assert log.count("run of pipeline 'tiny'") == 2 and "teacher · epoch 1/1" in log  # appended, run after run
