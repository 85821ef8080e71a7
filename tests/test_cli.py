"""The real ``edgekd`` command in a subprocess: exit codes and one-line errors, never a traceback."""

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
