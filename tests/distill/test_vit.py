"""The zoo's small ViT: any input size, hookable attention maps, ONNX (dynamo + TorchScript) and TFLite export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.core.errors import ModelError
from edgekd.distill.taps import FeatureTaps
from edgekd.models import build_model

TINY = {"patch": 2, "dim": 8, "depth": 2, "heads": 2}


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_vit_runs_at_any_size_the_patch_divides_and_exposes_attention(pool):
    m = build_model({"name": "vit_tiny", "kwargs": {**TINY, "pool": pool}}, 1, 10).eval()
    taps = FeatureTaps(m, ["blocks.1.attn.probs", "blocks.1"])
    extra = 1 if pool == "cls" else 0
    for size in (8, 12):
        out = m(torch.randn(3, 1, size, size))
        assert out.shape == (3, 10)
        feats = taps.take()
        tokens = (size // 2) ** 2 + extra
        assert feats["blocks.1"].shape == (3, tokens, 8)
        probs = feats["blocks.1.attn.probs"]
        assert probs.shape == (3, 2, tokens, tokens)
        assert torch.allclose(probs.sum(-1), torch.ones(3, 2, tokens), atol=1e-5)
    x = torch.randn(2, 1, 8, 8)
    with_hooks = m(x)
    taps.remove()
    assert torch.equal(with_hooks, m(x))  # the hooks observe, they change nothing


def test_vit_bad_kwargs_are_one_line_model_errors():
    with pytest.raises(ModelError, match="dim 10 is not divisible by heads 4"):
        build_model({"name": "vit_tiny", "kwargs": {"dim": 10, "heads": 4}}, 1, 10)
    with pytest.raises(ModelError, match="pool must be"):
        build_model({"name": "vit_tiny", "kwargs": {"pool": "max"}}, 1, 10)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_vit_exports_to_onnx(tmp_path, exporter):
    import onnxruntime as ort

    from edgekd.formats.onnx import export_onnx

    torch.manual_seed(0)
    m = build_model({"name": "vit_tiny", "kwargs": {**TINY, "pool": "cls"}}, 1, 10).eval()
    path = tmp_path / "vit.onnx"
    export_onnx(m, (1, 1, 8, 8), path, exporter, 18)
    x = torch.randn(5, 1, 8, 8)  # another batch size than exported: the batch axis is dynamic
    got = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    assert np.abs(got - m(x).detach().numpy()).max() < 1e-4


@pytest.mark.slow
def test_default_vit_converts_to_every_tflite_precision_and_onnx_int8(tmp_path):
    """~40 s of CPU: the 32x32 default ViT through litert-torch fp32 / fp16 / full int8 and onnxruntime static int8."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from edgekd.formats.onnx import export_onnx, onnx_precision, quantize_int8
    from edgekd.formats.tflite.via_litert_torch import convert_litert_torch

    torch.manual_seed(0)
    m = build_model({"name": "vit_tiny"}, 1, 10).eval()
    x = torch.randn(32, 1, 32, 32)
    ref = m(x).detach().numpy()
    for precision in ("fp32", "fp16", "int8"):
        path = tmp_path / f"vit-{precision}.tflite"
        info = convert_litert_torch(m, (1, 1, 32, 32), path, precision, calibration=x.numpy())
        assert info["precision"] == precision
        it = Interpreter(str(path))
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        got = []
        for i in range(8):
            it.set_tensor(inp["index"], x[i : i + 1].numpy())
            it.invoke()
            got.append(it.get_tensor(out["index"]))
        got = np.concatenate(got)
        assert (got.argmax(1) == ref[:8].argmax(1)).mean() >= 0.75, precision
    export_onnx(m, (1, 1, 32, 32), tmp_path / "vit.onnx", "dynamo", 18)
    quantize_int8(tmp_path / "vit.onnx", tmp_path / "vit-int8.onnx", x.numpy(), tmp_path)
    assert onnx_precision(tmp_path / "vit-int8.onnx") == "int8"
    q = ort.InferenceSession(str(tmp_path / "vit-int8.onnx")).run(None, {"input": x.numpy()})[0]
    assert (q.argmax(1) == ref.argmax(1)).mean() >= 0.75
