"""One small trained-and-exported run shared by the metadata/predict/inspect/examples/api tests.

The run directory lives in pytest's session base folder, so the first module that asks runs the pipeline (~25 s) and
later ones get every stage from edgekd's cache (~1 s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _shared import tiny_pipeline_doc

MODELS = {
    "onnx-fp32": "onnx/student-fp32",
    "onnx-int8": "onnx/student-int8",
    "tflite-fp32": "tflite/student-fp32",
    "tflite-int8": "tflite/student-int8",
}


def exported_doc() -> dict:
    """The tiny pipeline (8x8 digits), trained a little longer so the student's answers mean something."""
    doc = tiny_pipeline_doc(name="exported")
    stages = [s for s in doc["stages"] if s["stage"] not in ("benchmark", "report")]
    by = {s["stage"]: s for s in stages}
    by["teacher"]["train"].update(epochs=4, lr=0.01)
    by["distill"]["train"].update(epochs=8, lr=0.02)
    by["distill"]["baseline"] = False
    by["convert_tflite"]["precisions"] = ["fp32", "int8"]
    doc["stages"] = stages
    return doc


def exported_run(tmp_path_factory) -> tuple[Path, dict]:
    """(run directory, artifacts by name) of the shared run; cached after the first call in a session."""
    import edgekd

    run_dir = tmp_path_factory.getbasetemp() / "edgekd-exported-run"
    result = edgekd.run_pipeline(exported_doc(), run_dir)
    return run_dir, result.artifacts


def write_digit_pngs(folder: Path, n: int = 8) -> list[Path]:
    """``n`` real 8x8 digits from the test end of scikit-learn's set, as 8-bit greyscale PNG files."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(d.images) - n, len(d.images)):
        p = folder / f"digit{i}_label{d.target[i]}.png"
        Image.fromarray(np.round(d.images[i] / 16 * 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths
