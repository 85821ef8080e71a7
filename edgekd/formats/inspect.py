"""``edgekd inspect``: what is really inside an .onnx or .tflite file, whoever produced it.

Inputs and outputs (shape, layout, dtype, quantization), the precision found per tensor and per conv/matmul (is it
really int8?), the operators, the file size, parameters, MACs where they can be computed from the file alone, and the
metadata. Everything is read from the file: TFLite through its flatbuffer schema (edgekd.formats.tflite.flatbuffer),
ONNX through ``onnx``; nothing is executed.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from edgekd.core.errors import ModelError
from edgekd.formats.onnx import _dims, _initializers, _onnx_dtype, load_onnx, onnx_io

ONNX_COMPUTE = {
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
}
_QDQ = {"QuantizeLinear", "DequantizeLinear"}


def _onnx_weight(name: str, init: dict, producers: dict) -> tuple[Any, bool]:
    """(initializer holding the weight, whether it passes through DequantizeLinear)."""
    if name in init:
        return init[name], False
    node = producers.get(name)
    if node is not None and node.op_type == "DequantizeLinear" and node.input[0] in init:
        return init[node.input[0]], True
    return None, False


def inspect_onnx(path: Path) -> dict[str, Any]:
    import onnx

    model = load_onnx(path)
    init = _initializers(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    ops = Counter(n.op_type for n in model.graph.node)
    qparams = {n.input[i] for n in model.graph.node if n.op_type in _QDQ for i in (1, 2) if len(n.input) > i}
    params = sum(math.prod(t.dims) for name, t in init.items() if name not in qparams and len(t.dims) >= 1)
    try:
        shaped = onnx.shape_inference.infer_shapes(model)
    except Exception:
        shaped = model
    shapes = {vi.name: _dims(vi) for vi in [*shaped.graph.value_info, *shaped.graph.output, *shaped.graph.input]}
    evidence, macs, macs_ok = [], 0, True
    for node in model.graph.node:
        if node.op_type not in ONNX_COMPUTE:
            continue
        w_pos = 3 if node.op_type.startswith("QLinear") else 1
        w, deq = _onnx_weight(node.input[w_pos], init, producers) if len(node.input) > w_pos else (None, False)
        src = producers.get(node.input[0])
        evidence.append(
            {
                "op": node.op_type,
                "weight_dtype": _onnx_dtype(w.data_type) if w is not None else None,
                "weight_dequantized": deq,
                "input_quantized": src is not None and src.op_type == "DequantizeLinear",
            }
        )
        out = [d if isinstance(d, int) and d > 0 else 1 for d in shapes.get(node.output[0], [])]
        if w is None or not out:
            macs_ok = False
            continue
        if node.op_type in ("Conv", "QLinearConv", "ConvInteger"):
            macs += math.prod(out) * math.prod(w.dims[1:])  # (Cout, Cin/groups, kh, kw)
        elif node.op_type in ("Gemm", "MatMul", "QLinearMatMul", "MatMulInteger"):
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            macs += math.prod(out) * (w.dims[-1] if trans_b else w.dims[0])
        else:
            macs_ok = False
    init_dtypes = Counter(_onnx_dtype(t.data_type) for name, t in init.items() if name not in qparams)
    weights = Counter(e["weight_dtype"] for e in evidence if e["weight_dtype"])
    if evidence and all(e["weight_dtype"] == "int8" and e["input_quantized"] for e in evidence if e["weight_dtype"]):
        precision = "int8"
    elif weights and set(weights) == {"int8"}:
        precision = "int8 weights, float activations"
    elif weights and set(weights) == {"float16"}:
        precision = "fp16"
    elif not weights or set(weights) == {"float32"}:
        precision = "fp32"
    else:
        precision = "mixed"
    ins, outs = onnx_io(path, model)
    return {
        "format": "onnx",
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "precision": precision,
        "inputs": ins,
        "outputs": outs,
        "operators": dict(sorted(ops.items())),
        "num_operators": sum(ops.values()),
        "initializer_dtypes": dict(sorted(init_dtypes.items())),
        "weight_dtypes": dict(sorted(weights.items())),
        "qdq_nodes": ops.get("QuantizeLinear", 0) + ops.get("DequantizeLinear", 0),
        "compute_ops": evidence,
        "params": params,
        "macs": macs if evidence and macs_ok else None,
        "metadata_props": {p.key: p.value for p in model.metadata_props},
    }


def _tflite_params_macs(path: Path) -> tuple[int, int | None]:
    """Weights + biases of conv/fc ops (through DEQUANTIZE for fp16 files) and their MACs at the stored shapes."""
    from edgekd.formats.tflite.flatbuffer import _parse

    sg = _parse(Path(path).read_bytes(), str(path))["subgraphs"][0]
    tensors = sg["tensors"]
    producers = {o: op for op in sg["operators"] for o in op["outputs"]}

    def const(idx: int) -> dict | None:
        if idx < 0:
            return None
        t = tensors[idx]
        if t["constant"]:
            return t
        prod = producers.get(idx)
        if prod is not None and prod["op"] == "DEQUANTIZE" and tensors[prod["inputs"][0]]["constant"]:
            return tensors[prod["inputs"][0]]
        return None

    params, macs, ok = 0, 0, True
    counted: set[int] = set()
    for op in sg["operators"]:
        name = op["op"]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"):
            continue
        w_pos = 1
        for pos in (w_pos, 2):
            if len(op["inputs"]) > pos and (t := const(op["inputs"][pos])) is not None and id(t) not in counted:
                counted.add(id(t))
                params += math.prod(t["shape"]) if t["shape"] else 1
        w = const(op["inputs"][w_pos]) if len(op["inputs"]) > w_pos else None
        out = tensors[op["outputs"][0]]["shape"] if op["outputs"] else []
        if w is None or not out or any(d < 1 for d in out) or name in ("TRANSPOSE_CONV", "BATCH_MATMUL"):
            ok = False
            continue
        if name == "CONV_2D":  # filter (Cout, kh, kw, Cin)
            macs += math.prod(out) * math.prod(w["shape"][1:])
        elif name == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, Cout)
            macs += math.prod(out) * w["shape"][1] * w["shape"][2]
        else:  # FULLY_CONNECTED: filter (units, in)
            macs += math.prod(out) * w["shape"][-1]
    return params, (macs if ok else None)


def inspect_file(path: str | Path) -> dict[str, Any]:
    """Everything ``edgekd inspect`` shows, as a dict (the ``--json`` output)."""
    from edgekd.formats.metadata import read_metadata

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from edgekd.formats.tflite.flatbuffer import inspect_tflite
        from edgekd.formats.tflite.metadata import metadata_entries

        info = {"format": "tflite", **inspect_tflite(path)}
        info["params"], info["macs"] = _tflite_params_macs(path)
        data = path.read_bytes()
        info["metadata_entries"] = sorted(metadata_entries(data))
        info["associated_files"] = _packed_names(data)
    elif suffix == ".onnx":
        info = inspect_onnx(path)
    else:
        raise ModelError(
            f"{path.name}: cannot inspect '{suffix or 'no extension'}' files; edgekd reads .onnx and .tflite"
        )
    info["path"] = str(path)
    info["size_bytes"] = path.stat().st_size
    md = read_metadata(path)
    info["metadata"] = md
    layout = (md or {}).get("input_layout")
    for t in info["inputs"]:
        t["layout"] = layout or guess_layout(t["shape"])
    return info


def _packed_names(data: bytes) -> list[str]:
    """Names of the files packed after a TFLite flatbuffer, read from the zip directory: their content is never
    inflated (a few KB of deflated zeros can declare gigabytes)."""
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return sorted(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def guess_layout(shape: list) -> str:
    """NCHW or NHWC from a 4-D shape whose channel count is 1 or 3; 'unknown' when both or neither could be."""
    if len(shape) != 4:
        return "unknown"
    c_first, c_last = shape[1] in (1, 3), shape[3] in (1, 3)
    if c_first and not c_last:
        return "NCHW (guessed)"
    if c_last and not c_first:
        return "NHWC (guessed)"
    return "unknown"


def _fmt_tensor(t: dict) -> str:
    quant = t.get("quantization")
    q = f", scale {quant['scale']:.6g} zero point {quant['zero_point']}" if quant and quant.get("scale") else ""
    layout = f", layout {t['layout']}" if t.get("layout") else ""
    return f"{t['name']}  {t['shape']}  {t['dtype']}{layout}{q}"


def _counts(d: dict) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def format_inspection(info: dict[str, Any]) -> str:
    """The text ``edgekd inspect`` prints (``--json`` prints ``info`` itself)."""
    kind = "TFLite" if info["format"] == "tflite" else "ONNX"
    header = f"schema v{info['schema_version']}" if kind == "TFLite" else f"opset {info['opset']}, {info['producer']}"
    lines = [f"file        {info['path']} ({kind}, {header}, {info['size_bytes']:,} bytes)"]
    compute = info["compute_ops"]
    if kind == "TFLite":
        full = sum(
            1 for e in compute if e["weight_dtype"] == "int8" and e["input_dtype"] == e["output_dtype"] == "int8"
        )
        detail = f"{full} of {len(compute)} conv/fc ops with int8 weights and int8 activations"
        tensors = f"constants: {_counts(info['constant_dtypes'])}; activations: {_counts(info['activation_dtypes'])}"
    else:
        full = sum(1 for e in compute if e["weight_dtype"] == "int8" and e["input_quantized"])
        detail = f"{full} of {len(compute)} conv/matmul ops with int8 weights and quantized inputs"
        detail += f", {info['qdq_nodes']} Q/DQ nodes"
        tensors = f"initializers: {_counts(info['initializer_dtypes'])}"
    lines.append(f"precision   {info['precision']} ({detail})")
    lines.append(f"tensors     {tensors}")
    lines += [f"input       {_fmt_tensor(t)}" for t in info["inputs"]]
    lines += [f"output      {_fmt_tensor(t)}" for t in info["outputs"]]
    lines.append(f"parameters  {info['params']:,} (weights and biases stored in the file)")
    lines.append(
        f"MACs        {info['macs']:,}" if info["macs"] is not None else "MACs        not computable from the file"
    )
    lines.append(f"operators   {info['num_operators']}: {_counts(info['operators'])}")
    md = info["metadata"]
    if md is None:
        lines.append("metadata    none from edgekd: predict needs --mean, --std and --labels")
    else:
        pre = md.get("preprocessing", {})
        lines.append(
            f"metadata    edgekd {md.get('edgekd_version')}, pipeline '{md.get('pipeline')}' "
            f"hash {str(md.get('pipeline_hash'))[:16]}, {md.get('source')} {md.get('precision')}"
        )
        labels = md.get("labels", [])
        shown = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
        lines.append(f"            labels ({len(labels)}): {shown}")
        lines.append(
            f"            input {md.get('input_shape')} (NCHW terms), layout {md.get('input_layout')}, "
            f"mean {md.get('mean')}, std {md.get('std')}"
        )
        lines.append(
            f"            preprocessing: {pre.get('color_mode')}, x{pre.get('scale', 0):.6g}, "
            f"{pre.get('resize')} to {pre.get('size')}, (x - mean) / std"
        )
    if kind == "TFLite":
        lines.append(
            f"            flatbuffer metadata entries: {', '.join(info['metadata_entries']) or 'none'}; "
            f"packed files: {', '.join(info['associated_files']) or 'none'}"
        )
    else:
        keys = sorted(info["metadata_props"])
        lines.append(f"            metadata_props keys: {', '.join(keys) or 'none'}")
    return "\n".join(lines)
