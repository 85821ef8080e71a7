"""A real app client: MediaPipe's ImageClassifier loads the TFLite files the pipeline exports and gives ``edgekd
predict``'s answers, reading input size, normalisation and labels from the files' own metadata.

MediaPipe runs in its own virtual environment (``make mediapipe``, or ``EDGEKD_MEDIAPIPE_PYTHON``), through
``examples/mediapipe/classify.py``; without it the test skips and says how to install it. About 5 s once the shared
exported run exists (tests/_exported.py).
"""

from __future__ import annotations

import pytest
from _exported import MODELS, exported_run
from _mediapipe import agreement, mediapipe_python, write_pngs

from edgekd.data import SplitData


@pytest.fixture(scope="module")
def mediapipe():
    python, version = mediapipe_python()
    if python is None:
        print(f"SKIPPED: {version}")
        pytest.skip(version)
    return python


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The exported run and its whole test split (scikit-learn digits at the model's size) as PNG files."""
    _, artifacts = exported_run(tmp_path_factory)
    x = SplitData.load(artifacts["dataset"].path).arrays["test"][0]
    return artifacts, write_pngs(x, tmp_path_factory.mktemp("mediapipe-pngs"))


@pytest.mark.parametrize("variant", ["tflite-fp32", "tflite-int8"])
def test_mediapipe_image_classifier_agrees_with_edgekd_predict(mediapipe, digits, variant):
    artifacts, pngs = digits
    got = agreement(mediapipe, artifacts[MODELS[variant]].path, pngs)
    print(f"{variant}: MediaPipe top-1 = edgekd predict on {got['agree']}/{got['images']} test images, "
          f"max top-1 probability difference {got['max_prob_diff']:.2e}")  # fmt: skip
    assert got["images"] == len(pngs) >= 300
    assert got["agreement"] >= 0.99
