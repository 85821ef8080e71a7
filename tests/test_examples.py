"""examples/: the Raspberry Pi app runs with ai-edge-litert + numpy + Pillow only and feeds the model exactly as
edgekd does; the Android snippet is checked for what can be checked without an Android build."""

from __future__ import annotations

import importlib.util
import json
import re
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
ANDROID_APP = ROOT / "examples" / "android" / "EdgekdClassifier.kt"
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


def test_android_snippet_uses_mediapipe_then_the_interpreter_with_the_files_metadata():
    """Not compiled here (no Android SDK): MediaPipe's ImageClassifier first, then the Interpreter fed from the
    ``edgekd`` JSON in the file (its flatbuffer walk is the schema's field numbers, checked against the schema here)."""
    kt = ANDROID_APP.read_text()
    assert kt.index("ImageClassifier.createFromOptions") < kt.index("Interpreter(model")
    for needed in ("BitmapImageBuilder", "setModelAssetPath", "quantizationParams()", "fun edgekdMetadata"):
        assert needed in kt, needed
    for key in ("input_layout", "input_shape", "mean", "std", "labels"):
        assert f'meta.get{"String" if key == "input_layout" else "JSONArray"}("{key}")' in kt, key
    import inspect

    from ai_edge_litert import schema_py_generated as fb

    # each field(table, slot) the Kotlin reads, and the vtable offset (4 + 2 * slot) the generated reader uses for it
    uses = {
        "field(root, 4)": fb.Model.Buffers,
        "field(root, 6)": fb.Model.Metadata,
        "field(entry, 0)": fb.Metadata.Name,
        "field(entry, 1)": fb.Metadata.Buffer,
        "field(buffer, 0)": fb.Buffer.DataAsNumpy,
    }
    for call, reader in uses.items():
        slot = int(call.rstrip(")").rsplit(" ", 1)[1])
        assert call in kt and f"Offset({4 + 2 * slot})" in inspect.getsource(reader), call
    readme = (ROOT / "examples" / "android" / "README.md").read_text()
    assert "com.google.ai.edge.litert:litert:" in readme and "com.google.mediapipe:tasks-vision:" in readme


# Decimals an example may hold: rounding (0.5). Any other fraction is a model's normalisation (or another value the
# file's metadata supplies) copied by hand; whole numbers (0, 1, 255, int8's -128..127) are checked as integers, and
# format specs such as `:.1f` are not numbers.
ALLOWED_FRACTIONS = {0.5}
DECIMAL = re.compile(r"(?<![\w.:])(\d*\.\d+(?:[eE][-+]?\d+)?[fF]?|\d+[fF])(?![\w.])")
INTEGER = re.compile(r"(?<![\w.])\d+(?![\w.])")
LABEL_LIST = re.compile(r"""(?:["'][^"'\n]{0,24}["']\s*,\s*){2,}["'][^"'\n]{0,24}["']""")


def hard_coded_model_numbers(text: str, forbidden_ints: set[int]) -> list[str]:
    """What in an example's source the model's metadata should supply: fractions other than 0.5 (normalisation
    values), the shipped pipelines' input size and class count as numbers, lists of three or more quoted labels."""
    found = []
    for m in DECIMAL.finditer(text):
        value = float(m.group(1).rstrip("fF"))
        if (value != int(value) and value not in ALLOWED_FRACTIONS) or int(value) in forbidden_ints:
            found.append(m.group(0))
    found += [m.group(0) for m in INTEGER.finditer(text) if int(m.group(0)) in forbidden_ints]
    return found + [m.group(0) for m in LABEL_LIST.finditer(text)]


def _forbidden_ints(run) -> set[int]:
    sizes = {int(m) for p in (ROOT / "pipelines").rglob("*.yaml")
             for m in re.findall(r"image_size:\s*(\d+)", p.read_text())}  # fmt: skip
    return sizes | {len(run[1][MODELS["tflite-fp32"]].meta["labels"])}


EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*") if p.suffix in (".py", ".kt"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_examples_take_every_model_number_from_the_files_metadata(run, example):
    assert hard_coded_model_numbers(example.read_text(), _forbidden_ints(run)) == []


def test_the_scan_catches_a_hard_coded_normalisation_size_or_label_list(run):
    kt = ANDROID_APP.read_text()
    forbidden = _forbidden_ints(run)
    marker = "class EdgekdClassifier("
    for line, caught in (
        ("val STD = floatArrayOf(0.37575f)", "0.37575f"),
        ("val MEAN = 0.30495", "0.30495"),
        ("val SHAPE = intArrayOf(1, 1, 32, 32)", "32"),
        ('val LABELS = listOf("0", "1", "2")', '"0", "1", "2"'),
    ):
        assert caught in hard_coded_model_numbers(kt.replace(marker, f"{line}\n{marker}"), forbidden), line
    py = PI_APP.read_text()
    assert hard_coded_model_numbers(py.replace("def preprocess(", "STD = [0.3233]\ndef preprocess("), forbidden)


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
