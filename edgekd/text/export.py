"""Text students (and the teacher) to ONNX and TFLite at a fixed sequence length, with their metadata inside.

Inputs are ``input_ids`` and ``attention_mask`` of shape (1, max_length) (int64 in ONNX; litert-torch makes them
int32 in TFLite), the output is the pooled, L2-normalised sentence embedding (1, D). The metadata (the edgekd JSON
entry) carries everything a device needs to feed the file: the vocabulary itself, the maximum length, lowercasing,
the pooling and the input names; ``devices/wordpiece.py`` turns text into ids from it.

int8: ONNX through onnxruntime static quantization (QDQ, calibrated on training sentences); TFLite through PT2E
full-integer PTQ in litert-torch. In both the embedding lookup table stays float (a gather is exact in any
precision and costs no arithmetic), which ``precision_detail`` records next to the precision found in the file.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd import __version__
from edgekd.core.errors import ModelError
from edgekd.core.fsutil import atomic_path
from edgekd.formats.registry import by_suffix

INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAME = "sentence_embedding"  # not "embedding": the exporter already names an internal value so


def export_onnx_text(model: torch.nn.Module, max_length: int, path: Path, opset: int = 18) -> str:
    """ONNX at batch 1 and ``max_length``; the dynamo exporter, falling back to TorchScript (HF BERT). Returns which."""
    from edgekd.text.models import export_inputs

    args = export_inputs(max_length)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            prog = torch.onnx.export(
                model,
                args,
                None,
                dynamo=True,
                input_names=INPUT_NAMES,
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                verbose=False,
            )
            prog.save(str(tmp))
            return "dynamo"
        except Exception:
            torch.onnx.export(
                model,
                args,
                str(tmp),
                dynamo=False,
                input_names=INPUT_NAMES,
                output_names=[OUTPUT_NAME],
                opset_version=opset,
            )
            return "torchscript"


def quantize_onnx_text(fp32: Path, out: Path, ids: np.ndarray, mask: np.ndarray, weight_bits: int = 7) -> None:
    """Static int8 QDQ with activation ranges from real sentences (one per calibration step); ``weight_bits``: see
    edgekd.formats.onnx.WEIGHT_BITS_HELP (8 bits: the massive-activation test student scores cosine 0.99990
    on an AVX-512 VNNI CPU but 0.98916 on an AVX2-only one, emulated with qemu -cpu Haswell)."""
    from edgekd.formats.onnx import quantize_qdq

    feeds = ({INPUT_NAMES[0]: ids[i : i + 1], INPUT_NAMES[1]: mask[i : i + 1]} for i in range(len(ids)))
    with tempfile.TemporaryDirectory(prefix="edgekd-ortq-") as tmpdir:
        # not Add/Mul: the additive attention mask (-1e4) in an int8 Add wipes out the attention scores
        # (mean cosine to fp32 0.76 measured on the Transformer student; 0.9997 without). Outputs float: they feed
        # float Add / LayerNorm anyway, and an int8 output flattens a massive-activation channel's neighbours
        # (12-epoch student: 0.933 with int8 outputs, 0.999 without; see outlier_linears)
        ops = ["MatMul", "Gemm", "Conv"]
        quantize_qdq(fp32, out, feeds, Path(tmpdir), op_types=ops, float_outputs=True, weight_bits=weight_bits)


@torch.no_grad()
def outlier_linears(model: torch.nn.Module, ids: np.ndarray, mask: np.ndarray, ratio: float) -> dict[str, float]:
    """Linear layers whose output has a channel at least ``ratio`` × the median channel's range on these sentences.

    Long-trained post-LN Transformers grow "massive activations": one channel of a layer's output hundreds of times
    larger than the rest (the 12-epoch text student: 1,974 in one channel of ``layers.0.ff2`` against a median
    channel of 12). A per-tensor int8 scale sized for it leaves the other channels a few steps, so such layers (and
    the residual add they feed) stay float in the int8 TFLite file. Returns {module name: ratio}.
    """
    from edgekd.distill.taps import FeatureTaps

    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    taps, peaks = FeatureTaps(model, names, "the student"), {}
    try:
        model.eval()
        for i in range(0, len(ids), 32):
            model(torch.from_numpy(ids[i : i + 32]), torch.from_numpy(mask[i : i + 32]))
            for name, out in taps.take().items():
                peak = out.abs().reshape(-1, out.shape[-1]).amax(0)
                peaks[name] = torch.maximum(peaks[name], peak) if name in peaks else peak
    finally:
        taps.remove()
    found = {n: float(p.max() / p.median().clamp_min(1e-12)) for n, p in peaks.items()}
    return {n: round(r, 1) for n, r in found.items() if r >= ratio}


def convert_tflite_text(
    model: torch.nn.Module,
    max_length: int,
    out: Path,
    precision: str,
    calib: tuple[np.ndarray, np.ndarray] | None = None,
    float_modules: tuple[str, ...] = (),
) -> dict[str, Any]:
    """litert-torch conversion; int8 is PT2E static full-integer PTQ with float32 output (a DEQUANTIZE added).

    ``float_modules``: Linear layers (module names) left float, with the residual add they feed (outlier_linears)."""
    from edgekd.formats.tflite.via_litert_torch import (
        add_float_io,
        describe_failure,
        int8_quantizer,
        pt2e_int8_convert,
        quiet_native_output,
    )
    from edgekd.text.models import export_inputs

    t0 = time.perf_counter()
    args = export_inputs(max_length)
    model.eval()
    with (
        tempfile.TemporaryDirectory(prefix="edgekd-litert-") as tmpdir,
        quiet_native_output(Path(tmpdir) / "log") as log,
    ):
        try:
            import litert_torch

            if precision == "fp32":
                data = litert_torch.convert(model, args).model_content()
            elif precision == "int8":
                from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

                if calib is None:
                    raise ModelError("int8 TFLite needs calibration sentences")
                graph = torch.export.export(model, args, strict=False).module()
                batches = (
                    (torch.from_numpy(calib[0][i : i + 1]), torch.from_numpy(calib[1][i : i + 1]))
                    for i in range(len(calib[0]))
                )
                quantizer = int8_quantizer(_quantizer_with_float(PT2EQuantizer, float_modules))
                data = pt2e_int8_convert(graph, args, batches, quantizer).model_content()
                data = add_float_io(data)  # only the int8 output gains a float twin; the int32 ids are untouched
            else:
                raise ModelError(f"text models convert to fp32 or int8, not {precision}")
        except ModelError:
            raise
        except Exception as exc:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise ModelError(describe_failure("litert-torch", exc, text)) from None
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return {"converter": "litert-torch", "precision": precision, "seconds": round(time.perf_counter() - t0, 2)}


def _quantizer_with_float(base: type, names: tuple[str, ...]) -> type:
    """``base`` (litert-torch's PT2E quantizer) that leaves the Linear layers ``names`` and the adds their outputs
    feed unannotated, so they stay float (litert-torch's own module-name filter does not match torch 2.13's
    ``nn_module_stack`` keys, and refuses a None config)."""
    if not names:
        return base
    from litert_torch.quantize.pt2e_quantizer_utils import _mark_nodes_as_annotated

    def module_of(node) -> str | None:
        stack = list(node.meta.get("nn_module_stack", {}).values())
        return stack[-1][0] if stack else None

    ADDS = (torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor)

    class WithFloat(base):
        def annotate(self, model):
            for node in model.graph.nodes:
                if node.target == torch.ops.aten.linear.default and module_of(node) in names:
                    adds = [u for u in node.users if u.target in ADDS]
                    _mark_nodes_as_annotated([node, *adds])  # marked with no specs: every annotator skips them
            return super().annotate(model)

    return WithFloat


def precision_detail(path: Path) -> dict[str, Any]:
    """What the file holds: the precision edgekd's inspectors find, and tensor dtype counts (honest labels)."""
    if path.suffix == ".tflite":
        from edgekd.formats.tflite.flatbuffer import inspect_tflite

        info = inspect_tflite(path)
        return {
            "precision": info["precision"],
            "constant_dtypes": info.get("constant_dtypes"),
            "activation_dtypes": info.get("activation_dtypes"),
        }
    import onnx

    from edgekd.formats.onnx import onnx_precision

    m = onnx.load(str(path))
    w = {}
    for init in m.graph.initializer:
        if len(init.dims) >= 2:
            k = onnx.TensorProto.DataType.Name(init.data_type).lower()
            w[k] = w.get(k, 0) + 1
    return {"precision": onnx_precision(path), "weight_dtypes": w}


def text_metadata(meta: dict, path: Path, vocab: list[str], **extra: Any) -> dict[str, Any]:
    """The edgekd metadata of an exported text model (schema: README, "Text embeddings")."""
    from edgekd.formats.metadata import SCHEMA_VERSION, file_io

    check_model_vocab({"vocab_size": meta.get("vocab_size")}, vocab)
    inputs, outputs = file_io(path)
    return {
        "edgekd_metadata": SCHEMA_VERSION,
        "edgekd_version": __version__,
        "task": "text-embedding",
        "output_kind": "embedding",
        "format": by_suffix(path.suffix).label,
        "source": meta.get("source", ""),
        "precision": meta.get("precision", ""),
        "max_length": int(meta["max_length"]),
        "pooling": meta.get("pooling", "mean"),
        "normalize": bool(meta.get("normalize", True)),
        "do_lower_case": bool(meta.get("do_lower_case", True)),
        "tokenizer": "bert-wordpiece",
        "vocab_size": int(meta.get("vocab_size") or len(vocab)),
        "vocab_sha256": meta.get("vocab_sha256"),
        "vocab": vocab,
        "input_names": [t["name"] for t in inputs],
        "inputs": inputs,
        "output": outputs[0],
        "embedding_dim": int(outputs[0]["shape"][-1]),
        **extra,
    }


def attach_text_metadata(path: Path, md: dict[str, Any]) -> None:
    """Into the file: ONNX ``metadata_props`` (``edgekd`` JSON + flat keys), TFLite a ``Model.metadata`` entry."""
    from edgekd.formats.metadata import store_metadata

    flat = {"task": md["task"], "max_length": str(md["max_length"]), "pooling": md["pooling"],
            "edgekd_version": __version__}  # fmt: skip
    store_metadata(path, md, flat)


def check_model_vocab(md: dict, vocab: list[str]) -> None:
    """The vocabulary given with a model must be the one it was trained with: one line, never a crash."""
    if md.get("vocab_size") is not None and int(md["vocab_size"]) != len(vocab):
        raise ModelError(
            f"the vocabulary has {len(vocab)} tokens but the model expects {md['vocab_size']}: "
            "use the vocabulary it was trained with"
        )
