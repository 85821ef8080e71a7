"""PyTorch -> TFLite with litert-torch (no ONNX, no TensorFlow graph in between).

* fp32: ``litert_torch.convert`` of the eval-mode module, behind the app-facing input of
  :mod:`edgekd.formats.tflite.image_input` (NHWC, RGB for a grey model) unless NCHW is asked for.
* fp16: the fp32 flatbuffer is rewritten by ai-edge-quantizer's ``float_casting`` recipe: conv/fc weights stored as
  float16 and widened by DEQUANTIZE ops at load time; float32 activations and I/O.
* int8: full-integer static PTQ through PT2E (``litert_torch.quantize.pt2e_quantizer``, per-channel symmetric int8
  weights, int8 activations calibrated on ``calibration``). litert-torch emits int8 input/output tensors; for
  ``int8_io=False`` a QUANTIZE op is put in front of each input and a DEQUANTIZE op after each output so the file
  takes and returns float32 while computing in int8.

Every file is checked with :func:`edgekd.formats.tflite.flatbuffer.inspect_tflite` before it is moved into place, so a
file that is not really what was asked for (e.g. weight-only quantisation labelled int8) is never written.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.errors import ModelError
from edgekd.core.fsutil import atomic_path

PRECISIONS = ("fp32", "fp16", "int8")
CONVERTER = "litert-torch"

_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "GLOG_minloglevel": "3",
    "ABSL_MIN_LOG_LEVEL": "3",
    "LITERT_TORCH_SHOW_PROGRESS": "0",
}


@contextlib.contextmanager
def quiet_native_output(log_path: Path | None = None) -> Iterator[Path]:
    """Send everything written to fd 1/2 (Python prints, C++ logs, progress bars) to a log file.

    Yields the log path; the caller reads its tail when it needs to explain a failure.
    """
    for k, v in _QUIET_ENV.items():
        os.environ.setdefault(k, v)
    own = log_path is None
    if own:
        fd, name = tempfile.mkstemp(prefix="edgekd-convert-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(log_path, "ab") as log, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                out = sys.__stdout__ or open(os.devnull, "w")  # noqa: SIM115
                err = sys.__stderr__ or out
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    yield log_path
            finally:
                with contextlib.suppress(Exception):
                    sys.__stdout__.flush()
                    sys.__stderr__.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)
        if own:
            with contextlib.suppress(OSError):
                log_path.unlink()


_OP_PATTERNS = (
    r"No module named 'onnx2tf\.ops\.([A-Za-z0-9_]+)'",
    r"([A-Za-z0-9_]+) OP is not yet implemented",
    r"(aten::[A-Za-z0-9_.]+)",
    r"(aten\.[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)",
    r"[Uu]nsupported (?:op|operator|operation)[^:'\"`]*[:'\"`]\s*['\"`]?([A-Za-z0-9_.:]+)",
    r"(tfl\.[a-z0-9_]+|stablehlo\.[a-z0-9_]+|tf\.[A-Za-z0-9_]+)['\"]? (?:op )?(?:is )?"
    r"(?:not supported|failed|is neither)",
    r"No (?:lowering|decomposition) (?:found )?for ([A-Za-z0-9_.:]+)",
)


OTHER_CONVERTER = {"litert-torch": "onnx2tf", "onnx2tf": "litert-torch"}
# where the failing layer is named: onnx2tf's log ("onnx_op_name: /blocks.0/attn/Concat"), torch.export's stack
_LAYER_PATTERNS = (r"onnx_op_name:\s*(\S+)", r"nn_module_stack.*?'([A-Za-z0-9_.]+)'", r"calling layer \"([^\"]+)\"")


def describe_failure(converter: str, exc: BaseException, log_text: str = "") -> str:
    """One line: which converter failed, the unsupported op and the layer when the error or log names them, the
    first line of the error, and the other converter to try."""
    text = f"{exc}\n{log_text}"
    op = None
    for pat in _OP_PATTERNS:
        m = re.search(pat, text)
        if m:
            op = m.group(1).rstrip(".")
            break
    layer = next((m.group(1) for pat in _LAYER_PATTERNS if (m := re.search(pat, text))), None)
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    first = re.sub(r"\s+", " ", first)[:240]
    where = f" at layer {layer}" if layer else ""
    other = OTHER_CONVERTER.get(converter)
    hint = f"; try converter: {other}" if other else ""
    if op:
        return (
            f"{converter} could not convert the model: unsupported op {op}{where} ({type(exc).__name__}: {first}){hint}"
        )
    return f"{converter} could not convert the model{where}: {type(exc).__name__}: {first}{hint}"


def check_request(precision: str, calibration: np.ndarray | None, sample_shape: tuple[int, ...] | None) -> None:
    if precision not in PRECISIONS:
        raise ModelError(f"unknown TFLite precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision != "int8":
        return
    if calibration is None:
        raise ModelError("int8 (full-integer) TFLite conversion needs calibration data; none was given")
    cal = np.asarray(calibration)
    if cal.ndim < 2 or cal.shape[0] == 0:
        raise ModelError(f"calibration data must be an (N, ...) array with N >= 1, got shape {cal.shape}")
    if sample_shape is not None and tuple(cal.shape[1:]) != tuple(sample_shape[1:]):
        raise ModelError(
            f"calibration samples have shape {tuple(cal.shape[1:])}, the model input is {tuple(sample_shape)}"
        )
    if not np.issubdtype(cal.dtype, np.floating) or not np.isfinite(cal).all():
        raise ModelError("calibration data must be finite floating-point values")


def verify_precision(path: Path, precision: str, int8_io: bool, converter: str) -> dict[str, Any]:
    """Inspect the written file and refuse it if it is not what was asked for."""
    from edgekd.formats.tflite.flatbuffer import inspect_tflite

    info = inspect_tflite(path)
    if info["precision"] != precision:
        raise ModelError(
            f"{converter} produced a {info['precision']} model where {precision} was requested "
            f"(weights {info['constant_dtypes']}, activations {info['activation_dtypes']})"
        )
    if precision == "int8":
        want = "int8" if int8_io else "float32"
        io = {t["dtype"] for t in info["inputs"] + info["outputs"]}
        if io != {want}:
            raise ModelError(f"{converter} produced an int8 model with {sorted(io)} input/output, expected {want}")
    return info


# --------------------------------------------------------------------------------------------------------------
# flatbuffer surgery: float32 I/O around an int8 graph


def _opcode_index(fb, model, builtin: int) -> int:
    for i, oc in enumerate(model.operatorCodes or []):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
            return i
    oc = fb.OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = 1
    model.operatorCodes = [*(model.operatorCodes or []), oc]
    return len(model.operatorCodes) - 1


def add_float_io(data: bytes) -> bytes:
    """Give every int8 input a float32 twin + QUANTIZE, every int8 output a DEQUANTIZE + float32 twin.

    The float tensors take over the original names, so signatures and callers see the same names with float32.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    q_idx = _opcode_index(fb, model, fb.BuiltinOperator.QUANTIZE)
    dq_idx = _opcode_index(fb, model, fb.BuiltinOperator.DEQUANTIZE)
    for s, sg in enumerate(model.subgraphs):
        remap: dict[int, int] = {}
        front, back = [], []
        for role, indices in (("in", sg.inputs), ("out", sg.outputs)):
            for k, old in enumerate(list(indices)):
                t = sg.tensors[old]
                if t.type not in (fb.TensorType.INT8, fb.TensorType.UINT8):
                    continue
                new = fb.TensorT()
                new.name, t.name = t.name, (t.name or b"") + (b"_int8" if isinstance(t.name, bytes) else "_int8")
                new.shape, new.shapeSignature = t.shape, t.shapeSignature
                new.type = fb.TensorType.FLOAT32
                model.buffers.append(fb.BufferT())
                new.buffer = len(model.buffers) - 1
                sg.tensors.append(new)
                ni = len(sg.tensors) - 1
                op = fb.OperatorT()
                if role == "in":
                    op.opcodeIndex, op.inputs, op.outputs = q_idx, [ni], [old]
                    front.append(op)
                    sg.inputs[k] = ni
                else:
                    op.opcodeIndex, op.inputs, op.outputs = dq_idx, [old], [ni]
                    back.append(op)
                    sg.outputs[k] = ni
                remap[old] = ni
        sg.operators = front + list(sg.operators or []) + back
        for sig in model.signatureDefs or []:
            if sig.subgraphIndex == s:
                for tm in [*(sig.inputs or []), *(sig.outputs or [])]:
                    tm.tensorIndex = remap.get(tm.tensorIndex, tm.tensorIndex)
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _io_dtypes(data: bytes) -> set[str]:
    from edgekd.formats.tflite.flatbuffer import _parse

    sg = _parse(data, "converted model")["subgraphs"][0]
    return {sg["tensors"][i]["dtype"] for i in sg["inputs"] + sg["outputs"]}


def set_int8_io(src: Path, dst: Path) -> None:
    """float32 I/O -> int8 I/O by dropping the boundary QUANTIZE/DEQUANTIZE ops (TFLite's modify_model_interface)."""
    from ai_edge_litert import _pywrap_modify_model_interface as mmi
    from ai_edge_litert import schema_py_generated as fb

    rc = mmi.modify_model_interface(str(src), str(dst), fb.TensorType.INT8, fb.TensorType.INT8)
    if rc != 0 or not dst.exists():
        raise ModelError(
            f"could not turn the float32 input/output of {src.name} into int8 (modify_model_interface={rc})"
        )


# --------------------------------------------------------------------------------------------------------------


def _fp16_bytes(fp32: bytes) -> bytes:
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager

    rm = recipe_manager.RecipeManager()
    rm.add_quantization_config(
        regex=".*",
        operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
        op_config=qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT,
            explicit_dequantize=True,
        ),
        algorithm_key="float_casting",
    )
    result = quantizer.Quantizer(bytearray(fp32), rm.get_quantization_recipe()).quantize()
    return bytes(result.quantized_model)


def _strip_dropout(gm) -> None:
    """Remove (eval-mode, identity) dropout nodes before PT2E annotation.

    litert-torch 0.10 folds a dropout away but keeps the bias of the following conv/linear quantised with the
    dropout output's scale while the kernel uses the dropout input's scale: measured on a MobileNetV2-like model,
    logits were off by 0.05 (max |logit| 0.17) with the dropout and by 0.0008 without it.
    """
    import torch

    aten = torch.ops.aten
    targets = {
        aten.dropout.default,
        aten.dropout_.default,
        aten.feature_dropout.default,
        aten.alpha_dropout.default,
        aten.feature_alpha_dropout.default,
    }
    changed = False
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in targets:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            changed = True
    if changed:
        gm.graph.lint()
        gm.recompile()


def int8_quantizer(cls: type | None = None):
    """litert-torch's PT2E quantizer (or a subclass ``cls``) set for static full-integer int8: symmetric,
    per-channel weights, calibrated activation ranges."""
    from litert_torch.quantize import pt2e_quantizer

    return (cls or pt2e_quantizer.PT2EQuantizer)().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_qat=False, is_dynamic=False)
    )


def pt2e_int8_convert(graph, sample_args: tuple, calibration_batches: Iterable[tuple], quantizer):
    """PTQ of an exported graph (``torch.export(...).module()``) and its litert-torch conversion at ``sample_args``:
    dropout stripped, observers calibrated on each tuple of ``calibration_batches``, then converted."""
    import litert_torch
    import torch
    from litert_torch.quantize import quant_config
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    _strip_dropout(graph)
    move_exported_model_to_eval(graph)
    prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in calibration_batches:
            prepared(*batch)
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    move_exported_model_to_eval(converted)
    return litert_torch.convert(converted, sample_args, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))


def _int8_edge_model(model, sample, calibration: np.ndarray):
    import torch

    cal = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    # Calibrate through a dynamic-batch export (one forward per chunk: >10x faster than per-sample calls with
    # histogram observers); litert_torch.convert re-exports the quantised graph at batch 1. Models whose forward
    # pins the batch size fall back to a batch-1 export calibrated one sample at a time.
    chunk = 32
    try:
        batch = torch.export.Dim("batch", max=1024)
        graph = torch.export.export(
            model, (torch.cat([sample, sample]),), dynamic_shapes=({0: batch},), strict=False
        ).module()
    except Exception:
        graph, chunk = torch.export.export(model, (sample,), strict=False).module(), 1
    batches = ((cal[i : i + chunk],) for i in range(0, cal.shape[0], chunk))
    return pt2e_int8_convert(graph, (sample,), batches, int8_quantizer())


def convert_litert_torch(
    model: Any,
    input_shape: tuple[int, ...],
    out_path: Path,
    precision: str,
    calibration: np.ndarray | None = None,
    int8_io: bool = False,
    nhwc: bool = False,
    grey_from_rgb: bool = False,
) -> dict[str, Any]:
    """Convert ``model`` (a torch.nn.Module) to a TFLite file at ``out_path``; returns the info dict.

    ``input_shape`` is the NCHW shape at batch 1, e.g. ``(1, 1, 32, 32)``, and ``calibration`` NCHW like the model's
    input. The file takes NCHW, or NHWC with ``nhwc``; with ``grey_from_rgb`` a 1-channel model's file takes 3 (RGB)
    channels and converts them to grey itself (:mod:`edgekd.formats.tflite.image_input`). ``int8_io`` only applies to
    ``precision="int8"``.
    """
    from edgekd.formats.tflite.image_input import app_facing

    out_path = Path(out_path)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) < 2 or shape[0] != 1 or min(shape) < 1:
        raise ModelError(f"litert-torch conversion needs a batch-1 input shape like (1, C, H, W), got {input_shape}")
    check_request(precision, calibration, shape)
    int8_io = bool(int8_io) and precision == "int8"
    t0 = time.perf_counter()
    modes = {m: m.training for m in model.modules()}  # restored afterwards: conversion needs eval mode
    model, shape, calibration, app_input = app_facing(model, shape, calibration, nhwc, grey_from_rgb)
    with tempfile.TemporaryDirectory(prefix="edgekd-litert-") as tmp, quiet_native_output(Path(tmp) / "log") as log:
        try:
            import litert_torch
            import torch

            version = str(getattr(litert_torch, "__version__", "unknown"))
            model.eval()
            if calibration is not None:
                sample = torch.from_numpy(np.ascontiguousarray(np.asarray(calibration)[:1], dtype=np.float32))
            else:
                sample = torch.zeros(shape, dtype=torch.float32)
            if precision == "int8":
                data = _int8_edge_model(model, sample, np.asarray(calibration)).model_content()
                io_is_int8 = _io_dtypes(data) <= {"int8"}
                if not int8_io and io_is_int8:
                    data = add_float_io(data)
                elif int8_io and not io_is_int8:
                    src = Path(tmp) / "float_io.tflite"
                    src.write_bytes(data)
                    set_int8_io(src, Path(tmp) / "int8_io.tflite")
                    data = (Path(tmp) / "int8_io.tflite").read_bytes()
            else:
                data = litert_torch.convert(model, (sample,)).model_content()
                if precision == "fp16":
                    data = _fp16_bytes(data)
        except ModelError:
            raise
        except Exception as exc:
            log_text = log.read_text(errors="replace") if log.exists() else ""
            raise ModelError(describe_failure(CONVERTER, exc, log_text)) from None
        finally:
            for m, training in modes.items():
                m.training = training
    with atomic_path(out_path) as tmp_out:
        tmp_out.write_bytes(data)
        verify_precision(tmp_out, precision, int8_io, CONVERTER)
    return {
        "converter": CONVERTER,
        "converter_version": version,
        "precision": precision,
        "input_layout": "NHWC" if nhwc else "NCHW",
        "input_channels": int(shape[-1] if nhwc else shape[1]),
        **app_input,
        "io_dtype": "int8" if int8_io else "float32",
        "seconds": round(time.perf_counter() - t0, 3),
    }
