"""``edgekd inspect``: what is really in the file, for edgekd's files and for anyone else's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _exported import MODELS, exported_run
from typer.testing import CliRunner

from edgekd.cli import app
from edgekd.core.errors import ModelError
from edgekd.formats.inspect import inspect_file


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return exported_run(tmp_path_factory)


def _folded_rgb(run, fmt: str) -> tuple[int, int]:
    """(params, MACs) a TFLite file holds beyond the torch model: its first conv takes RGB, the luma weights folded
    in (edgekd.formats.tflite.image_input), so that conv has 3 input channels where the grey model has 1."""
    import torch

    from edgekd.models.io import load_torch_model

    if fmt != "tflite":
        return 0, 0
    conv = next(m for m in load_torch_model(run[1]["student"]).modules() if isinstance(m, torch.nn.Conv2d))
    _, _, h, w = conv(torch.zeros(1, 1, 8, 8)).shape
    return 2 * conv.weight.numel(), 2 * conv.weight.numel() * h * w


@pytest.mark.parametrize("variant", sorted(MODELS))
def test_inspect_reads_io_precision_params_macs_and_metadata(run, variant):
    art = run[1][MODELS[variant]]
    info = inspect_file(art.path)
    fmt, precision = variant.split("-")
    assert info["format"] == fmt and info["precision"] == precision
    assert info["size_bytes"] == art.path.stat().st_size
    (inp,) = info["inputs"]
    want = ("NCHW", [1, 8, 8]) if fmt == "onnx" else ("NHWC", [8, 8, 3])  # TFLite: what app tooling takes
    assert inp["dtype"] == "float32" and (inp["layout"], inp["shape"][1:]) == want
    assert info["outputs"][0]["shape"][-1] == 10
    # from the file's shapes: the count made on the torch model (+ the RGB input's folded weights in TFLite)
    assert info["macs"] == art.meta["macs"] + _folded_rgb(run, fmt)[1]
    assert info["params"] > 0 and info["metadata"]["labels"] == [str(i) for i in range(10)]
    ops = info["operators"]
    if variant == "tflite-int8":  # really int8: every conv/fc has int8 weights and int8 activations
        assert {(e["weight_dtype"], e["input_dtype"], e["output_dtype"]) for e in info["compute_ops"]} == {
            ("int8", "int8", "int8")
        }
        assert "QUANTIZE" in ops and "DEQUANTIZE" in ops
        assert info["associated_files"] == ["labels.txt"]
    if variant == "onnx-int8":
        assert info["qdq_nodes"] > 0 and set(info["weight_dtypes"]) == {"int8"}
        assert all(e["input_quantized"] for e in info["compute_ops"])
    if variant.endswith("fp32"):
        assert set(info.get("weight_dtypes") or {"float32": 1}) == {"float32"}


def test_onnx_and_tflite_agree_on_params_and_macs(run):
    params, macs = _folded_rgb(run, "tflite")
    infos = [inspect_file(run[1][MODELS[v]].path) for v in ("onnx-int8", "tflite-int8", "tflite-fp32")]
    assert len({i["params"] - (params if i["format"] == "tflite" else 0) for i in infos}) == 1
    assert len({i["macs"] - (macs if i["format"] == "tflite" else 0) for i in infos}) == 1


def test_inspect_cli_text_and_json(run):
    model = str(run[1][MODELS["tflite-int8"]].path)
    text = CliRunner().invoke(app, ["inspect", model])
    assert text.exit_code == 0, text.output
    for word in ("precision   int8", "input ", "output ", "parameters", "MACs", "operators", "labels (10)"):
        assert word in text.stdout
    as_json = json.loads(CliRunner().invoke(app, ["inspect", model, "--json"]).stdout)
    assert as_json["precision"] == "int8" and as_json["metadata"]["input_layout"] == "NHWC"
    assert as_json["inputs"][0]["shape"] == [1, 8, 8, 3] and as_json["inputs"][0]["layout"] == "NHWC"


def _foreign_onnx(path):
    """A little NCHW ONNX classifier made by hand, as another tool would: no edgekd metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((4 * 14 * 14, 5)).astype(np.float32), "fc")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w"], ["c"]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Flatten", ["r"], ["f"]),
            helper.make_node("MatMul", ["f", "fc"], ["scores"]),
        ],
        "foreign",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 5])],
        [w, fc],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="someone-else")
    onnx.save(model, str(path))
    return path


def test_inspect_a_file_edgekd_did_not_produce(tmp_path):
    info = inspect_file(_foreign_onnx(tmp_path / "foreign.onnx"))
    assert info["metadata"] is None and info["producer"] == "someone-else"
    assert info["inputs"][0]["layout"] == "NCHW (guessed)" and info["precision"] == "fp32"
    assert info["params"] == 4 * 3 * 3 * 3 + 4 * 14 * 14 * 5
    assert info["macs"] == 4 * 14 * 14 * 27 + 5 * 784
    text = CliRunner().invoke(app, ["inspect", str(tmp_path / "foreign.onnx")])
    assert text.exit_code == 0 and "none from edgekd: predict needs --mean, --std and --labels" in text.stdout


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("model.onnx", b"x\n", "not a valid ONNX file"),
        ("model.onnx", b"\xff\xff\xff\xff garbage", "not a valid ONNX file"),
        ("model.tflite", b"\x00" * 64, "not a valid TFLite file"),
        ("model.pb", b"whatever", "cannot inspect '.pb' files; edgekd reads .onnx and .tflite"),
    ],
)
def test_unreadable_files_are_one_clear_line(tmp_path, name, content, pattern):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError, match=pattern):
        inspect_file(path)
    res = CliRunner().invoke(app, ["inspect", str(path)])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "error:" in res.output


def test_truncated_tflite_is_one_line(run, tmp_path):
    data = run[1][MODELS["tflite-int8"]].path.read_bytes()
    (tmp_path / "cut.tflite").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="not a valid TFLite file"):
        inspect_file(tmp_path / "cut.tflite")
