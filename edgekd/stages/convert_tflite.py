"""convert_tflite: the student to TFLite (fp32, fp16, full-integer int8), each file verified in the LiteRT interpreter.

Two converters: litert-torch (PyTorch -> TFLite directly) and onnx2tf (ONNX -> TensorFlow -> TFLite). The precision
written in the report is the one found in the file (edgekd.formats.tflite.flatbuffer), never the one asked for.

The files take what app tooling hands an image classifier (edgekd.formats.tflite.image_input): NHWC input, and RGB for a
model trained on grey images, so MediaPipe's ImageClassifier loads them. Verification feeds the same test images in
that form (the device agent repeats a grey image into RGB) and compares with the PyTorch model on the grey NCHW ones.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from edgekd.core.artifacts import Artifact, TfliteModel
from edgekd.core.config import TEXT, StageConfig
from edgekd.core.console import log, progress
from edgekd.core.errors import EdgekdError, ModelError
from edgekd.core.fsutil import atomic_write_json
from edgekd.core.stage import register_stage, require
from edgekd.data import SplitData
from edgekd.formats.metadata import attach_metadata
from edgekd.formats.runner import load_runner
from edgekd.models.io import load_torch_model
from edgekd.text.exporting import TextExportOptions, export_inputs, export_text_models
from edgekd.training.loop import predict_logits

Precision = Literal["fp32", "fp16", "int8"]


class ConvertTfliteConfig(StageConfig):
    model: str = Field("student", description="torch artifact to convert")
    converter: Literal["litert-torch", "onnx2tf"] = Field(
        "litert-torch", description="litert-torch (from PyTorch) or onnx2tf (from the ONNX file)"
    )
    precisions: list[Precision] = Field(
        default_factory=lambda: ["fp32", "fp16", "int8"],
        min_length=1,
        description="files to write; int8 is full-integer (int8 weights and activations, float I/O)",
    )
    int8_io: bool = Field(False, description="int8 model inputs/outputs (else float I/O around an int8 graph)")
    calibration_samples: int = Field(
        256, ge=1, le=100_000, description="training images that set the int8 activation ranges"
    )
    tolerance: float = Field(1e-4, gt=0, description="fp32: max abs logit difference allowed vs PyTorch")
    min_int8_agreement: float = Field(0.98, ge=0, le=1, description="int8: top-1 agreement with fp32 on the test split")
    min_fp16_agreement: float = Field(
        0.99, ge=0, le=1, description="fail when the fp16 file agrees with PyTorch's top-1 on fewer test images"
    )
    input_layout: Literal["nhwc", "nchw"] = Field(
        "nhwc", description="the file's input layout: nhwc (what app tooling such as MediaPipe takes) or PyTorch's nchw"
    )
    grey_as_rgb: bool = Field(
        True, description="nhwc: a grey model's file takes RGB and makes grey itself (MediaPipe takes only RGB)"
    )

    @model_validator(mode="after")
    def _check_file_input(self) -> ConvertTfliteConfig:
        rgb_asked = "grey_as_rgb" in self.model_fields_set and self.grey_as_rgb
        if self.converter == "onnx2tf" and self.input_layout == "nchw":
            raise ValueError("input_layout: nchw needs converter: litert-torch (onnx2tf always writes NHWC files)")
        if self.converter == "onnx2tf" and rgb_asked:
            raise ValueError("grey_as_rgb needs converter: litert-torch (onnx2tf keeps the ONNX file's channels)")
        if self.input_layout == "nchw" and rgb_asked:
            raise ValueError("grey_as_rgb applies to input_layout: nhwc (the layout MediaPipe and app tooling take)")
        return self


def _inputs(cfg: ConvertTfliteConfig, store) -> list[str]:
    names = ["dataset", cfg.model]
    if cfg.converter == "onnx2tf":
        names.append(f"onnx/{cfg.model}-fp32")
    return require(store, cfg.id, *names)


def _convert(cfg: ConvertTfliteConfig, inputs, model, data: SplitData, precision: str, out, ctx) -> dict:
    calib = data.calibration(cfg.calibration_samples, ctx.seed) if precision == "int8" else None
    int8_io = cfg.int8_io and precision == "int8"
    if precision == "int8" and inputs[cfg.model].meta.get("qat"):  # QAT's learned ranges, no calibration
        from edgekd.compress.qat_export import qat_tflite

        return qat_tflite(inputs[cfg.model], out, int8_io)
    if cfg.converter == "litert-torch":
        from edgekd.formats.tflite.via_litert_torch import convert_litert_torch

        nhwc = cfg.input_layout == "nhwc"
        rgb = nhwc and cfg.grey_as_rgb
        return convert_litert_torch(model, tuple(data.input_shape), out, precision, calib, int8_io, nhwc, rgb)
    from edgekd.formats.tflite.via_onnx2tf import convert_onnx2tf

    work = ctx.out_dir / f".onnx2tf-{precision}"
    return convert_onnx2tf(inputs[f"onnx/{cfg.model}-fp32"].path, out, precision, calib, int8_io, work)


def _file_input(meta: dict, info: dict) -> dict:
    """Layout, shape (NCHW terms) and normalisation of the file's input: RGB with the grey statistics repeated when
    the file converts RGB to grey itself (the luma weights sum to 1, so the normalised grey value is unchanged)."""
    out = {"input_layout": info["input_layout"]}
    if info.get("grey_from_rgb"):
        shape = list(meta["input_shape"])
        out.update(
            input_shape=[shape[0], 3, *shape[2:]],
            mean=list(meta["mean"]) * 3,
            std=list(meta["std"]) * 3,
            grey_from_rgb=True,
        )
    return out


@register_stage(
    "convert_tflite",
    ConvertTfliteConfig,
    _inputs,
    ("litert-torch", "ai-edge-litert", "onnx2tf", "tensorflow", "tf_keras"),
)
def run_convert_tflite(cfg: ConvertTfliteConfig, ctx, inputs) -> list[Artifact]:
    """Convert, verify and inspect each requested precision; a failed precision is recorded and the others go on."""
    import shutil

    from edgekd.formats.tflite.flatbuffer import inspect_tflite

    data = SplitData.load(inputs["dataset"].path)
    art = inputs[cfg.model]
    model = load_torch_model(art)
    x_test = data.arrays["test"][0]
    ref = predict_logits(model, x_test, data.mean, data.std).numpy()
    base_meta = {k: v for k, v in art.meta.items() if k != "history"}
    outputs: list[Artifact] = []
    failures = []
    fp32_pred = ref.argmax(1)
    with progress() as bar:
        task = bar.add_task(f"tflite ({cfg.converter})", total=len(cfg.precisions), info="")
        for precision in cfg.precisions:
            bar.update(task, info=precision)
            out = ctx.out_dir / f"{cfg.model}-{precision}.tflite"
            try:
                info = _convert(cfg, inputs, model, data, precision, out, ctx)
                shutil.rmtree(ctx.out_dir / f".onnx2tf-{precision}", ignore_errors=True)
                found = inspect_tflite(out)
                meta = {
                    **base_meta,
                    **_file_input(base_meta, info),
                    "format": "tflite",
                    "source": cfg.model,
                    "requested_precision": precision,
                    "precision": found["precision"],
                    "converter": info,
                }
                attach_metadata(out, meta, ctx)  # verified below, with its metadata
                got = load_runner(out, meta).predict(x_test)
                agree = float((got.argmax(1) == fp32_pred).mean())
                diff = float(np.abs(got - ref).max())
                meta.update(max_abs_diff_vs_torch=diff, agreement_vs_fp32=agree)
                msg = (
                    f"tflite {precision} via {cfg.converter} ({found['precision']} in file): max |Δlogit| vs "
                    f"PyTorch {diff:.2e}, top-1 agreement with fp32 {agree:.4f}, {out.stat().st_size} bytes"
                )
                if precision == "fp32" and diff > cfg.tolerance:
                    raise ModelError(f"TFLite fp32 differs from PyTorch by {diff:.3g} > tolerance {cfg.tolerance}")
                if precision == "fp16" and agree < cfg.min_fp16_agreement:
                    raise ModelError(f"TFLite fp16 agrees with fp32 on only {agree:.1%} (< {cfg.min_fp16_agreement})")
                if precision == "int8" and agree < cfg.min_int8_agreement:
                    raise ModelError(f"TFLite int8 agrees with fp32 on only {agree:.1%} (< {cfg.min_int8_agreement})")
                if precision == "int8" and found["precision"] != "int8":
                    raise ModelError(f"asked for full-integer int8 but the file holds {found['precision']}")
                ctx.note(msg)
                log("  " + msg)
                outputs.append(TfliteModel(f"tflite/{cfg.model}-{precision}", out, meta))
            except EdgekdError as exc:
                failures.append(
                    {
                        "name": f"tflite/{cfg.model}-{precision}",
                        "precision": precision,
                        "format": "tflite",
                        "error": str(exc),
                    }
                )
                ctx.note(f"tflite {precision} FAILED: {exc}")
                log(f"  [red]tflite {precision} failed:[/] {exc}")
                out.unlink(missing_ok=True)
            bar.advance(task)
    if failures and not outputs:
        raise ModelError("; ".join(f["error"] for f in failures))
    if failures:
        path = atomic_write_json(ctx.out_dir / "failures.json", failures)
        outputs.append(Artifact(f"failures/{cfg.id}", path, {"failures": failures}))
    return outputs


# ---------------------------------------- text embedding (task: text-embedding)


class TextConvertTfliteConfig(TextExportOptions):
    float_outlier_ratio: float | None = Field(
        10.0,
        ge=1,
        description="int8: Linear layers whose output has a channel >= this x the median channel's range on the "
        "calibration sentences stay float, with the residual add they feed (None: quantise every layer)",
    )


def _text_inputs(cfg: TextConvertTfliteConfig, store) -> list[str]:
    return require(store, cfg.id, *export_inputs(cfg, store))


@register_stage("convert_tflite", TextConvertTfliteConfig, _text_inputs, ("litert-torch", "ai-edge-litert"), task=TEXT)
def run_text_convert_tflite(cfg: TextConvertTfliteConfig, ctx, inputs) -> list[Artifact]:
    """Text students to TFLite fp32 and int8 (litert-torch, PT2E static PTQ), each verified."""
    return export_text_models(cfg, ctx, inputs, "tflite", False)
