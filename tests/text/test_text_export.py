"""int8 export of text students with a massive-activation channel (edgekd.text.export), through the real converters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.formats.runner import agent
from edgekd.text.export import convert_tflite_text, export_onnx_text, outlier_linears, quantize_onnx_text
from edgekd.text.models import build_text_model

LENGTH = 16


def _student(massive: bool) -> torch.nn.Module:
    """A tiny student; ``massive`` wires in what long training grew in the shipped student: layer 0's FFN writes
    ~2,000 into one channel at the first position only (an attention sink; the real one: 1,974 on [CLS] against a
    median channel of 12), and the LayerNorm after it gives that channel a small gain."""
    torch.manual_seed(0)
    model = build_text_model(
        {"name": "text_transformer", "kwargs": {"hidden": 32, "layers": 2, "heads": 2, "ffn": 64, "embed_dim": 16}},
        60,
        LENGTH,
        24,
    ).eval()
    if massive:
        layer = model.layers[0]
        with torch.no_grad():
            model.pos[0, 0].zero_()
            model.pos[0, 0, 7] = 10.0  # position 0 stands out in channel 7 ...
            layer.ff1.weight[3].zero_()
            layer.ff1.weight[3, 7], layer.ff1.bias[3] = 2.0, -6.0  # ... FFN unit 3 fires there only ...
            layer.ff2.weight[:, 3].zero_()
            layer.ff2.weight[5, 3] = 500.0  # ... and writes ~2,000 into output channel 5
            layer.ln2.weight[5] = 0.1
    return model


def _sentences(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, LENGTH + 1, n)
    mask = (np.arange(LENGTH)[None] < lengths[:, None]).astype(np.int64)
    return rng.integers(5, 60, (n, LENGTH)) * mask, mask


def test_outlier_linears_finds_only_the_massive_channel():
    ids, mask = _sentences(32, 0)
    assert outlier_linears(_student(False), ids, mask, 10.0) == {}
    found = outlier_linears(_student(True), ids, mask, 10.0)
    assert list(found) == ["layers.0.ff2"] and found["layers.0.ff2"] > 100


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean())


def _run(kind: str, path, ids, mask) -> np.ndarray:
    backend = getattr(agent(), kind)(path.name)
    backend.load(path, 1)
    cast = np.int32 if kind == "_Tflite" else np.int64
    return np.concatenate(
        [backend.run(ids[i : i + 1].astype(cast), mask[i : i + 1].astype(cast)) for i in range(len(ids))]
    )


@pytest.mark.integration
def test_int8_files_keep_a_massive_activation_channel(tmp_path):
    pytest.importorskip("litert_torch")
    pytest.importorskip("onnxruntime")
    model = _student(True)
    cal, test = _sentences(64, 1), _sentences(48, 2)
    with torch.no_grad():
        ref = model(torch.from_numpy(test[0]), torch.from_numpy(test[1])).numpy()

    # TFLite: the flagged layer and its residual add stay float; quantising them flattens the other channels
    keep = tuple(outlier_linears(model, *cal, 10.0))
    convert_tflite_text(model, LENGTH, tmp_path / "all.tflite", "int8", cal)
    convert_tflite_text(model, LENGTH, tmp_path / "keep.tflite", "int8", cal, float_modules=keep)
    every, kept = (_cosine(_run("_Tflite", tmp_path / f, *test), ref) for f in ("all.tflite", "keep.tflite"))
    assert kept > 0.999 and 1 - every > 10 * (1 - kept), (kept, every)  # measured: 0.99983 vs 0.988

    # ONNX: MatMul outputs stay float (int8 inputs and weights), so the channel never meets an int8 scale
    export_onnx_text(model, LENGTH, tmp_path / "fp32.onnx")
    quantize_onnx_text(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", *cal)
    assert _cosine(_run("_Onnx", tmp_path / "int8.onnx", *test), ref) > 0.99


_COSINE_ON_CPU = """
import sys, numpy as np, onnxruntime as ort
d = np.load(sys.argv[2])
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
sess = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
names = [i.name for i in sess.get_inputs()]
feeds = [dict(zip(names, (d["ids"][i:i+1], d["mask"][i:i+1]))) for i in range(len(d["ids"]))]
out = np.concatenate([sess.run(None, f)[0] for f in feeds])
print(float(((out * d["ref"]).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(d["ref"], axis=1)).mean()))
"""


@pytest.mark.integration
def test_onnx_int8_gives_the_same_result_on_an_avx2_only_cpu(tmp_path):
    """The failure seen in a loaded full run (cosine 0.9892 < 0.99) was the CPU, not the load: with 8-bit weights,
    onnxruntime's u8*s8 kernel on AVX2 CPUs without VNNI (VPMADDUBSW) saturates int16 pair sums. An AVX2-only CPU
    is emulated with qemu-x86_64 -cpu Haswell; the default 7-bit weight range gives the same cosine there."""
    import shutil
    import subprocess
    import sys

    qemu = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip("qemu-x86_64 is not installed (apt-get install qemu-user-static): no AVX2-only CPU to compare")
    pytest.importorskip("onnxruntime")
    model = _student(True)
    cal, test = _sentences(64, 1), _sentences(48, 2)
    with torch.no_grad():
        ref = model(torch.from_numpy(test[0]), torch.from_numpy(test[1])).numpy()
    np.savez(tmp_path / "data.npz", ids=test[0], mask=test[1], ref=ref)
    export_onnx_text(model, LENGTH, tmp_path / "fp32.onnx")
    cosine = {}
    for bits in (7, 8):
        path = tmp_path / f"int8-{bits}.onnx"
        quantize_onnx_text(tmp_path / "fp32.onnx", path, *cal, weight_bits=bits)
        for cpu, prefix in (("host", []), ("haswell", [qemu, "-cpu", "Haswell"])):
            cmd = [*prefix, sys.executable, "-c", _COSINE_ON_CPU, str(path), str(tmp_path / "data.npz")]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-2000:]
            cosine[bits, cpu] = float(done.stdout.split()[-1])
    assert abs(cosine[7, "host"] - cosine[7, "haswell"]) < 1e-6 and cosine[7, "haswell"] > 0.999, cosine
    # measured: 8-bit weights 0.99990 here (AVX-512 VNNI) vs 0.98916 on Haswell
    assert cosine[8, "haswell"] < cosine[7, "haswell"] - 0.005, cosine
