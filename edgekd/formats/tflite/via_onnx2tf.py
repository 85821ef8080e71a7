"""ONNX -> TensorFlow -> TFLite with onnx2tf.

onnx2tf rewrites the graph channels-last: a 4D NCHW ONNX input becomes an NHWC TFLite input (3D NCW -> NWC), so
calibration data, given NCHW like everywhere else in edgekd, is transposed before it is handed to onnx2tf
(``custom_input_op_name_np_data_path`` wants the layout after conversion). The layout of the written file is read
back from the file itself and reported in ``input_layout``.

Files onnx2tf writes, and which one is kept:

* fp32 -> ``*_float32.tflite``; fp16 -> ``*_float16.tflite`` (float16 weights + DEQUANTIZE, float32 I/O)
* int8, ``int8_io=False`` -> ``*_integer_quant.tflite`` (int8 weights and activations, float32 I/O)
* int8, ``int8_io=True`` -> ``*_full_integer_quant.tflite`` (int8 input/output too)

onnx2tf edits the ONNX file it is given (op renaming, shape clean-up) and writes next to its output folder, so it
works on a private copy inside ``work_dir``; the caller's ONNX file and cwd are never touched.

For a model whose input is a 4D RGB image, onnx2tf fetches 20 sample images from GitHub to compare ONNX and TF outputs
(``download_test_image_data``; it takes ``calibration_image_sample_data_20x128x128x3_float32.npy`` from the current
directory instead when that file exists). edgekd never downloads at run time: the conversion runs with ``work_dir`` as
the current directory and that file written there, 20 seeded uniform [0, 1] images (:func:`_sample_images`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.errors import ModelError
from edgekd.core.fsutil import atomic_path
from edgekd.formats.tflite.via_litert_torch import (
    check_request,
    describe_failure,
    quiet_native_output,
    verify_precision,
)

CONVERTER = "onnx2tf"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SUFFIX = {
    ("fp32", False): "float32",
    ("fp16", False): "float16",
    ("int8", False): "integer_quant",
    ("int8", True): "full_integer_quant",
}


SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _sample_images(work: Path) -> None:
    """The file onnx2tf reads instead of downloading its sample images (its own name and shape)."""
    rng = np.random.default_rng(0)
    np.save(work / SAMPLE_FILE, rng.random((20, 128, 128, 3), dtype=np.float32))


@contextlib.contextmanager
def _cwd(path: Path):
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _dims(value_info) -> list[int | None]:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None)
    return dims


def _prepare_onnx(onnx_path: Path, dst: Path) -> tuple[list[str], list[list[int | None]], bool]:
    """Copy the model to ``dst`` with safe input names; returns (input names, input dims, batch was dynamic)."""
    import onnx

    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:
        raise ModelError(f"{onnx_path}: cannot read ONNX model ({type(exc).__name__}: {exc})") from None
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs:
        raise ModelError(f"{onnx_path}: the ONNX graph has no input")
    rename = {}
    for k, vi in enumerate(inputs):
        if not _SAFE_NAME.match(vi.name):
            rename[vi.name] = f"input_{k}" if len(inputs) > 1 else "input"
            vi.name = rename[vi.name]
    if rename:
        for node in graph.node:
            for j, name in enumerate(node.input):
                if name in rename:
                    node.input[j] = rename[name]
        for out in graph.output:
            if out.name in rename:  # an input passed straight through
                raise ModelError(f"{onnx_path}: graph input {out.name!r} is also an output; cannot convert")
    dims = [_dims(vi) for vi in inputs]
    dynamic_batch = any(d and d[0] is None for d in dims)
    for vi, d in zip(inputs, dims, strict=True):
        if any(x is None for x in d[1:]):
            raise ModelError(
                f"{onnx_path}: input {vi.name!r} has dynamic non-batch dimensions {d}; export it with a fixed shape"
            )
    onnx.save(model, str(dst))
    return [vi.name for vi in inputs], dims, dynamic_batch


def _channels_last(a: np.ndarray) -> np.ndarray:
    if a.ndim >= 3:  # N, C, *spatial -> N, *spatial, C
        return np.ascontiguousarray(np.moveaxis(a, 1, -1))
    return np.ascontiguousarray(a)


def _layout(input_shape: list[int], onnx_dims: list[int | None]) -> str:
    nchw = [1, *onnx_dims[1:]]
    if len(nchw) < 3:
        return "NC"
    nhwc = [nchw[0], *nchw[2:], nchw[1]]
    if list(input_shape) == nhwc:
        return "NHWC" if len(nchw) == 4 else ("NWC" if len(nchw) == 3 else "NDHWC")
    if list(input_shape) == nchw:
        return "NCHW" if len(nchw) == 4 else ("NCW" if len(nchw) == 3 else "NCDHW")
    return "unknown"


def convert_onnx2tf(
    onnx_path: Path,
    out_path: Path,
    precision: str,
    calibration: np.ndarray | None = None,
    int8_io: bool = False,
    work_dir: Path | None = None,
) -> dict[str, Any]:
    """Convert an ONNX file to a TFLite file at ``out_path`` with onnx2tf; returns the info dict.

    ``calibration`` is float32 (N, C, H, W) as fed to the PyTorch model (it is transposed to onnx2tf's NHWC here);
    ``int8_io`` only applies to ``precision="int8"``. A dynamic batch dimension is fixed to 1.
    """
    onnx_path, out_path = Path(onnx_path).resolve(), Path(out_path).resolve()
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: ONNX file not found")
    check_request(precision, calibration, None)
    int8_io = bool(int8_io) and precision == "int8"
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgekd-onnx2tf-")))
        else:
            work = Path(work_dir).resolve() / f"onnx2tf-{precision}{'-int8io' if int8_io else ''}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
        model_copy = work / "model.onnx"
        names, dims, dynamic_batch = _prepare_onnx(onnx_path, model_copy)
        cind = None
        if precision == "int8":
            if len(names) != 1:
                raise ModelError(
                    f"{onnx_path}: int8 calibration supports single-input models, this one has {len(names)}"
                )
            cal = np.asarray(calibration, dtype=np.float32)
            if list(cal.shape[1:]) != list(dims[0][1:]):
                raise ModelError(f"calibration samples have shape {tuple(cal.shape[1:])}, the ONNX input is {dims[0]}")
            np.save(work / "calibration.npy", _channels_last(cal))
            zero, one = np.zeros((1,), np.float32), np.ones((1,), np.float32)
            cind = [[names[0], str(work / "calibration.npy"), zero, one]]
        # An empty replacement file stops onnx2tf from running its slow "auto-generate a fix" search on failure.
        no_fix = work / "no_replacements.json"
        no_fix.write_text(json.dumps({"format_version": 1, "operations": []}))
        out_dir = work / "out"
        log = work / "onnx2tf.log"
        _sample_images(work)
        try:
            with quiet_native_output(log), _cwd(work):
                import onnx2tf

                version = str(getattr(onnx2tf, "__version__", "unknown"))
                onnx2tf.convert(
                    input_onnx_file_path=str(model_copy),
                    output_folder_path=str(out_dir),
                    non_verbose=True,
                    verbosity="error",
                    not_use_onnxsim=True,
                    param_replacement_file=str(no_fix),
                    batch_size=1 if dynamic_batch else None,
                    output_integer_quantized_tflite=precision == "int8",
                    custom_input_op_name_np_data_path=cind,
                    input_quant_dtype="int8",
                    output_quant_dtype="int8",
                )
        except (Exception, SystemExit) as exc:
            log_text = log.read_text(errors="replace") if log.exists() else ""
            if isinstance(exc, SystemExit):  # onnx2tf logs the reason and calls sys.exit(1)
                errs = [ln.strip() for ln in log_text.splitlines() if "ERROR" in ln or "Error" in ln]
                exc = RuntimeError(_ANSI.sub("", errs[0]) if errs else f"onnx2tf exited ({exc.code})")
            raise ModelError(describe_failure(CONVERTER, exc, _ANSI.sub("", log_text))) from None
        produced = out_dir / f"model_{_SUFFIX[(precision, int8_io)]}.tflite"
        if not produced.is_file():
            lines = log.read_text(errors="replace").splitlines()[-3:] if log.exists() else []
            tail = _ANSI.sub("", " | ".join(ln.strip() for ln in lines))[:300]
            raise ModelError(f"onnx2tf did not write {produced.name} ({tail})")
        with atomic_path(out_path) as tmp_out:
            shutil.copyfile(produced, tmp_out)
            info = verify_precision(tmp_out, precision, int8_io, CONVERTER)
    return {
        "converter": CONVERTER,
        "converter_version": version,
        "precision": precision,
        "input_layout": _layout(info["inputs"][0]["shape"], dims[0]),
        "io_dtype": "int8" if int8_io else "float32",
        "seconds": round(time.perf_counter() - t0, 3),
    }
