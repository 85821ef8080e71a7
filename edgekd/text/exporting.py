"""The text form of the export stages: students (and the teacher) to ONNX or TFLite, fp32 and int8.

``export_onnx`` (task text-embedding) writes ONNX files and the teacher's ONNX fp32 (the latency reference);
``convert_tflite`` writes TFLite files. Each file is verified against PyTorch on held-out sentences through the
device agent's runner (the same code that benchmarks it): fp32 must match within ``tolerance``, int8 must keep a mean
cosine to the fp32 embeddings of at least ``min_int8_cosine``. One format or precision failing is recorded and the
others go on.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from edgekd.core.artifacts import Artifact, OnnxModel, TfliteModel
from edgekd.core.config import StageConfig
from edgekd.core.console import log
from edgekd.core.errors import EdgekdError, ModelError
from edgekd.core.fsutil import atomic_write_json
from edgekd.formats.runner import load_runner
from edgekd.text.export import (
    attach_text_metadata,
    convert_tflite_text,
    export_onnx_text,
    outlier_linears,
    precision_detail,
    quantize_onnx_text,
    text_metadata,
)
from edgekd.text.io import load_array, load_split, load_text_model
from edgekd.text.metrics import mean_cosine
from edgekd.text.teacher import encode, load_teacher, read_vocab


class TextExportOptions(StageConfig):
    """What both text export stages take."""

    models: list[str] = Field(default_factory=lambda: ["student"], min_length=1, description="text torch artifacts")
    precisions: list[Literal["fp32", "int8"]] = Field(
        default_factory=lambda: ["fp32", "int8"],
        min_length=1,
        description="precisions to write; int8 is static full-integer where the layers allow",
    )
    calibration_samples: int = Field(128, ge=1, le=100_000, description="training sentences for int8 ranges")
    verify_samples: int = Field(128, ge=2, le=100_000, description="test sentences each file is checked on")
    tolerance: float = Field(1e-4, gt=0, description="fp32: max abs embedding difference vs PyTorch")
    min_int8_cosine: float = Field(0.95, ge=0, le=1, description="int8: mean cosine to the fp32 embeddings")


def export_inputs(cfg: TextExportOptions, store) -> list[str]:
    """The artifacts a text export stage reads (the runner checks they exist)."""
    return ["text_tokens", "text_teacher", *cfg.models]


def _one(cfg, ctx, name: str, model, meta: dict, fmt: str, precision: str, cal, vocab, texts) -> tuple:
    """Export one (format, precision), attach its metadata, verify it through the agent's runner."""
    max_length = meta["max_length"]
    ext = "onnx" if fmt == "onnx" else "tflite"
    path = ctx.out_dir / f"{name}-{precision}.{ext}"
    info: dict = {}
    if fmt == "onnx":
        if precision == "fp32":
            info["exporter"] = export_onnx_text(model, max_length, path, getattr(cfg, "opset", 18))
        else:
            fp32 = ctx.out_dir / f"{name}-fp32.onnx"
            if not fp32.is_file():
                info["exporter"] = export_onnx_text(model, max_length, fp32, getattr(cfg, "opset", 18))
            bits = getattr(cfg, "int8_weight_bits", 7)
            quantize_onnx_text(fp32, path, *cal, bits)
            info["quantization"] = (
                f"static QDQ (onnxruntime), int8 weights ({bits}-bit range) and MatMul inputs, "
                "float MatMul outputs; embedding table float"
            )
    else:
        keep = {}
        if precision == "int8" and getattr(cfg, "float_outlier_ratio", None) is not None:
            keep = outlier_linears(model, *cal, cfg.float_outlier_ratio)
        info = convert_tflite_text(
            model, max_length, path, precision, cal if precision == "int8" else None, float_modules=tuple(keep)
        )
        if precision == "int8":
            info["quantization"] = "PT2E static full-integer PTQ (litert-torch); embedding table float, float32 output"
            if keep:
                info["float_layers"] = keep  # {module: its output's largest / median channel range}
                info["quantization"] += f"; {len(keep)} outlier layer(s) float with their residual add"
    detail = precision_detail(path)
    md = text_metadata(
        {**meta, "source": name, "precision": detail["precision"]},
        path,
        vocab,
        precision_detail=detail,
        conversion=info,
        pipeline=ctx.pipeline.name,
        pipeline_hash=ctx.cache_key,
        stage=ctx.stage_id,
    )
    attach_text_metadata(path, md)
    got = load_runner(path, md).embed(list(texts))
    return path, md, got


def export_text_models(cfg: TextExportOptions, ctx, inputs, fmt: str, with_teacher: bool) -> list[Artifact]:
    """Export every model in format ``fmt`` at every precision asked for (and the teacher, ONNX fp32, when
    ``with_teacher``); verify each; failures become a record."""
    tokens, tmeta = inputs["text_tokens"], inputs["text_tokens"].meta
    vocab = read_vocab(inputs["text_teacher"].meta["folder"])
    texts = load_array(tokens, "text_test")[: cfg.verify_samples]
    test = load_split(tokens, "test")
    train = load_split(tokens, "train")  # int8 ranges from a seeded random sample of training sentences
    pick = np.random.default_rng(ctx.seed).permutation(len(train.ids))[: cfg.calibration_samples]
    cal = (train.ids[pick], train.mask[pick])
    del train
    outputs: list[Artifact] = []
    failures: list[dict] = []
    jobs = [
        (n, load_text_model(inputs[n]), {k: v for k, v in inputs[n].meta.items() if k != "history"}) for n in cfg.models
    ]
    if with_teacher:
        teacher, facts = load_teacher(inputs["text_teacher"].meta["package"])
        tm = {**tmeta, "role": "teacher", "params": facts["params"]}
        jobs.insert(0, ("teacher", teacher, tm))
    for name, model, meta in jobs:
        ref = encode(model, test.ids[: cfg.verify_samples], test.mask[: cfg.verify_samples])
        for precision in ["fp32"] if name == "teacher" else cfg.precisions:
            art_name = f"{fmt}/{name}-{precision}"
            try:
                path, md, got = _one(cfg, ctx, name, model, meta, fmt, precision, cal, vocab, texts)
                diff = float(np.abs(got - ref).max())
                cos = mean_cosine(got, ref)  # int8 outputs are not exactly unit length after dequantisation
                if precision == "fp32":
                    # the teacher pads to max_length in the file, PyTorch trims: attention over padding differs by
                    # rounding only; a tolerance breach is a real export bug
                    if diff > cfg.tolerance * (10 if name == "teacher" else 1):
                        raise ModelError(f"{fmt} fp32 '{name}' differs from PyTorch by {diff:.3g} > {cfg.tolerance}")
                elif cos < cfg.min_int8_cosine:
                    raise ModelError(f"{fmt} int8 '{name}': mean cosine to PyTorch {cos:.4f} < {cfg.min_int8_cosine}")
                msg = (
                    f"{fmt} {name} {precision} ({md['precision']} in file): max |Δ| vs PyTorch {diff:.2e}, "
                    f"mean cosine {cos:.5f}, {path.stat().st_size:,} bytes"
                )
                ctx.note(msg)
                log("  " + msg)
                art_meta = {
                    **{k: v for k, v in md.items() if k != "vocab"},
                    **{k: v for k, v in meta.items() if k not in md},
                    "max_abs_diff_vs_torch": diff,
                    "cosine_vs_torch": cos,
                }
                cls = OnnxModel if fmt == "onnx" else TfliteModel
                outputs.append(cls(art_name, path, art_meta))
            except EdgekdError as exc:
                failures.append({"name": art_name, "format": fmt, "precision": precision, "error": str(exc)})
                ctx.note(f"{art_name} FAILED: {exc}")
                log(f"  [red]{art_name} failed:[/] {exc}")
    if not outputs:
        raise ModelError("; ".join(f["error"] for f in failures))
    if failures:
        outputs.append(
            Artifact(
                f"failures/{cfg.id}", atomic_write_json(ctx.out_dir / "failures.json", failures), {"failures": failures}
            )
        )
    return outputs
