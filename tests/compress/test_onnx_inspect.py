"""The ONNX precision label comes from the file's convs/matmuls: fp32, static int8 QDQ, and dynamic (never "int8")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")

from edgekd.formats.onnx import export_onnx, quantize_int8
from edgekd.formats.onnx_inspect import inspect_onnx


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)).eval()
    path = tmp_path_factory.mktemp("onnx") / "m-fp32.onnx"
    export_onnx(model, (1, 1, 8, 8), path, "torchscript", 17)
    return path


def test_fp32_file_is_fp32(fp32):
    assert inspect_onnx(fp32)["precision"] == "fp32"


def test_static_qdq_file_is_int8(fp32):
    out = fp32.with_name("m-int8.onnx")
    quantize_int8(fp32, out, np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32), fp32.parent)
    found = inspect_onnx(out)
    assert found["precision"] == "int8"
    assert {(e["weight"], e["input"], e["output"]) for e in found["compute_ops"]} == {("int8", "int8", "int8")}


def test_dynamic_quantization_is_not_called_int8(fp32):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = fp32.with_name("m-dynamic.onnx")
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    assert inspect_onnx(out)["precision"].startswith("dynamic-range")
