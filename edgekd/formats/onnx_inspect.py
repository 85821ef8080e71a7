"""Read what an ONNX file really computes in: per conv/matmul, the stored weight type and the activation types.

A QDQ model computes in int8 only where a compute node's weight is an int8 initializer behind a DequantizeLinear
and its input and output pass through int8 QuantizeLinear/DequantizeLinear pairs; integer operators (QLinearConv,
ConvInteger, ...) say so by themselves. The label is computed from every compute node, like the TFLite inspector
(``edgekd.formats.tflite.flatbuffer``), so a weight-only file is never called int8.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgekd.core.errors import ModelError

FLOAT_COMPUTE = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}
ACTIVATIONS = {"Relu", "Clip"}  # fused into the int8 kernel by onnxruntime when a QuantizeLinear follows
INT_COMPUTE = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def _dtype_name(onnx, code: int) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(code).name if code else "undefined"


def inspect_onnx(path: str | Path) -> dict[str, Any]:
    """``{"precision", "compute_ops", "operators", "initializer_dtypes"}`` of an ONNX file."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others on a bad file
        raise ModelError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def q_type(node) -> str:
        """Element type of the integer tensor a QuantizeLinear/DequantizeLinear works with."""
        if len(node.input) > 2 and node.input[2] in inits:
            return _dtype_name(onnx, inits[node.input[2]].data_type)
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            return _dtype_name(onnx, inits[node.input[0]].data_type)
        return "uint8"  # the default of QuantizeLinear without a zero point

    def source(name: str) -> tuple[str, bool]:
        """(type of the tensor feeding a compute input, whether it is a stored constant)."""
        if name in inits:
            return _dtype_name(onnx, inits[name].data_type), True
        p = producer.get(name)
        if p is not None and p.op_type == "DequantizeLinear":
            const = p.input[0] in inits
            return q_type(p), const
        return "float32", False

    evidence = []
    for n in g.node:
        if n.op_type in INT_COMPUTE:
            # ConvInteger/MatMulInteger after DynamicQuantizeLinear: activations quantised at run time (dynamic range)
            p = producer.get(n.input[0])
            a = "float32" if p is not None and p.op_type == "DynamicQuantizeLinear" else "int8"
            evidence.append({"op": n.op_type, "name": n.name, "weight": "int8", "input": a, "output": a})
        elif n.op_type in FLOAT_COMPUTE and len(n.input) > 1:
            w, w_const = source(n.input[1])
            if not w_const:
                continue  # activation x activation matmul: no weight to judge
            a, _ = source(n.input[0])
            outs = consumers.get(n.output[0], [])
            while len(outs) == 1 and outs[0].op_type in ACTIVATIONS:  # Conv -> Relu/Clip -> Q is one int8 unit
                outs = consumers.get(outs[0].output[0], [])
            o = q_type(outs[0]) if outs and all(c.op_type == "QuantizeLinear" for c in outs) else "float32"
            evidence.append({"op": n.op_type, "name": n.name, "weight": w, "input": a, "output": o})
    ints = {"int8", "uint8"}
    kinds = set()
    for e in evidence:
        if e["weight"] in ints and e["input"] in ints and e["output"] in ints:
            kinds.add("int8")
        elif e["weight"] in ints:
            kinds.add("dynamic")
        elif e["weight"] == "float16":
            kinds.add("fp16")
        elif e["weight"] == "float32" and e["input"] == "float32":
            kinds.add("fp32")
        else:
            kinds.add("mixed")
    labels = {"int8": "int8", "dynamic": "dynamic-range (int8 weights, float activations)", "fp16": "fp16",
              "fp32": "fp32"}  # fmt: skip
    precision = labels.get(next(iter(kinds)), "mixed") if len(kinds) == 1 else ("fp32" if not kinds else "mixed")
    return {
        "path": str(path),
        "precision": precision,
        "compute_ops": evidence,
        "operators": dict(sorted(Counter(n.op_type for n in g.node).items())),
        "initializer_dtypes": dict(sorted(Counter(_dtype_name(onnx, i.data_type) for i in g.initializer).items())),
    }


def qdq_scales(path: str | Path) -> dict[str, list]:
    """Scales in a QDQ file: ``activations`` (per-tensor QuantizeLinear) and ``weights`` (per-channel DQ of weights)."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant"}
    value = {**consts, **inits}
    acts, weights = [], []
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[1] in value:
            acts.append(float(value[n.input[1]].reshape(-1)[0]))
        elif n.op_type == "DequantizeLinear" and n.input[0] in inits and n.input[1] in value:
            s = value[n.input[1]].reshape(-1)
            if s.size > 1 or inits[n.input[0]].ndim >= 2:
                weights.append(s.astype("float64"))
    return {"activations": acts, "weights": weights}
