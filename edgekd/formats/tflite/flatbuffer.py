"""Read what is really inside a .tflite file: tensor dtypes, I/O quantisation, operators and a truthful precision.

The flatbuffer is parsed with the schema module shipped in ``ai_edge_litert`` (pure Python, needs only ``flatbuffers``),
so this module never imports TensorFlow. The precision label is computed from the tensors the compute operators really
consume, never from a file name or a converter setting.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgekd.core.errors import ModelError

# Operators whose second input is a weight tensor; they decide the precision label.
COMPUTE_OPS = frozenset(
    {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
        "TRANSPOSE_CONV",
        "CONV_3D",
        "CONV_3D_TRANSPOSE",
        "BATCH_MATMUL",
    }
)
_FILTER_INPUT = {"TRANSPOSE_CONV": 1, "CONV_3D_TRANSPOSE": 1}  # TRANSPOSE_CONV is (output_shape, weights, input)
_DATA_INPUT = {"TRANSPOSE_CONV": 2, "CONV_3D_TRANSPOSE": 2}

PRECISION_INT8 = "int8"
PRECISION_FP16 = "fp16"
PRECISION_FP32 = "fp32"
PRECISION_DYNAMIC = "dynamic-range (int8 weights, float activations)"
PRECISION_INT16X8 = "int16x8 (int8 weights, int16 activations)"
PRECISION_MIXED = "mixed"


def _schema():
    from ai_edge_litert import schema_py_generated as fb  # pure-python flatbuffer schema, no TensorFlow

    return fb


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _quant(t) -> dict[str, Any]:
    q = t.Quantization()
    if q is None or q.ScaleLength() == 0:
        return {"scale": None, "zero_point": None}
    scales = [float(s) for s in q.ScaleAsNumpy()]
    zps = [int(z) for z in q.ZeroPointAsNumpy()] if q.ZeroPointLength() else [0] * len(scales)
    if len(scales) == 1:
        return {"scale": scales[0], "zero_point": zps[0]}
    return {"scale": scales, "zero_point": zps, "quantized_dimension": int(q.QuantizedDimension())}


def _parse(data: bytes, where: str) -> dict[str, Any]:
    fb = _schema()
    if len(data) < 16 or not fb.Model.ModelBufferHasIdentifier(data, 0):
        raise ModelError(f"{where}: not a valid TFLite file (missing 'TFL3' identifier, {len(data)} bytes)")
    type_names = {k: v.lower() for k, v in _enum_names(fb.TensorType).items()}
    op_names = _enum_names(fb.BuiltinOperator)
    try:
        model = fb.Model.GetRootAs(data, 0)
        buffers_len = model.BuffersLength()
        buffer_bytes = []
        for i in range(buffers_len):
            b = model.Buffers(i)
            n = 0
            if b is not None:
                if b.DataLength():
                    n = int(b.DataAsNumpy().nbytes)  # raises if the vector runs past the end of the file
                elif b.Offset() > 1:  # large models keep buffers outside the flatbuffer, addressed by offset/size
                    if b.Offset() + b.Size() > len(data):
                        raise ValueError(f"buffer {i} points past the end of the file")
                    n = int(b.Size())
            buffer_bytes.append(n)
        opcodes = []
        for i in range(model.OperatorCodesLength()):
            oc = model.OperatorCodes(i)
            code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            name = op_names.get(code, f"BUILTIN_{code}")
            if name == "CUSTOM":
                name = f"CUSTOM:{(oc.CustomCode() or b'').decode('utf-8', 'replace')}"
            opcodes.append(name)
        subgraphs = []
        for s in range(model.SubgraphsLength()):
            sg = model.Subgraphs(s)
            tensors = []
            for i in range(sg.TensorsLength()):
                t = sg.Tensors(i)
                buf = int(t.Buffer())
                if buf >= buffers_len:
                    raise ValueError(f"tensor {i} refers to missing buffer {buf}")
                tensors.append(
                    {
                        "name": (t.Name() or b"").decode("utf-8", "replace"),
                        "dtype": type_names.get(int(t.Type()), f"type{int(t.Type())}"),
                        "shape": [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [],
                        "constant": buffer_bytes[buf] > 0 and not t.IsVariable(),
                        "nbytes": buffer_bytes[buf],
                        **_quant(t),
                    }
                )
            ops = []
            for i in range(sg.OperatorsLength()):
                op = sg.Operators(i)
                idx = int(op.OpcodeIndex())
                if idx >= len(opcodes):
                    raise ValueError(f"operator {i} uses missing opcode {idx}")
                ins = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
                outs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
                for x in ins + outs:
                    if x >= len(tensors):
                        raise ValueError(f"operator {i} refers to missing tensor {x}")
                ops.append({"op": opcodes[idx], "inputs": ins, "outputs": outs})
            sg_in = [int(x) for x in sg.InputsAsNumpy()] if sg.InputsLength() else []
            sg_out = [int(x) for x in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
            subgraphs.append({"tensors": tensors, "operators": ops, "inputs": sg_in, "outputs": sg_out})
        if not subgraphs:
            raise ValueError("the model has no subgraph")
        return {"version": int(model.Version()), "subgraphs": subgraphs}
    except ModelError:
        raise
    except Exception as exc:  # flatbuffers raises IndexError/struct.error/ValueError on truncated data
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{where}: not a valid TFLite file ({type(exc).__name__}: {msg})") from None


def _weight_source(sg: dict, tensor_idx: int, producers: dict[int, dict]) -> tuple[str | None, bool]:
    """(dtype of the stored weight, whether it passes through DEQUANTIZE) or (None, False) if not a constant."""
    t = sg["tensors"][tensor_idx]
    if t["constant"]:
        return t["dtype"], False
    prod = producers.get(tensor_idx)
    if prod is not None and prod["op"] == "DEQUANTIZE" and prod["inputs"]:
        src = sg["tensors"][prod["inputs"][0]]
        if src["constant"]:
            return src["dtype"], True
    return None, False


def classify(parsed: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Precision label and the per-compute-op evidence it was computed from."""
    evidence = []
    for sg in parsed["subgraphs"]:
        producers = {o: op for op in sg["operators"] for o in op["outputs"]}
        for op in sg["operators"]:
            if op["op"] not in COMPUTE_OPS:
                continue
            w_pos = _FILTER_INPUT.get(op["op"], 1)
            d_pos = _DATA_INPUT.get(op["op"], 0)
            if len(op["inputs"]) <= max(w_pos, d_pos) or op["inputs"][w_pos] < 0:
                continue
            w_dtype, dequant = _weight_source(sg, op["inputs"][w_pos], producers)
            if w_dtype is None:
                continue  # activation x activation matmul: no weight to judge
            evidence.append(
                {
                    "op": op["op"],
                    "weight_dtype": w_dtype,
                    "weight_dequantized": dequant,
                    "input_dtype": sg["tensors"][op["inputs"][d_pos]]["dtype"],
                    "output_dtype": sg["tensors"][op["outputs"][0]]["dtype"] if op["outputs"] else None,
                }
            )
    if not evidence:  # no conv/matmul with a weight: judge by the tensors themselves
        inner, consts = set(), set()
        for sg in parsed["subgraphs"]:
            boundary = set(sg["inputs"]) | set(sg["outputs"])
            for i, t in enumerate(sg["tensors"]):
                if t["constant"]:
                    consts.add(t["dtype"])
                elif i not in boundary:
                    inner.add(t["dtype"])
        inner -= {"int32", "int64", "bool"}
        if inner and inner <= {"int8", "uint8"}:
            return PRECISION_INT8, evidence
        if inner <= {"float32"} and consts <= {"float32", "int32", "int64", "bool"}:
            return PRECISION_FP32, evidence
        return PRECISION_MIXED, evidence

    int_w = {"int8", "int4", "uint8"}

    def kind(e: dict[str, Any]) -> str:
        w, deq, a_in, a_out = e["weight_dtype"], e["weight_dequantized"], e["input_dtype"], e["output_dtype"]
        if w in int_w and not deq and a_in in {"int8", "uint8"} and a_out in {"int8", "uint8"}:
            return "int8"
        if w in int_w and not deq and a_in == "int16":
            return "int16x8"
        if w in int_w and a_in == "float32":
            return "dynamic"  # hybrid kernel (int8 weights, float activations) or weight-only DEQUANTIZE
        if w == "float16" and deq and a_in == "float32":
            return "fp16"
        if w == "float32" and a_in == "float32":
            return "fp32"
        return "other"

    kinds = {kind(e) for e in evidence}
    if len(kinds) == 1 and kinds != {"other"}:
        return {
            "int8": PRECISION_INT8,
            "int16x8": PRECISION_INT16X8,
            "dynamic": PRECISION_DYNAMIC,
            "fp16": PRECISION_FP16,
            "fp32": PRECISION_FP32,
        }[kinds.pop()], evidence
    if "dynamic" in kinds and kinds <= {"dynamic", "fp32", "fp16"}:
        # Dynamic-range converters leave small weights in float on purpose.
        return PRECISION_DYNAMIC, evidence
    return PRECISION_MIXED, evidence


def _io(sg: dict, indices: list[int]) -> list[dict[str, Any]]:
    out = []
    for i in indices:
        t = sg["tensors"][i]
        out.append({k: t[k] for k in ("name", "shape", "dtype", "scale", "zero_point")})
    return out


def inspect_tflite(path: Path) -> dict[str, Any]:
    """Describe a .tflite file from its flatbuffer contents.

    Returns ``{"path", "size_bytes", "schema_version", "precision", "inputs", "outputs", "operators",
    "num_operators", "constant_dtypes", "activation_dtypes", "constant_bytes", "compute_ops"}`` where
    ``*_dtypes`` count tensors per dtype (constants = tensors with buffer data: weights, biases, shape constants;
    activations = everything else, inputs and outputs included), ``operators`` counts operators by name and
    ``compute_ops`` lists the weight/input/output dtypes of every conv/matmul, the evidence for ``precision``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read TFLite file ({exc.strerror or exc})") from None
    parsed = _parse(data, str(path))
    precision, evidence = classify(parsed)
    const_dt: Counter[str] = Counter()
    act_dt: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    const_bytes = 0
    for sg in parsed["subgraphs"]:
        for t in sg["tensors"]:
            if t["constant"]:
                const_dt[t["dtype"]] += 1
                const_bytes += t["nbytes"]
            else:
                act_dt[t["dtype"]] += 1
        ops.update(op["op"] for op in sg["operators"])
    main = parsed["subgraphs"][0]
    return {
        "path": str(path),
        "size_bytes": len(data),
        "schema_version": parsed["version"],
        "precision": precision,
        "inputs": _io(main, main["inputs"]),
        "outputs": _io(main, main["outputs"]),
        "operators": dict(sorted(ops.items())),
        "num_operators": sum(ops.values()),
        "constant_dtypes": dict(sorted(const_dt.items())),
        "activation_dtypes": dict(sorted(act_dt.items())),
        "constant_bytes": const_bytes,
        "compute_ops": evidence,
    }


def weight_dtypes(info: dict[str, Any]) -> dict[str, int]:
    """Count of conv/matmul weights per stored dtype, from an ``inspect_tflite`` result."""
    return dict(Counter(e["weight_dtype"] for e in info["compute_ops"]))
