"""A QAT model to int8 files that use the ranges QAT learned: TFLite through litert-torch, ONNX QDQ through torch.onnx.

Both start from the same place: the float (BatchNorm-folded) model is re-traced, the trained fake-quant state is
loaded back, and ``convert_pt2e`` turns every fake-quant into quantize/dequantize ops carrying the learned scales and
zero points. litert-torch lowers those ops to int8 TFLite tensors; ``torch.onnx.export`` writes them as
QuantizeLinear/DequantizeLinear with int8 weight initialisers. No new calibration happens anywhere, and each file's
scales are compared with the QAT ones after writing (``scales`` in the returned info).

export_onnx and convert_tflite call these for a torch artifact whose metadata says ``qat`` (a few lines in each).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.core.artifacts import Artifact
from edgekd.core.errors import ModelError
from edgekd.core.fsutil import atomic_path

REL_TOL = 1e-6  # scales are float32 in both files: equal up to float32 rounding


def read_qat_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The fake-quant state saved beside the float weights (``{"state_dict": ..., "qat_state": ...}``)."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on bad files
        raise ModelError(f"'{path}' is not a loadable weights-only QAT checkpoint ({type(exc).__name__})") from None
    state = obj.get("qat_state") if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state:
        raise ModelError(f"'{path}' holds no QAT state (fake-quant scales); re-run the qat stage")
    from edgekd.models.checkpoint import non_finite_error

    # an observer's min/max start at +-Inf; a scale, zero point or weight never is
    non_finite_error(state, path, allow_inf=[k for k in state if k.endswith(("min_val", "max_val"))])
    return state


def compare_scales(qat_state: dict[str, torch.Tensor], acts: list[float], weights: list[np.ndarray]) -> dict:
    """How a file's scales relate to the learned ones (float32-equal counts as the same)."""
    from edgekd.compress.qat import fake_quants

    fq = fake_quants(qat_state)
    learned_a = [float(f["scale"][0]) for f in fq if not f["per_channel"]]
    learned_w = [f["scale"].numpy() for f in fq if f["per_channel"]]

    def rel(a: float, b: float) -> float:
        return abs(a - b) / max(abs(b), 1e-30)

    def closest(s: float, pool: list[float]) -> float:
        return min((rel(s, p) for p in pool), default=float("inf"))

    found = [closest(s, acts) for s in learned_a]
    foreign = [s for s in acts if closest(s, learned_a) > REL_TOL]
    w_found = sum(any(w.shape == lw.shape and np.allclose(w, lw, rtol=REL_TOL, atol=0) for w in weights)
                  for lw in learned_w)  # fmt: skip
    return {
        "learned_activation_scales": len(learned_a),
        "found_in_file": sum(d <= REL_TOL for d in found),
        "max_rel_diff": max(found, default=0.0),
        "file_activation_scales": len(acts),
        "file_scales_not_learned": len(foreign),
        "learned_weight_scales": len(learned_w),
        "weight_scales_found": int(w_found),
    }


def _tflite_layer(tensor_name: str) -> str:
    """The module path in a litert-torch tensor name ('pkg.Model/torch...Sequential_stem/torch...Conv2d_0;1' ->
    'stem.0'); a functional op in the model's own forward has none."""
    parts = tensor_name.split(";")[0].split("/")[1:]
    attrs = [p.rsplit(".", 1)[-1].split("_", 1)[1] for p in parts if "_" in p.rsplit(".", 1)[-1]]
    return ".".join(attrs) or "(the model's own forward)"


def float_islands(data: bytes) -> list[tuple[str, str]]:
    """(TFLite op, layer) of every op inside an int8 file that reads or writes float32 — an op litert-torch could not
    keep in int8 and wrapped in DEQUANTIZE/QUANTIZE instead. The float I/O wrappers at the boundary do not count."""
    from edgekd.formats.tflite.flatbuffer import _parse

    sg = _parse(data, "converted model")["subgraphs"][0]
    t, ins, outs = sg["tensors"], set(sg["inputs"]), set(sg["outputs"])
    bad = []
    for op in sg["operators"]:
        if (op["op"] == "QUANTIZE" and set(op["inputs"]) <= ins) or (
            op["op"] == "DEQUANTIZE" and set(op["outputs"]) <= outs
        ):
            continue
        if any(i >= 0 and not t[i]["constant"] and t[i]["dtype"] == "float32" for i in op["inputs"] + op["outputs"]):
            bad.append((op["op"], _tflite_layer(t[op["outputs"][0]]["name"]) if op["outputs"] else "?"))
    return bad


def _example(art: Artifact, batch: int = 1) -> torch.Tensor:
    shape = list(art.meta["input_shape"])
    shape[0] = batch
    return torch.zeros(shape)


def qat_tflite(art: Artifact, out_path: Path, int8_io: bool = False) -> dict[str, Any]:
    """Full-integer int8 TFLite from a QAT artifact; returns the converter info convert_tflite records."""
    from edgekd.compress.qat import load_quantized, make_quantizer
    from edgekd.formats.tflite import via_litert_torch as vlt
    from edgekd.formats.tflite.flatbuffer import _parse
    from edgekd.models.io import load_torch_model

    t0 = time.perf_counter()
    model = load_torch_model(art)
    state = read_qat_state(art.path)
    sample = _example(art)
    with vlt.quiet_native_output() as log:
        try:
            import litert_torch
            from litert_torch.quantize import quant_config

            version = str(getattr(litert_torch, "__version__", "unknown"))
            converted = load_quantized(model, state, sample, dynamic=False, fold_quantize=False)
            cfg = quant_config.QuantConfig(pt2e_quantizer=make_quantizer())
            data = litert_torch.convert(converted, (sample,), quant_config=cfg).model_content()
            io_is_int8 = vlt._io_dtypes(data) <= {"int8"}
            if not int8_io and io_is_int8:
                data = vlt.add_float_io(data)
            elif int8_io and not io_is_int8:
                raise ModelError("litert-torch produced float input/output; int8_io needs the post-training path")
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(vlt.describe_failure(vlt.CONVERTER, exc, log.read_text(errors="replace"))) from None
    islands = [(op, layer) for op, layer in float_islands(data) if op not in ("QUANTIZE", "DEQUANTIZE")]
    if islands:
        op, layer = islands[0]
        raise ModelError(
            f"model: layer '{layer}' runs {op} in float inside the int8 TFLite file (litert-torch could not keep it "
            f"in int8{f'; {len(islands) - 1} more ops' if len(islands) > 1 else ''}); replace that op or leave the "
            "model in float"
        )
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(data)
        vlt.verify_precision(tmp, "int8", int8_io, vlt.CONVERTER)
    sg = _parse(data, str(out_path))["subgraphs"][0]
    acts = [t["scale"] for t in sg["tensors"] if t["dtype"] == "int8" and not t["constant"] and t["scale"] is not None
            and not isinstance(t["scale"], list)]  # fmt: skip
    weights = [np.asarray(t["scale"], np.float64) for t in sg["tensors"]
               if t["constant"] and t["dtype"] == "int8" and isinstance(t["scale"], list)]  # fmt: skip
    return {
        "converter": vlt.CONVERTER,
        "converter_version": version,
        "precision": "int8",
        "input_layout": "NCHW",
        "io_dtype": "int8" if int8_io else "float32",
        "ranges": "learned in QAT (no calibration)",
        "scales": compare_scales(state, acts, weights),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def qat_onnx(art: Artifact, out_path: Path, opset: int = 18) -> dict[str, Any]:
    """Int8 QDQ ONNX from a QAT artifact (dynamic batch); returns the metadata export_onnx records with it."""
    import onnx

    from edgekd.compress.qat import load_quantized
    from edgekd.formats.onnx_inspect import inspect_onnx, qdq_scales
    from edgekd.models.io import load_torch_model

    model = load_torch_model(art)
    state = read_qat_state(art.path)
    x = _example(art, 2)
    try:
        converted = load_quantized(model, state, x, dynamic=True, fold_quantize=True)
        with atomic_path(out_path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = torch.export.Dim("batch", max=4096)
            prog = torch.onnx.export(converted, (x,), None, dynamo=True, input_names=["input"],
                                     output_names=["logits"], dynamic_shapes=({0: batch},), opset_version=opset,
                                     verbose=False)  # fmt: skip
            prog.save(str(tmp))
            # Drop per-node debug records (stack traces with this machine's paths, fx node dumps): ~5x the weights
            proto = onnx.load(str(tmp))
            for node in proto.graph.node:
                del node.metadata_props[:]
            onnx.save(proto, str(tmp))
            onnx.checker.check_model(str(tmp), full_check=True)
            found = inspect_onnx(tmp)
            if found["precision"] != "int8":
                raise ModelError(f"the QAT ONNX file holds {found['precision']}, not int8 weights and activations")
    except ModelError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ModelError(f"torch.onnx.export of the QAT graph failed: {type(exc).__name__}: {first}") from None
    scales = qdq_scales(out_path)
    return {
        "quantization": "QAT: learned ranges as QDQ (torchao PT2E convert_pt2e -> torch.onnx)",
        "qat_scales": compare_scales(state, scales["activations"], scales["weights"]),
    }
