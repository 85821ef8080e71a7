"""export_onnx: the student (and any other torch model asked for) to ONNX, checked and verified in onnxruntime.

Optional int8: onnxruntime static quantization (QDQ, per-channel int8 weights, int8 activations calibrated on the
training split). onnxruntime.quantization supersedes the deprecated onnxruntime-tools package.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edgekd.artifacts import OnnxModel
from edgekd.config import StageConfig
from edgekd.console import log
from edgekd.data import SplitData
from edgekd.errors import ModelError
from edgekd.fsutil import atomic_path
from edgekd.metadata import attach_metadata
from edgekd.models.io import load_torch_model
from edgekd.runtimes import load_runner
from edgekd.stages.base import register_stage, require

WEIGHT_BITS_HELP = (
    "int8 weights use 7 bits of range (onnxruntime's reduce_range) by default so that the int8 file gives the same "
    "numbers on every x86 CPU: with 8-bit weights, CPUs with AVX2 but no VNNI saturate the int16 pair sums of their "
    "u8*s8 kernel (VPMADDUBSW) and lose accuracy the VNNI / ARM CPUs do not; 8 = full range"
)


class ExportOnnxConfig(StageConfig):
    models: list[str] = Field(default_factory=lambda: ["student"], min_length=1)
    exporter: Literal["dynamo", "torchscript"] = "dynamo"
    opset: int = Field(18, ge=13, le=23)
    tolerance: float = Field(1e-4, gt=0, description="max abs logit difference allowed vs PyTorch")
    int8: bool = Field(True, description="also write a static int8 (QDQ) model with onnxruntime.quantization")
    calibration_samples: int = Field(256, ge=1, le=100_000)
    min_int8_agreement: float = Field(0.98, ge=0, le=1)
    verify_samples: int = Field(512, ge=1)
    int8_weight_bits: Literal[7, 8] = Field(7, description=WEIGHT_BITS_HELP)


def _inputs(cfg: ExportOnnxConfig, store) -> list[str]:
    return require(store, cfg.id, "dataset", *cfg.models)


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


@register_stage("export_onnx", ExportOnnxConfig, _inputs, ("onnx", "onnxruntime", "onnxscript"))
def run_export_onnx(cfg: ExportOnnxConfig, ctx, inputs) -> list[OnnxModel]:
    """Export to ONNX, verify against PyTorch, optionally quantise to int8."""
    import onnx

    from edgekd.train import predict_logits

    data = SplitData.load(inputs["dataset"].path)
    x_test = data.arrays["test"][0][: cfg.verify_samples]
    outputs: list[OnnxModel] = []
    for name in cfg.models:
        art = inputs[name]
        model = load_torch_model(art)
        path = ctx.out_dir / f"{name}-fp32.onnx"
        try:
            export_onnx(model, tuple(art.meta["input_shape"]), path, cfg.exporter, cfg.opset)
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as exc:
            raise ModelError(
                f"torch.onnx.export ({cfg.exporter}) failed for '{name}': "
                f"{(str(exc).strip().splitlines() or [''])[0][:300]}"
            ) from exc
        ref = predict_logits(model, x_test, data.mean, data.std).numpy()
        meta = {k: v for k, v in art.meta.items() if k not in ("history",)}
        meta.update(source=name, format="onnx", input_layout="NCHW")
        attach_metadata(path, {**meta, "precision": onnx_precision(path)}, ctx)  # verified below, with its metadata
        got = load_runner(path, meta).predict(x_test)
        diff = float(np.abs(got - ref).max())
        if diff > cfg.tolerance:
            raise ModelError(f"ONNX fp32 '{name}' differs from PyTorch by {diff:.3g} > tolerance {cfg.tolerance}")
        ctx.note(f"onnx {name} fp32: max abs logit diff vs PyTorch {diff:.2e}")
        log(f"  onnx {name} fp32: max |Δlogit| vs PyTorch = {diff:.2e}")
        outputs.append(
            OnnxModel(
                f"onnx/{name}-fp32", path, {**meta, "precision": onnx_precision(path), "max_abs_diff_vs_torch": diff}
            )
        )
        if cfg.int8:
            calib = data.calibration(cfg.calibration_samples, ctx.seed)
            qpath = ctx.out_dir / f"{name}-int8.onnx"
            qinfo: dict = {"quantization": f"static QDQ (onnxruntime), {cfg.int8_weight_bits}-bit weight range"}
            if art.meta.get("qat"):  # the ranges QAT learned, as QDQ; no calibration (edgekd.compress.qat_export)
                from edgekd.compress.qat_export import qat_onnx

                qinfo = qat_onnx(art, qpath, cfg.opset)
            else:
                quantize_int8(path, qpath, calib, ctx.out_dir, cfg.int8_weight_bits)
            (ctx.out_dir / "pre.onnx").unlink(missing_ok=True)
            prec = onnx_precision(qpath)
            attach_metadata(qpath, {**meta, "precision": prec, **qinfo}, ctx)
            q = load_runner(qpath, meta).predict(x_test)
            agree = float((q.argmax(1) == got.argmax(1)).mean())
            ctx.note(f"onnx {name} int8 (static QDQ, {prec} in file): top-1 agreement with fp32 {agree:.4f}")
            log(f"  onnx {name} int8: agreement with fp32 = {agree:.4f}")
            if agree < cfg.min_int8_agreement:
                raise ModelError(
                    f"ONNX int8 '{name}' agrees with fp32 on only {agree:.1%} of test images "
                    f"(< min_int8_agreement {cfg.min_int8_agreement:.0%})"
                )
            outputs.append(
                OnnxModel(
                    f"onnx/{name}-int8",
                    qpath,
                    {**meta, "precision": prec, **qinfo, "agreement_vs_fp32": agree},
                )
            )
    return outputs
