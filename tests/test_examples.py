"""examples/: the Raspberry Pi app runs with ai-edge-litert + numpy + Pillow only and feeds the model exactly as
edgekd does; the Android snippet is checked for what can be checked without an Android build."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import venv

import numpy as np
import pytest
from _exported import MODELS, exported_run, write_digit_pngs
from _shared import ROOT

import edgekd
from edgekd.data.sources import load_image

PI_APP = ROOT / "examples" / "raspberry_pi" / "classify.py"
# What the app may import besides the standard library; anything heavier (or edgekd itself) is refused below.
FORBIDDEN = (
    "edgekd",
    "torch",
    "tensorflow",
    "onnx",
    "onnxruntime",
    "sklearn",
    "scipy",
    "litert_torch",
    "tflite_support",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return exported_run(tmp_path_factory)


@pytest.fixture(scope="module")
def pi_app():
    spec = importlib.util.spec_from_file_location("pi_classify", PI_APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _edgekd_tensor(path, md) -> np.ndarray:
    _, c, h, w = md["input_shape"]
    x = (load_image(path, c, (h, w)) - np.float32(md["mean"])[:, None, None]) / np.float32(md["std"])[:, None, None]
    return x.transpose(1, 2, 0)[None] if md["input_layout"] == "NHWC" else x[None]


def test_pi_app_input_tensor_equals_edgekds(run, pi_app, tmp_path):
    """Same input tensor as edgekd's preprocessing, for a digit PNG and an RGB image shrunk (antialiased) or enlarged.

    PIL computes the float resize in another order than torch: they differ by at most ~1.5e-5 on [0, 1] pixels
    (1/250 of an 8-bit grey level), hence 1e-4 on the normalised values.
    """
    from PIL import Image

    png = write_digit_pngs(tmp_path, 1)[0]
    md = pi_app.read_metadata(str(run[1][MODELS["tflite-int8"]].path))
    np.testing.assert_allclose(pi_app.preprocess(str(png), md), _edgekd_tensor(png, md), atol=1e-5)
    rgb = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (183, 241, 3), dtype=np.uint8)).save(rgb)
    for layout, size in (("NCHW", [1, 3, 32, 32]), ("NHWC", [1, 3, 24, 40]), ("NCHW", [1, 3, 300, 400])):
        md3 = {"input_shape": size, "input_layout": layout, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
        got = pi_app.preprocess(str(rgb), md3)
        np.testing.assert_allclose(got, _edgekd_tensor(rgb, md3), atol=1e-4)


def _run_isolated(args: list[str]) -> subprocess.CompletedProcess:
    """Run the app with ``python -I`` (no user site, no PYTHONPATH, no cwd on the path) and an import hook that makes
    edgekd, torch, TensorFlow, onnx... unimportable, as on a Pi that has only the three packages."""
    guard = (
        "import sys, runpy\n"
        f"BAD = {FORBIDDEN!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BAD:\n"
        "            raise ImportError(f'{name} is not available on the Pi')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = {[str(PI_APP), *args]!r}\n"
        f"try:\n    runpy.run_path({str(PI_APP)!r}, run_name='__main__')\n"
        "finally:\n    print('MODULES', sorted({m.split('.')[0] for m in sys.modules}), file=sys.stderr)\n"
    )
    return subprocess.run([sys.executable, "-I", "-c", guard], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("variant", ["tflite-int8", "tflite-fp32"])
def test_pi_app_runs_with_only_litert_numpy_pillow_and_agrees_with_edgekd(run, variant, tmp_path):
    pngs = write_digit_pngs(tmp_path, 6)
    model = run[1][MODELS[variant]].path
    proc = _run_isolated([str(model), *map(str, pngs), "--json", "--top", "10"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    third_party = {m for m in proc.stderr.split("MODULES", 1)[1].strip(" []\n").replace("'", "").split(", ")}
    assert not third_party & set(FORBIDDEN)
    assert {"ai_edge_litert", "numpy", "PIL"} <= third_party
    rows = [json.loads(ln) for ln in proc.stdout.splitlines()]
    ref = edgekd.predict(model, pngs, top_k=10)
    for got, want in zip(rows, ref, strict=True):
        assert [t["label"] for t in got["top"]][:1] == [t["label"] for t in want["top"]][:1]
        probs = {t["label"]: t["probability"] for t in want["top"]}
        assert all(abs(t["probability"] - probs[t["label"]]) < 1e-5 for t in got["top"])


def test_pi_app_bad_image_is_one_line(run, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    proc = _run_isolated([str(run[1][MODELS["tflite-int8"]].path), str(bad)])
    out = [ln for ln in proc.stderr.splitlines() if ln.startswith(("error", "Traceback"))]
    assert proc.returncode == 1 and out == [f"error: cannot identify image file '{bad}'"], proc.stderr


def test_android_snippet_uses_the_interpreter_api_and_the_files_metadata():
    """Not compiled here (no Android SDK): check that it uses what the README tells the developer to copy."""
    kt = (ROOT / "examples" / "android" / "EdgekdClassifier.kt").read_text()
    for needed in ("import org.tensorflow.lite.Interpreter", "labels.txt", "quantizationParams()", "MEAN", "STD"):
        assert needed in kt, needed
    gradle = (ROOT / "examples" / "android" / "README.md").read_text()
    assert "com.google.ai.edge.litert:litert:" in gradle


@pytest.mark.slow
def test_pi_app_in_a_fresh_venv_with_only_three_packages(run, tmp_path):
    """pip install ai-edge-litert numpy pillow into an empty venv (network: PyPI), then classify."""
    env_dir = tmp_path / "pi-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "ai-edge-litert", "numpy", "pillow"], capture_output=True, text=True
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True).stdout.lower()
    assert "torch" not in freeze and "edgekd" not in freeze and "tensorflow" not in freeze
    pngs = write_digit_pngs(tmp_path / "img", 4)
    model = run[1][MODELS["tflite-int8"]].path
    proc = subprocess.run(
        [str(py), str(PI_APP), str(model), *map(str, pngs), "--json"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(ln) for ln in proc.stdout.splitlines()]
    ref = edgekd.predict(model, pngs)
    assert [r["top"][0]["label"] for r in rows] == [r["top"][0]["label"] for r in ref]
    print("fresh venv packages:", freeze.replace("\n", " "))
