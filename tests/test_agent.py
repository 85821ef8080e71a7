"""The standalone measurement agent (devices/agent.py): numerics per format, I/O quantisation, the CLI contract.

Tiny models are built once per session: a seeded torch CNN (1x8x8 -> 4 classes) exported to .onnx, .pt2 and, with
litert-torch, an NCHW .tflite; the same weights rebuilt in TensorFlow (NHWC) give an fp32 and a full-int8 .tflite.
TensorFlow runs in a subprocess started first, so its slow import overlaps the torch exports and never shares a
process with torch or LiteRT.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

AGENT_PATH = Path(__file__).resolve().parents[1] / "devices" / "agent.py"
MEAN, STD = [0.5], [0.25]
RUNTIMES = ("onnxruntime", "ai_edge_litert", "tflite_runtime", "torch", "tensorflow", "edgekd")


def _load_agent():
    """Import the agent by file path, the way edgekd does."""
    spec = importlib.util.spec_from_file_location("edgekd_device_agent", AGENT_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


agent = _load_agent()


def _meta(layout: str, precision: str = "fp32") -> dict:
    return {
        "input_layout": layout,
        "input_shape": [1, 1, 8, 8],
        "mean": MEAN,
        "std": STD,
        "labels": ["a", "b", "c", "d"],
        "precision": precision,
    }


class TinyCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.relu(self.conv2(x)).mean(dim=(2, 3))
        return self.fc(x)


# The same network in TensorFlow, NHWC, from the torch weights; SAME padding at stride 1 equals torch's padding=1.
# Plain tf ops and tf.Module rather than Keras: nothing here depends on the Keras 2/3 split.
_TF_SCRIPT = r"""
import sys, numpy as np, tensorflow as tf
w = dict(np.load(sys.argv[1])); out = sys.argv[2]

class Net(tf.Module):
    def __init__(self):
        self.v = {k: tf.Variable(v) for k, v in w.items()}
    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
    def __call__(self, x):
        v = self.v
        x = tf.nn.relu(tf.nn.conv2d(x, v["c1w"], 1, "SAME") + v["c1b"])
        x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        x = tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, v["c2w"], 1, "SAME") + v["c2b"]), axis=[1, 2])
        return tf.matmul(x, v["fcw"]) + v["fcb"]

net = Net()
def converter():
    return tf.lite.TFLiteConverter.from_concrete_functions([net.__call__.get_concrete_function()], net)

c = converter()
open(out + "/tf_nhwc_fp32.tflite", "wb").write(c.convert())
calib = w["calib"]
c = converter()
c.optimizations = [tf.lite.Optimize.DEFAULT]
c.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
c.inference_input_type = tf.int8
c.inference_output_type = tf.int8
open(out + "/tf_nhwc_int8.tflite", "wb").write(c.convert())
"""


def _start_tf_build(model: TinyCNN, calib: np.ndarray, out: Path) -> subprocess.Popen:
    """Start the TensorFlow NHWC build (fp32 + full int8) in the background; torch exports run meanwhile."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    conv = {"c1w": sd["conv1.weight"], "c2w": sd["conv2.weight"]}
    weights = {k: w.transpose(2, 3, 1, 0) for k, w in conv.items()}  # OIHW -> HWIO
    weights.update(c1b=sd["conv1.bias"], c2b=sd["conv2.bias"], fcw=sd["fc.weight"].T.copy(), fcb=sd["fc.bias"])
    np.savez(out / "weights.npz", calib=calib.transpose(0, 2, 3, 1), **weights)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-c", _TF_SCRIPT, str(out / "weights.npz"), str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def _export_torch_formats(model: TinyCNN, out: Path) -> dict[str, Path]:
    paths = {"onnx": out / "tiny.onnx", "pt2": out / "tiny.pt2"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice; it is the fast one
        dynamic = {"x": {0: "batch"}, "logits": {0: "batch"}}
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(paths["onnx"]), opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["logits"], dynamic_axes=dynamic)  # fmt: skip
    batch = {0: torch.export.Dim.DYNAMIC}
    torch.export.save(torch.export.export(model, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=(batch,)), paths["pt2"])
    try:
        import litert_torch
    except ImportError:
        return paths
    paths["tflite"] = out / "tiny_nchw.tflite"
    litert_torch.convert(model, (torch.zeros(1, 1, 8, 8),)).export(str(paths["tflite"]))
    return paths


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Every format of one seeded tiny CNN, the eval data and metas, and the torch logits as the reference."""
    out = tmp_path_factory.mktemp("agent_models")
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = np.random.default_rng(0).random((300, 1, 8, 8), dtype=np.float32)  # > agent.CHUNK: ONNX batches in chunks
    norm = (x - MEAN[0]) / STD[0]
    tf_proc = _start_tf_build(model, norm[:64], out)
    try:
        paths = _export_torch_formats(model, out)
        tf_log = tf_proc.communicate(timeout=300)[0].decode(errors="replace")
    finally:
        if tf_proc.poll() is None:
            tf_proc.kill()
    if tf_proc.returncode == 0:
        paths.update(tflite_nhwc=out / "tf_nhwc_fp32.tflite", tflite_int8=out / "tf_nhwc_int8.tflite")

    with torch.no_grad():
        ref = model(torch.from_numpy(norm)).numpy()
    y = np.random.default_rng(1).integers(0, 4, len(x))
    np.savez(out / "eval.npz", x=x, y=y, teacher_pred=ref.argmax(1))
    meta = {name: out / f"{name}.json" for name in ("nchw", "nhwc", "int8")}
    for name, path in meta.items():
        path.write_text(json.dumps(_meta("NCHW" if name == "nchw" else "NHWC", "int8" if name == "int8" else "fp32")))
    return {"paths": paths, "x": x, "y": y, "ref": ref, "data": out / "eval.npz", "meta": meta, "dir": out,
            "tf_log": tf_log[-600:]}  # fmt: skip


def _model(tiny, key: str) -> Path:
    if key not in tiny["paths"]:
        pytest.skip(f"{key} model could not be built here (litert-torch or tensorflow missing): {tiny['tf_log']}")
    return tiny["paths"][key]


def _run_cli(*args: str, timeout: int = 120) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, str(AGENT_PATH), *args], capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must be exactly one JSON line, got: {proc.stdout!r} (stderr: {proc.stderr[-500:]})"
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(lines[0]), proc.stderr


@pytest.mark.parametrize("key,layout", [("onnx", "NCHW"), ("pt2", "NCHW"), ("tflite", "NCHW"), ("tflite_nhwc", "NHWC")])
def test_predict_matches_torch(tiny, key, layout):
    runner = agent.load_runner(str(_model(tiny, key)), _meta(layout))
    logits = runner.predict(tiny["x"])
    assert logits.dtype == np.float32 and logits.shape == (300, 4)
    np.testing.assert_allclose(logits, tiny["ref"], atol=1e-4)
    assert runner.format == key.split("_")[0]
    expected_runtimes = {"onnx": ["onnxruntime"], "pt2": ["torch"], "tflite": ["litert", "tflite-runtime"]}
    assert runner.runtime in expected_runtimes[runner.format]
    assert runner.runtime_version and runner.load_time_ms > 0


def _identity_onnx(path: Path, sample_shape: tuple[int, ...]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            torch.nn.Flatten(),
            (torch.zeros(sample_shape),),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
    return path


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_prepare_normalises_per_channel_and_lays_out(tmp_path, layout):
    # An identity (flatten) model shows exactly what the agent feeds a model: 3 channels, each its own mean and std.
    shape = (1, 3, 2, 4) if layout == "NCHW" else (1, 2, 4, 3)
    runner = agent.load_runner(
        str(_identity_onnx(tmp_path / "id.onnx", shape)),
        {"input_layout": layout, "input_shape": [1, 3, 2, 4], "mean": [0.1, 0.2, 0.3], "std": [1.0, 2.0, 4.0]},
    )
    x = np.random.default_rng(1).random((5, 3, 2, 4), dtype=np.float32)
    want = (x - np.array([0.1, 0.2, 0.3])[:, None, None]) / np.array([1.0, 2.0, 4.0])[:, None, None]
    if layout == "NHWC":
        want = want.transpose(0, 2, 3, 1)
    prepared = runner.prepare(x)
    assert prepared.dtype == np.float32 and prepared.flags.c_contiguous
    np.testing.assert_allclose(prepared, want, atol=1e-6)
    np.testing.assert_allclose(runner.predict(x), want.reshape(5, -1), atol=1e-6)
    with pytest.raises(agent.AgentError, match=r"expects \(N, 3, 2, 4\)"):
        runner.prepare(x[:, :2])
    # grey images for an RGB model (edgekd's TFLite files of grey models make grey inside): R = G = B
    grey = x[:, :1]
    np.testing.assert_array_equal(runner.prepare(grey), runner.prepare(np.repeat(grey, 3, axis=1)))


def test_int8_tflite_quantises_input_and_dequantises_output(tiny):
    from ai_edge_litert.interpreter import Interpreter

    path = _model(tiny, "tflite_int8")
    runner = agent.load_runner(str(path), _meta("NHWC", "int8"))
    io = runner.io_details()
    qin, qout = io["inputs"][0], io["outputs"][0]
    assert qin["dtype"] == "int8" and qout["dtype"] == "int8" and qin["quantization"]["scale"] > 0
    x = tiny["x"][:50]
    prepared = runner.prepare(x)
    s, z = qin["quantization"]["scale"], qin["quantization"]["zero_point"]
    want = np.clip(np.round(((x - 0.5) / 0.25).transpose(0, 2, 3, 1) / s) + z, -128, 127)
    assert prepared.dtype == np.int8
    assert np.abs(prepared.astype(int) - want).max() <= 1  # rounding of exact halves may differ by one step

    # Dequantisation checked against a bare interpreter, independently of the agent.
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    raw = []
    for i in range(len(prepared)):
        it.set_tensor(it.get_input_details()[0]["index"], prepared[i : i + 1])
        it.invoke()
        raw.append(it.get_tensor(it.get_output_details()[0]["index"]))
    os_, oz = qout["quantization"]["scale"], qout["quantization"]["zero_point"]
    logits = runner.predict(x)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, (np.concatenate(raw).astype(np.float32) - oz) * os_, rtol=1e-6)
    # And the int8 model still computes the same function, within a few quantisation steps.
    assert np.abs(logits - tiny["ref"][:50]).max() < 10 * os_


def test_benchmark_reports_the_full_schema(tiny):
    runner = agent.load_runner(str(tiny["paths"]["onnx"]), _meta("NCHW"))
    res = agent.benchmark(runner, tiny["x"], tiny["y"], tiny["ref"].argmax(1), warmup=2, runs=20, eval_limit=100)
    assert res["status"] == "ok" and res["runs"] == 20 and res["warmup"] == 2 and res["n_eval"] == 100
    lat = res["latency_ms"]
    assert set(lat) == {"mean", "std", "p50", "p90", "p99", "min", "max"}
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert res["throughput_ips"] == pytest.approx(1000 / lat["mean"], rel=1e-2)
    assert res["teacher_agreement"] == 1.0
    assert res["accuracy"] == pytest.approx(float(np.mean(tiny["ref"][:100].argmax(1) == tiny["y"][:100])))
    assert res["peak_rss_mb"] >= res["rss_before_load_mb"] > 0
    assert {"cpu_model", "logical_cores", "os", "machine", "python"} <= set(res["device"])
    assert res["io"]["inputs"][0]["shape"] == [-1, 1, 8, 8]  # the dynamic batch axis
    assert runner.last_preds.shape == (100,)
    json.dumps(res)  # plain JSON types only


def test_missing_runtime_names_the_pip_package(tiny, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(agent.AgentError, match="pip install onnxruntime"):
        agent.load_runner(str(tiny["paths"]["onnx"]), _meta("NCHW"))
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"never read: the runtime import fails first")
    with pytest.raises(agent.AgentError, match="pip install ai-edge-litert"):
        agent.load_runner(str(model), _meta("NHWC"))


def test_meta_that_contradicts_the_model_is_refused(tiny):
    with pytest.raises(agent.AgentError, match="does not match meta input_shape"):
        agent.load_runner(str(tiny["paths"]["onnx"]), _meta("NHWC"))
    with pytest.raises(agent.AgentError, match="input_layout"):
        agent.load_runner(str(tiny["paths"]["onnx"]), {**_meta("NCHW"), "input_layout": "CHW"})


def test_import_has_no_side_effects():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('a', {str(AGENT_PATH)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"print(sorted(k for k in {RUNTIMES!r} if k in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]" and proc.stderr == ""


@pytest.mark.parametrize("key,meta", [("onnx", "nchw"), ("tflite_int8", "int8")])
def test_cli_prints_one_json_object_with_the_schema(tiny, key, meta, tmp_path):
    model = _model(tiny, key)
    preds = tmp_path / "preds.npy"
    files = ["--model", str(model), "--meta", str(tiny["meta"][meta]), "--data", str(tiny["data"])]
    rc, res, _ = _run_cli(*files, "--warmup", "3", "--runs", "30", "--eval-limit", "120", "--preds-out", str(preds))
    assert rc == 0 and res["status"] == "ok", res
    expected = (
        {"status", "format", "runtime", "runtime_version", "threads", "io", "load_time_ms", "latency_ms"}
        | {"runs", "warmup", "throughput_ips", "peak_rss_mb", "rss_before_load_mb", "accuracy", "teacher_agreement"}
        | {"n_eval", "device", "model", "size_bytes"}
    )
    assert expected <= set(res)
    assert res["model"] == model.name and res["size_bytes"] == model.stat().st_size
    assert res["runs"] == 30 and res["n_eval"] == 120 and res["threads"] == 1
    saved = np.load(preds)
    assert saved.dtype == np.int64 and saved.shape == (120,)
    agreement = float(np.mean(saved == tiny["ref"][:120].argmax(1)))
    assert res["teacher_agreement"] == pytest.approx(agreement)
    assert agreement >= (1.0 if key == "onnx" else 0.9)


def _truncated(tiny, key: str) -> Path:
    src = _model(tiny, key)
    dst = tiny["dir"] / f"truncated_{src.name}"
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


FAILURES = ["missing_model", "missing_data", "no_x", "wrong_shape", "truncated_tflite", "truncated_onnx", "bad_meta"]


@pytest.mark.parametrize("case", [*FAILURES, "bad_args"])
def test_cli_failure_is_one_json_line_and_exit_1(tiny, case, tmp_path):
    onnx, nchw, data = tiny["paths"]["onnx"], tiny["meta"]["nchw"], tiny["data"]
    args, expect = ["--model", str(onnx), "--meta", str(nchw), "--data", str(data)], ""
    if case == "missing_model":
        args[1], expect = str(tmp_path / "nope.onnx"), "model file not found: " + str(tmp_path / "nope.onnx")
    elif case == "missing_data":
        args[5], expect = str(tmp_path / "nope.npz"), "data file not found"
    elif case == "no_x":
        np.savez(tmp_path / "d.npz", images=tiny["x"])
        args[5], expect = str(tmp_path / "d.npz"), "has no 'x' array (found: images)"
    elif case == "wrong_shape":
        np.savez(tmp_path / "d.npz", x=np.zeros((4, 3, 8, 8), np.float32))
        args[5], expect = str(tmp_path / "d.npz"), "expects (N, 1, 8, 8)"
    elif case in ("truncated_tflite", "truncated_onnx"):
        bad = _truncated(tiny, case.split("_")[1])
        args[1], expect = str(bad), f"cannot load {bad.name}"
    elif case == "bad_meta":
        (tmp_path / "m.json").write_text("{not json")
        args[3], expect = str(tmp_path / "m.json"), "is not valid JSON"
    elif case == "bad_args":
        args, expect = ["--model", str(onnx)], "bad arguments"
    rc, res, _ = _run_cli(*args)
    assert rc == 1 and res["status"] == "failed"
    assert expect in res["error"] and "\n" not in res["error"], res["error"]


@pytest.mark.slow
def test_agent_runs_in_a_venv_with_only_numpy_onnxruntime_litert(tiny, tmp_path_factory):
    """The device story: no torch, no edgekd, no tensorflow; just the three pip packages."""
    venv = tmp_path_factory.mktemp("bare_venv")
    python = venv / "bin" / "python"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        pip = [str(python), "-m", "pip", "install", "-q", "numpy", "onnxruntime", "ai-edge-litert"]
        subprocess.run(pip, check=True, capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        reason = f"cannot build a bare venv with pip: {exc} {detail.decode(errors='replace')[-300:]}"
        print(reason)
        pytest.skip(reason)
    for absent in ("torch", "tensorflow", "edgekd"):
        found = subprocess.run([str(python), "-c", f"import {absent}"], capture_output=True, cwd=venv).returncode == 0
        assert not found, f"the bare venv must not have {absent}"
    for key, meta in (("onnx", "nchw"), ("tflite_int8", "int8"), ("tflite_nhwc", "nhwc")):
        if key not in tiny["paths"]:
            continue
        start = time.perf_counter()
        files = ["--model", str(tiny["paths"][key]), "--meta", str(tiny["meta"][meta]), "--data", str(tiny["data"])]
        cmd = [str(python), str(AGENT_PATH), *files, "--runs", "20"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=venv)
        res = json.loads(proc.stdout)
        assert proc.returncode == 0 and res["status"] == "ok", (res, proc.stderr[-500:])
        assert res["teacher_agreement"] >= 0.9 and time.perf_counter() - start < 60
