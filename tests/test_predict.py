"""``edgekd predict``: the exported files answer like the PyTorch student on the same image files; bad input is one
line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from _exported import MODELS, exported_run, write_digit_pngs
from typer.testing import CliRunner

import edgekd
from edgekd.cli import app
from edgekd.data.sources import load_image
from edgekd.models.io import load_torch_model
from edgekd.training.loop import predict_logits


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return exported_run(tmp_path_factory)


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    return write_digit_pngs(tmp_path_factory.mktemp("digits"), 8)


@pytest.fixture(scope="module")
def torch_probs(run, pngs):
    """The PyTorch student's probabilities on the PNG files, through the training preprocessing."""
    arts = run[1]
    meta = arts["student"].meta
    x = np.stack([load_image(p, 1, 8) for p in pngs])
    logits = predict_logits(load_torch_model(arts["student"]), x, meta["mean"], meta["std"])
    return torch.softmax(logits.double(), 1).numpy()


@pytest.mark.parametrize("variant", sorted(MODELS))
def test_predict_agrees_with_the_pytorch_student(run, pngs, torch_probs, variant):
    preds = edgekd.predict(run[1][MODELS[variant]].path, pngs, top_k=10)
    got = np.zeros_like(torch_probs)
    for i, p in enumerate(preds):
        assert p["image"] == str(pngs[i]) and len(p["top"]) == 10
        for t in p["top"]:
            assert t["label"] == str(t["index"])
            got[i, t["index"]] = t["probability"]
    assert np.allclose(got.sum(1), 1.0)
    top1_torch, top1 = torch_probs.argmax(1), got.argmax(1)
    if variant.endswith("fp32"):
        np.testing.assert_allclose(got, torch_probs, atol=1e-5)
        assert (top1 == top1_torch).all()
    else:  # int8 rounds: same answers on these images, probabilities within a few points
        assert (top1 == top1_torch).mean() >= 0.75, (top1, top1_torch)
        assert np.abs(got - torch_probs).max() < 0.15


def test_cli_predict_json_and_text(run, pngs):
    model = run[1][MODELS["tflite-int8"]].path
    res = CliRunner().invoke(app, ["predict", str(model), *map(str, pngs[:3]), "--json", "--top", "3"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["image"] for r in rows] == [str(p) for p in pngs[:3]]
    assert all(len(r["top"]) == 3 and r["top"][0]["probability"] >= r["top"][1]["probability"] for r in rows)
    text = CliRunner().invoke(app, ["predict", str(model), str(pngs[0]), "-k", "2"])
    assert text.exit_code == 0 and text.stdout.startswith(f"{pngs[0]}: ") and text.stdout.count("%") == 2


def _without_metadata(src, dst):
    import onnx

    m = onnx.load(str(src))
    del m.metadata_props[:]
    onnx.save(m, str(dst))
    return dst


def test_model_without_metadata_asks_for_it_then_runs_with_it(run, pngs, tmp_path):
    arts = run[1]
    bare = _without_metadata(arts[MODELS["onnx-fp32"]].path, tmp_path / "foreign.onnx")
    res = CliRunner().invoke(app, ["predict", str(bare), str(pngs[0])])
    assert res.exit_code == 1
    assert "has no edgekd metadata" in res.output and "--mean, --std, --labels" in res.output
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(i) for i in range(10)) + "\n")
    meta = arts["student"].meta
    args = ["--mean", str(meta["mean"][0]), "--std", str(meta["std"][0]), "--labels", str(labels), "--json"]
    res = CliRunner().invoke(app, ["predict", str(bare), *map(str, pngs), *args])
    assert res.exit_code == 0, res.output
    with_md = edgekd.predict(arts[MODELS["onnx-fp32"]].path, pngs)
    assert [r["top"][0]["label"] for r in json.loads(res.stdout)] == [r["top"][0]["label"] for r in with_md]


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("not_an_image", "corrupt or unreadable image '.*notes.png'"),
        ("label_count", "9 labels given but student-int8.tflite outputs 10 classes"),
        ("missing_image", "image file not found: .*nothere.png"),
        ("not_a_model", "cannot inspect|unknown model format|not a valid"),
    ],
)
def test_bad_input_is_one_line(run, pngs, tmp_path, case, pattern):
    """The real command in a subprocess: exit code 1, one 'error:' line, no traceback."""
    import re

    model = str(run[1][MODELS["tflite-int8"]].path)
    bad = tmp_path / "notes.png"
    bad.write_text("shopping list: milk, eggs")
    labels = tmp_path / "nine.txt"
    labels.write_text("\n".join("abcdefghi") + "\n")
    args = {
        "not_an_image": [model, str(bad)],
        "label_count": [model, str(pngs[0]), "--labels", str(labels)],
        "missing_image": [model, str(tmp_path / "nothere.png")],
        "not_a_model": [str(labels), str(pngs[0])],
    }[case]
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", "predict", *args], capture_output=True, text=True, timeout=300
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and re.search(pattern, lines[0]), proc.stderr
