"""PyTorch/ONNX -> TFLite with litert-torch and onnx2tf, checked in the real LiteRT interpreter.

A small CNN is trained for a second on synthetic 10-class images so that its predictions differ from sample to
sample (an untrained net predicts one class for everything, which would make int8 "agreement" meaningless).
Conversions are shared through a module-scoped cache; the whole file runs in well under two minutes on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("litert_torch")
pytest.importorskip("onnx2tf")

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from edgekd.core.errors import ModelError  # noqa: E402
from edgekd.formats.tflite.flatbuffer import inspect_tflite, weight_dtypes  # noqa: E402
from edgekd.formats.tflite.via_litert_torch import convert_litert_torch  # noqa: E402
from edgekd.formats.tflite.via_onnx2tf import convert_onnx2tf  # noqa: E402

SHAPE = (1, 1, 16, 16)
COMBOS = [("fp32", False), ("fp16", False), ("int8", False), ("int8", True)]
CONVERTERS = ["litert-torch", "onnx2tf"]


class TinyCNN(torch.nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        nn = torch.nn
        self.features = nn.Sequential(
            nn.Conv2d(1, 48, 3, padding=1, bias=False),
            nn.BatchNorm2d(48),
            nn.ReLU(),
            nn.Conv2d(48, 96, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(96),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(96, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def _synthetic(n: int, rng: np.random.Generator, templates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, len(templates), n)
    amp = rng.uniform(0.7, 1.3, (n, 1, 1, 1)).astype(np.float32)
    x = amp * templates[y] + 0.6 * rng.standard_normal((n, *SHAPE[1:])).astype(np.float32)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    templates = rng.standard_normal((10, *SHAPE[1:])).astype(np.float32)
    x_train, y_train = _synthetic(2048, rng, templates)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    model.train()
    for _ in range(120):
        idx = torch.from_numpy(rng.integers(0, len(xt), 64))
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    calib, _ = _synthetic(200, rng, templates)
    test, _ = _synthetic(200, rng, templates)
    with torch.no_grad():
        ref = model(torch.from_numpy(test)).numpy()
    assert len(np.unique(ref.argmax(1))) >= 5, "the test model should predict varied classes"
    work = tmp_path_factory.mktemp("tflite")
    onnx_path = work / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(SHAPE),),
            str(onnx_path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
        )
    return {"model": model, "calib": calib, "test": test, "ref": ref, "onnx": onnx_path, "work": work}


@pytest.fixture(scope="module")
def convert(setup):
    cache: dict = {}

    def _get(converter: str, precision: str, int8_io: bool = False, app_input: bool = False):
        key = (converter, precision, int8_io, app_input)
        if key not in cache:
            out = setup["work"] / f"{converter}_{precision}{'_int8io' if int8_io else ''}{'_app' * app_input}.tflite"
            cal = setup["calib"] if precision == "int8" else None
            if converter == "litert-torch":
                info = convert_litert_torch(setup["model"], SHAPE, out, precision, cal, int8_io, app_input, app_input)
            else:
                info = convert_onnx2tf(setup["onnx"], out, precision, cal, int8_io, work_dir=setup["work"] / "o2t")
            cache[key] = (out, info)
        return cache[key]

    return _get


def run_tflite(path: Path, x: np.ndarray, layout: str) -> np.ndarray:
    """Float logits for each sample of NCHW ``x``, quantising/dequantising at int8 I/O with the file's own ranges."""
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for sample in x:
        s = sample[None]
        if layout == "NHWC":
            s = s.transpose(0, 2, 3, 1)
        if inp["dtype"] == np.int8:
            scale, zp = inp["quantization"]
            s = np.clip(np.round(s / scale + zp), -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], np.ascontiguousarray(s))
        it.invoke()
        y = it.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] == np.int8:
            scale, zp = out["quantization"]
            y = (y - zp) * scale
        ys.append(y[0])
    return np.stack(ys)


@pytest.mark.parametrize("converter", CONVERTERS)
@pytest.mark.parametrize(("precision", "int8_io"), COMBOS)
def test_convert_runs_in_litert_and_matches_pytorch(setup, convert, converter, precision, int8_io):
    path, info = convert(converter, precision, int8_io)
    assert path.is_file()
    assert info["converter"] == converter and info["precision"] == precision
    assert info["converter_version"] and info["seconds"] > 0
    assert info["input_layout"] == ("NCHW" if converter == "litert-torch" else "NHWC")
    y = run_tflite(path, setup["test"], info["input_layout"])
    ref = setup["ref"]
    diff = float(np.abs(y - ref).max())
    agreement = float((y.argmax(1) == ref.argmax(1)).mean())
    if precision == "fp32":
        assert diff <= 1e-4
    elif precision == "fp16":
        assert diff <= 1e-2
        assert agreement >= 0.98
    else:
        assert agreement >= 0.9, f"int8 top-1 agreement {agreement:.3f} (max abs diff {diff:.4f})"
        assert diff <= 0.1 * float(np.abs(ref).max())


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_litert_torch_app_input_is_nhwc_rgb_and_matches_pytorch(setup, convert, precision):
    """nhwc + grey_from_rgb: the grey model's file takes [1, H, W, 3]; a grey image fed as R = G = B gives PyTorch's
    logits. The permute in front cancels litert-torch's own transpose and the luma weights are folded into the first
    conv, so the file has no op more than the NCHW one."""
    path, info = convert("litert-torch", precision, app_input=True)
    assert info["input_layout"] == "NHWC" and info["grey_from_rgb"] and info["input_channels"] == 3
    assert info["grey_conversion"] == "folded into the first convolution"
    found = inspect_tflite(path)
    assert found["inputs"][0]["shape"] == [1, SHAPE[2], SHAPE[3], 3] and found["precision"] == precision
    nchw = inspect_tflite(convert("litert-torch", precision)[0])
    assert found["num_operators"] <= nchw["num_operators"] and "TRANSPOSE" not in found["operators"]
    y = run_tflite(path, np.repeat(setup["test"], 3, axis=1), "NHWC")
    ref = setup["ref"]
    if precision == "fp32":
        assert float(np.abs(y - ref).max()) <= 1e-4
    else:
        assert float((y.argmax(1) == ref.argmax(1)).mean()) >= 0.9


@pytest.mark.parametrize("converter", CONVERTERS)
@pytest.mark.parametrize(("precision", "int8_io"), COMBOS)
def test_inspect_reports_what_is_in_the_file(convert, converter, precision, int8_io):
    path, _ = convert(converter, precision, int8_io)
    info = inspect_tflite(path)
    assert info["precision"] == precision
    assert info["size_bytes"] == path.stat().st_size
    assert info["num_operators"] == sum(info["operators"].values()) > 0
    io_dtypes = {t["dtype"] for t in info["inputs"] + info["outputs"]}
    weights = weight_dtypes(info)
    if precision == "int8":
        assert set(weights) == {"int8"}
        assert info["constant_dtypes"].get("int8", 0) >= 3
        assert "float32" not in info["constant_dtypes"]
        # activations are int8 inside; only the float I/O twins (if any) are float32
        float_acts = info["activation_dtypes"].get("float32", 0)
        assert info["activation_dtypes"].get("int8", 0) > float_acts
        assert io_dtypes == ({"int8"} if int8_io else {"float32"})
        if int8_io:
            for t in info["inputs"] + info["outputs"]:
                assert t["scale"] and t["scale"] > 0 and isinstance(t["zero_point"], int)
        else:
            assert float_acts == 2 and info["operators"].get("QUANTIZE", 0) >= 1
            assert info["operators"].get("DEQUANTIZE", 0) >= 1
    elif precision == "fp16":
        assert set(weights) == {"float16"}
        assert info["operators"].get("DEQUANTIZE", 0) >= len(info["compute_ops"])
        assert io_dtypes == {"float32"}
    else:
        assert set(weights) == {"float32"}
        assert "int8" not in info["constant_dtypes"] and "float16" not in info["constant_dtypes"]
        assert set(info["activation_dtypes"]) == {"float32"}


@pytest.mark.parametrize("converter", CONVERTERS)
def test_quantised_files_are_smaller(convert, converter):
    fp32 = convert(converter, "fp32")[0].stat().st_size
    fp16 = convert(converter, "fp16")[0].stat().st_size
    int8 = convert(converter, "int8", False)[0].stat().st_size
    assert fp16 <= 0.6 * fp32
    assert int8 <= 0.35 * fp32


def test_onnx2tf_leaves_input_and_cwd_untouched(setup, convert, tmp_path, monkeypatch):
    before = hashlib.sha256(setup["onnx"].read_bytes()).hexdigest()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out" / "m.tflite"
    info = convert_onnx2tf(setup["onnx"], out, "fp16")
    assert info["input_layout"] == "NHWC"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.tflite"]
    assert hashlib.sha256(setup["onnx"].read_bytes()).hexdigest() == before


def test_truncated_or_garbage_file_is_a_model_error(convert, tmp_path):
    good = convert("litert-torch", "fp32")[0].read_bytes()
    for name, data in [
        ("half", good[: len(good) // 2]),
        ("head", good[:64]),
        ("junk", b"\x00" * 100),
        ("text", b"hello, not a model"),
        ("empty", b""),
    ]:
        bad = tmp_path / f"{name}.tflite"
        bad.write_bytes(data)
        with pytest.raises(ModelError, match="not a valid TFLite file") as exc:
            inspect_tflite(bad)
        assert str(bad) in str(exc.value) and "\n" not in str(exc.value)


def test_bad_requests_are_model_errors(setup, tmp_path):
    out = tmp_path / "x.tflite"
    with pytest.raises(ModelError, match="unknown TFLite precision"):
        convert_litert_torch(setup["model"], SHAPE, out, "int4")
    with pytest.raises(ModelError, match="needs calibration"):
        convert_litert_torch(setup["model"], SHAPE, out, "int8")
    with pytest.raises(ModelError, match="calibration samples have shape"):
        convert_onnx2tf(setup["onnx"], out, "int8", np.zeros((4, 3, 16, 16), np.float32))
    assert not out.exists()


def test_unsupported_op_is_named(tmp_path):
    class Fft(torch.nn.Module):
        def forward(self, x):
            return torch.fft.rfft2(x).abs()

    with pytest.raises(ModelError) as exc:
        convert_litert_torch(Fft().eval(), SHAPE, tmp_path / "fft.tflite", "fp32")
    msg = str(exc.value)
    assert msg.startswith("litert-torch could not convert the model: unsupported op") and "fft" in msg
    assert msg.endswith("; try converter: onnx2tf")
    assert "\n" not in msg
    assert not (tmp_path / "fft.tflite").exists()


def test_onnx2tf_failure_names_the_onnx_layer_and_the_other_converter():
    """onnx2tf logs the ONNX node it failed on (seen converting timm's DeiT: its class-token concat)."""
    from edgekd.formats.tflite.via_litert_torch import describe_failure

    log = "ERROR: The trace log is below.\nERROR: onnx_op_name: /blocks/blocks.0/attn/Concat\nERROR: Read this"
    msg = describe_failure("onnx2tf", ValueError('Exception encountered when calling layer "tf.concat_2"'), log)
    assert msg.startswith("onnx2tf could not convert the model at layer /blocks/blocks.0/attn/Concat: ValueError")
    assert msg.endswith("; try converter: litert-torch")


def test_onnx2tf_converts_an_rgb_model_without_the_network(tmp_path, monkeypatch):
    """onnx2tf fetches sample images from GitHub for any 4D RGB input unless its sample file is in the current
    directory: edgekd writes that file in its work folder, so nothing is downloaded (sockets refused here)."""
    import socket

    from edgekd.formats.onnx import export_onnx

    def refuse(*args, **kwargs):
        raise OSError("network refused by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    ).eval()  # fmt: skip
    export_onnx(model, (1, 3, 32, 32), tmp_path / "rgb.onnx", "torchscript", 18)
    monkeypatch.chdir(tmp_path)
    cal = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    for precision in ("fp32", "int8"):
        out = tmp_path / "out" / f"rgb-{precision}.tflite"
        info = convert_onnx2tf(tmp_path / "rgb.onnx", out, precision, cal if precision == "int8" else None)
        assert info["input_layout"] == "NHWC" and out.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "rgb.onnx"]  # no sample file left in the cwd
