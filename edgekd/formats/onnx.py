"""ONNX files: writing one from PyTorch, static int8 (QDQ) with onnxruntime, and reading back what a file holds
(inputs/outputs with their quantization, precision found in the file). Nothing here runs a model: that is the device
agent's job (edgekd.formats.runner)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.errors import ModelError
from edgekd.core.fsutil import atomic_path


def load_onnx(path: Path):
    """The ONNX ModelProto (external weights not loaded), or a one-line ModelError."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, truncated file
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"{path}: not a valid ONNX file ({type(exc).__name__}: {msg})") from None
    # protobuf parses many short byte strings as an empty message: a model has at least an IR version and a graph
    if model.ir_version == 0 or not model.HasField("graph") or not model.graph.output:
        raise ModelError(f"{path}: not a valid ONNX file (no IR version or no graph with outputs)")
    _check_external_data(model, Path(path))
    return model


def _tensors(model):
    """Every TensorProto the model holds: initializers (sparse too) and node attributes, in subgraphs and functions."""
    graphs, node_lists = [model.graph], [f.node for f in model.functions]
    while graphs or node_lists:
        if graphs:
            g = graphs.pop()
            yield from g.initializer
            for sparse in g.sparse_initializer:
                yield from (sparse.values, sparse.indices)
            node_lists.append(g.node)
            continue
        for node in node_lists.pop():
            for a in node.attribute:
                yield from ([a.t] if a.HasField("t") else [])
                yield from a.tensors
                yield from ((a.sparse_tensor.values, a.sparse_tensor.indices) if a.HasField("sparse_tensor") else ())
                graphs += ([a.g] if a.HasField("g") else []) + list(a.graphs)


def _check_external_data(model, path: Path) -> None:
    """Refuse tensors whose external data lies outside the model's folder (``../../etc/passwd``, an absolute path,
    a link out of it): onnx and onnxruntime would read any file the user can. Checked before anything follows them."""
    import onnx

    folder = path.resolve().parent
    for t in _tensors(model):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        target = (folder / loc).resolve()
        if not loc or Path(loc).is_absolute() or ".." in Path(loc).parts or not target.is_relative_to(folder):
            raise ModelError(
                f"{path}: tensor '{t.name}' keeps its data in '{loc}', outside the model's folder; edgekd reads "
                "external data only from files next to the model"
            )


def _onnx_dtype(elem_type: int) -> str:
    import onnx

    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except Exception:
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _dims(vi) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or -1) for d in vi.type.tensor_type.shape.dim]


def _initializers(model) -> dict[str, Any]:
    return {t.name: t for t in model.graph.initializer}


def _scalar(init, name: str):
    from onnx import numpy_helper
    from onnx.external_data_helper import uses_external_data

    t = init.get(name)
    if t is None or uses_external_data(t):  # a scale is never that big; and to_array would resolve it from the cwd
        return None
    arr = numpy_helper.to_array(t)
    return arr.item() if arr.size == 1 else arr.tolist()


def onnx_io(path: Path, model=None) -> tuple[list[dict], list[dict]]:
    """Graph inputs/outputs. An integer input or output read through a Dequantize/QuantizeLinear gets its scale."""
    model = model if model is not None else load_onnx(path)
    init = _initializers(model)
    consumers: dict[str, list] = {}
    producers: dict[str, Any] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
        for o in node.output:
            producers[o] = node

    def entry(vi, node) -> dict:
        dtype = _onnx_dtype(vi.type.tensor_type.elem_type)
        quant = None
        if node is not None and dtype in ("int8", "uint8") and len(node.input) >= 2:
            quant = {"scale": _scalar(init, node.input[1]), "zero_point": _scalar(init, node.input[2]) or 0}
        return {"name": vi.name, "shape": _dims(vi), "dtype": dtype, "quantization": quant}

    names = set(init)
    ins = []
    for vi in model.graph.input:
        if vi.name in names:  # old exporters list initialisers as inputs too
            continue
        deq = next((n for n in consumers.get(vi.name, []) if n.op_type == "DequantizeLinear"), None)
        ins.append(entry(vi, deq))
    outs = []
    for vi in model.graph.output:
        q = producers.get(vi.name)
        outs.append(entry(vi, q if q is not None and q.op_type == "QuantizeLinear" else None))
    return ins, outs


WEIGHT_BITS_HELP = (
    "int8 weights use 7 bits of range (onnxruntime's reduce_range) by default so that the int8 file gives the same "
    "numbers on every x86 CPU: with 8-bit weights, CPUs with AVX2 but no VNNI saturate the int16 pair sums of their "
    "u8*s8 kernel (VPMADDUBSW) and lose accuracy the VNNI / ARM CPUs do not; 8 = full range"
)


def export_onnx(model, input_shape: tuple[int, ...], path: Path, exporter: str, opset: int) -> None:
    import torch

    x = torch.zeros(input_shape)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=4096)
            prog = torch.onnx.export(
                model,
                (x,),
                None,
                dynamo=True,
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                verbose=False,
            )
            prog.save(str(tmp))
        else:
            torch.onnx.export(
                model,
                (x,),
                str(tmp),
                dynamo=False,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
            )


def quantize_int8(fp32_path: Path, out_path: Path, calib: np.ndarray, work: Path, weight_bits: int = 7) -> None:
    """Static int8 QDQ: int8 per-channel weights, int8 activations with ranges from ``calib`` (normalised inputs)."""
    feeds = ({"input": calib[i : i + 1]} for i in range(len(calib)))
    quantize_qdq(fp32_path, out_path, feeds, work, weight_bits=weight_bits)


def quantize_qdq(
    fp32_path: Path,
    out_path: Path,
    feeds: Iterable[dict[str, np.ndarray]],
    work: Path,
    op_types: list[str] | None = None,
    float_outputs: bool = False,
    weight_bits: int = 7,
) -> None:
    """onnxruntime static QDQ quantization, one calibration batch per ``feeds`` item: int8 per-channel symmetric
    weights, int8 asymmetric activations; ``op_types`` limits which operators get QDQ (default: all it supports);
    ``float_outputs`` leaves those operators' outputs float (int8 inputs and weights, float result);
    ``weight_bits`` 7 keeps weights in [-64, 63] so results do not depend on the x86 CPU (see WEIGHT_BITS_HELP)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    pre = work / "pre.onnx"
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    extra = {"op_types_to_quantize": op_types} if op_types else {}
    options = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if float_outputs:
        options["OpTypesToExcludeOutputQuantization"] = op_types or ["MatMul", "Gemm", "Conv"]
    with atomic_path(out_path) as tmp:
        quantize_static(
            str(pre),
            str(tmp),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=weight_bits == 7,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            extra_options=options,
            **extra,
        )


def onnx_precision(path: Path) -> str:
    """Precision as found in the file: int8 when weights are int8 initialisers and activations pass through QDQ."""
    import onnx

    m = onnx.load(str(path))
    ops = {n.op_type for n in m.graph.node}
    w_types = {i.data_type for i in m.graph.initializer if len(i.dims) >= 2}
    if onnx.TensorProto.INT8 in w_types and "QuantizeLinear" in ops:
        return "int8"
    if w_types == {onnx.TensorProto.FLOAT16}:
        return "fp16"
    return "fp32"
