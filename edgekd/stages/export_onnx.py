"""export_onnx: the student (and any other torch model asked for) to ONNX, checked and verified in onnxruntime.

Optional int8: onnxruntime static quantization (QDQ, per-channel int8 weights, int8 activations calibrated on the
training split). onnxruntime.quantization supersedes the deprecated onnxruntime-tools package.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from edgekd.core.artifacts import Artifact, OnnxModel
from edgekd.core.config import TEXT, StageConfig
from edgekd.core.console import log
from edgekd.core.errors import ModelError
from edgekd.core.stage import register_stage, require
from edgekd.data import SplitData
from edgekd.formats.metadata import attach_metadata
from edgekd.formats.onnx import WEIGHT_BITS_HELP, export_onnx, onnx_precision, quantize_int8
from edgekd.formats.runner import load_runner
from edgekd.models.io import load_torch_model
from edgekd.text.exporting import TextExportOptions, export_inputs, export_text_models


class ExportOnnxConfig(StageConfig):
    models: list[str] = Field(
        default_factory=lambda: ["student"], min_length=1, description="torch artifacts to export"
    )
    exporter: Literal["dynamo", "torchscript"] = Field(
        "dynamo", description="torch.onnx exporter: dynamo (torch.export) or the legacy torchscript one"
    )
    opset: int = Field(18, ge=13, le=23, description="ONNX opset version")
    tolerance: float = Field(1e-4, gt=0, description="max abs logit difference allowed vs PyTorch")
    int8: bool = Field(True, description="also write a static int8 (QDQ) model with onnxruntime.quantization")
    calibration_samples: int = Field(
        256, ge=1, le=100_000, description="training images that set the int8 activation ranges"
    )
    min_int8_agreement: float = Field(
        0.98, ge=0, le=1, description="fail when the int8 file agrees with fp32's top-1 on fewer test images"
    )
    verify_samples: int = Field(512, ge=1, description="test images each file is checked on against PyTorch")
    int8_weight_bits: Literal[7, 8] = Field(7, description=WEIGHT_BITS_HELP)


def _inputs(cfg: ExportOnnxConfig, store) -> list[str]:
    return require(store, cfg.id, "dataset", *cfg.models)


@register_stage("export_onnx", ExportOnnxConfig, _inputs, ("onnx", "onnxruntime", "onnxscript"))
def run_export_onnx(cfg: ExportOnnxConfig, ctx, inputs) -> list[OnnxModel]:
    """Export to ONNX, verify against PyTorch, optionally quantise to int8."""
    import onnx

    from edgekd.training.loop import predict_logits

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


# ---------------------------------------- text embedding (task: text-embedding)


class TextExportOnnxConfig(TextExportOptions):
    teacher: bool = Field(True, description="also export the teacher to ONNX fp32, for the latency comparison")
    opset: int = Field(18, ge=13, le=23, description="ONNX opset version")
    int8_weight_bits: Literal[7, 8] = Field(7, description=WEIGHT_BITS_HELP)


def _text_inputs(cfg: TextExportOnnxConfig, store) -> list[str]:
    return require(store, cfg.id, *export_inputs(cfg, store))


@register_stage("export_onnx", TextExportOnnxConfig, _text_inputs, ("onnx", "onnxruntime"), task=TEXT)
def run_text_export_onnx(cfg: TextExportOnnxConfig, ctx, inputs) -> list[Artifact]:
    """Text students (and the teacher, the latency reference) to ONNX fp32 and int8, each verified."""
    return export_text_models(cfg, ctx, inputs, "onnx", cfg.teacher)
