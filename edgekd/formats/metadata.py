"""Self-describing models: the metadata every exported file carries, and how it is written into and read from it.

An app developer who receives a ``.onnx`` or ``.tflite`` file must be able to feed it and read its output without
asking who trained it. So each exported file holds one JSON object (schema below) — in ONNX ``metadata_props`` under
the key ``edgekd`` (plus a few flat keys for viewers such as Netron), in TFLite as a ``Model.metadata`` entry named
``edgekd`` next to the standard TFLite Support metadata and a packed ``labels.txt`` (edgekd/formats/tflite/metadata.py).

The object is a superset of the metadata the device agent needs (``input_shape`` in NCHW terms, ``input_layout``,
``mean``, ``std``, ``labels``), so ``load_runner(path, read_metadata(path))`` runs any file edgekd exported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgekd import __version__
from edgekd.core.errors import ModelError
from edgekd.formats.registry import by_suffix

METADATA_KEY = "edgekd"
SCHEMA_VERSION = 1
RESIZE = "bilinear-antialias"  # edgekd.data.sources.resize: bilinear, antialiased when shrinking (PIL's BILINEAR)
# Bounds on a declared input shape: edgekd allocates inputs (and resizes images) to it, so a file declaring
# 100000 x 100000 must be refused, not obeyed. 50 M float32 elements is 200 MB for one sample.
MAX_INPUT_RANK = 8
MAX_INPUT_ELEMENTS = 50_000_000
MAX_TEXT_LENGTH = 100_000  # tokens per sentence of a text model (the shipped ones take 128)
TASKS = ("image-classification", "text-embedding")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_input_shape(shape: Any, where: str, rank: int | None = None) -> list[int]:
    """A declared input shape, bounded: positive integers, rank <= 8 (``rank`` when given), at most 50 M elements.

    The one check for every shape edgekd reads from a file before allocating or resizing to it (metadata, ONNX and
    TFLite inputs; devices/agent.py keeps a copy). ``where`` names the file and key in the ModelError.
    """
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ModelError(f"{where} must be a list of positive integers, got {_short(shape)}")
    if not 1 <= len(shape) <= MAX_INPUT_RANK or (rank is not None and len(shape) != rank):
        want = f"{rank} dimensions" if rank is not None else f"1 to {MAX_INPUT_RANK} dimensions"
        raise ModelError(f"{where} must have {want}, got {_short(list(shape))}")
    if any(d < 1 for d in shape):
        raise ModelError(f"{where} must hold positive integers, got {_short(list(shape))}")
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise ModelError(
            f"{where} {_short(list(shape))} has {math.prod(shape):,} elements; edgekd takes inputs of at most "
            f"{MAX_INPUT_ELEMENTS:,} elements"
        )
    return [int(d) for d in shape]


def _numbers(value: Any, positive: bool = False) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        and (not positive or all(v > 0 for v in value))
    )


def check_metadata(md: Any, where: str) -> dict[str, Any]:
    """The metadata object read from a file (or a metadata JSON), checked once where it is read: the keys its
    consumers use have the right types and sizes, or a one-line ModelError names ``where`` and the key.

    An image model needs ``input_shape`` ([1, C, H, W], NCHW terms) and ``input_layout``; ``mean``, ``std``,
    ``labels`` and ``preprocessing`` are checked when present (``edgekd predict`` can take them from its options).
    A text model (``task: text-embedding``) needs ``max_length``.
    """
    if not isinstance(md, dict):
        raise ModelError(f"{where}: the edgekd metadata must be a JSON object, got {type(md).__name__}")

    def bad(key: str, want: str) -> ModelError:
        shown = _short(md[key]) if key in md else "nothing"
        return ModelError(f"{where}: edgekd metadata '{key}' must be {want}, got {shown}; re-export the model")

    task = md.get("task", "image-classification")
    if task not in TASKS:
        raise bad("task", " or ".join(repr(t) for t in TASKS))
    if task == "text-embedding":
        length = md.get("max_length")
        if not (isinstance(length, int) and not isinstance(length, bool) and 3 <= length <= MAX_TEXT_LENGTH):
            raise bad("max_length", f"an integer from 3 to {MAX_TEXT_LENGTH:,}")
        vocab = md.get("vocab", [])
        if not (isinstance(vocab, list) and all(isinstance(t, str) for t in vocab)):
            raise bad("vocab", "a list of strings")
        return md
    if "input_shape" not in md:
        raise bad("input_shape", "[1, C, H, W] (NCHW terms)")
    check_input_shape(md["input_shape"], f"{where}: edgekd metadata 'input_shape'", rank=4)
    if md.get("input_layout") not in ("NCHW", "NHWC"):
        raise bad("input_layout", "'NCHW' or 'NHWC'")
    for key in ("mean", "std"):
        if key in md and not _numbers(md[key], positive=key == "std"):
            raise bad(key, "a list of finite numbers" + (" > 0" if key == "std" else ""))
    if "labels" in md and not (isinstance(md["labels"], list) and all(isinstance(v, str) for v in md["labels"])):
        raise bad("labels", "a list of strings")
    pre = md.get("preprocessing", {})
    if not isinstance(pre, dict) or not isinstance(pre.get("scale", 1.0), (int, float)):
        raise bad("preprocessing", "an object (color_mode, scale, resize, fit, size)")
    if pre.get("fit", "stretch") not in FIT_STEPS:
        raise ModelError(
            f"{where}: edgekd metadata 'preprocessing.fit' must be one of {', '.join(FIT_STEPS)}, got "
            f"{_short(pre['fit'])}; re-export the model"
        )
    return md


FIT_STEPS = {
    "stretch": "resize to {h}x{w}",
    "center_crop": "scale the shorter side to {side}, then cut the centre {h}x{w}",
    "letterbox": "scale the longer side to {side}, then centre it on a black (0) {h}x{w} canvas",
}


def preprocessing(channels: int, height: int, width: int, layout: str = "NCHW", fit: str = "stretch") -> dict[str, Any]:
    """How an image file becomes the model's input, step by step (edgekd.data.sources.load_image does exactly this)."""
    side = min(height, width) if fit == "center_crop" else max(height, width)
    resize_step = FIT_STEPS.get(fit, FIT_STEPS["stretch"]).format(h=height, w=width, side=side)
    return {
        "color_mode": "L" if channels == 1 else "RGB",
        "scale": 1.0 / 255.0,
        "resize": RESIZE,
        "fit": fit,
        "size": [height, width],
        "steps": [
            f"decode the image and convert it to {'grey (PIL mode L)' if channels == 1 else 'RGB'}",
            "scale the 0-255 pixels to float32 [0, 1] (divide by 255)",
            f"{resize_step}: bilinear, antialiased when shrinking (PIL BILINEAR on the float image)",
            "normalise each channel: (x - mean[c]) / std[c]",
            f"lay out as {layout} with a batch dimension of 1; quantize if input_quantization is set",
        ],
    }


def _io_entry(t: dict) -> dict[str, Any]:
    quant = t.get("quantization")
    if quant is None and t.get("scale") is not None:
        quant = {"scale": t["scale"], "zero_point": t["zero_point"]}
    return {"name": t["name"], "shape": t["shape"], "dtype": t["dtype"], "quantization": quant}


def file_io(path: Path) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs as the file declares them: name, shape, dtype, quantization (None when float)."""
    path = Path(path)
    if path.suffix == ".tflite":
        from edgekd.formats.tflite.flatbuffer import inspect_tflite

        info = inspect_tflite(path)
        return [_io_entry(t) for t in info["inputs"]], [_io_entry(t) for t in info["outputs"]]
    from edgekd.formats.onnx import onnx_io

    return onnx_io(path)


def build_metadata(
    meta: dict[str, Any], path: Path, *, pipeline: str = "", pipeline_hash: str = "", stage: str = ""
) -> dict[str, Any]:
    """The metadata object for an exported file, from its artifact ``meta`` and what the file itself declares.

    ``pipeline_hash`` is the cache key of the stage that wrote the file: a hash of that stage's config, the content of
    its inputs (so, transitively, of every earlier stage), the seed, the device and library versions. It equals the
    ``key`` in that stage's ``manifest.json``.
    """
    inputs, outputs = file_io(path)
    shape = [int(d) for d in meta["input_shape"]]
    md = {
        "edgekd_metadata": SCHEMA_VERSION,
        "edgekd_version": __version__,
        "pipeline": pipeline,
        "pipeline_hash": pipeline_hash,
        "stage": stage,
        "source": meta.get("source", ""),
        "format": by_suffix(Path(path).suffix).label,
        "precision": meta.get("precision", ""),
        "task": "image-classification",
        "output_kind": "logits",
        "labels": [str(v) for v in meta["labels"]],
        "input_shape": shape,
        "input_layout": meta.get("input_layout", "NCHW"),
        "mean": [float(v) for v in meta["mean"]],
        "std": [float(v) for v in meta["std"]],
        "preprocessing": preprocessing(
            shape[1], shape[2], shape[3], meta.get("input_layout", "NCHW"), meta.get("fit", "stretch")
        ),
        "input": inputs[0],
        "output": outputs[0],
        "input_quantization": inputs[0]["quantization"],
        "output_quantization": outputs[0]["quantization"],
    }
    if meta.get("normalization"):  # "pretrained": the mean/std the pretrained weights were trained with (ImageNet's)
        md["normalization"] = meta["normalization"]
    if "quantization" in meta:
        md["quantization_method"] = meta["quantization"]
    if meta.get("grey_from_rgb"):  # a grey model whose file takes RGB (edgekd.formats.tflite.image_input)
        md["grey_from_rgb"] = True
        md["preprocessing"]["steps"].append("inside the model: grey = 0.299 R + 0.587 G + 0.114 B (PIL's 'L')")
    return md


def attach_metadata(path: Path, meta: dict[str, Any], ctx: Any = None) -> dict[str, Any]:
    """Write the metadata into the exported file at ``path`` (atomically) and return it.

    ``ctx`` (a StageContext) supplies the pipeline name, the stage id and the stage's cache key.
    """

    path = Path(path)
    md = build_metadata(
        meta,
        path,
        pipeline=getattr(getattr(ctx, "pipeline", None), "name", ""),
        pipeline_hash=getattr(ctx, "cache_key", ""),
        stage=getattr(ctx, "stage_id", ""),
    )
    flat = {
        "labels": json.dumps(md["labels"]),
        "mean": json.dumps(md["mean"]),
        "std": json.dumps(md["std"]),
        "input_layout": md["input_layout"],
        "preprocessing": "; ".join(md["preprocessing"]["steps"]),
        "edgekd_version": __version__,
        "pipeline_hash": md["pipeline_hash"],
    }
    store_metadata(path, md, flat)
    return md


def store_metadata(path: Path, md: dict[str, Any], flat: dict[str, str]) -> None:
    """Write ``md`` into the file, atomically: TFLite as a ``Model.metadata`` entry; ONNX as ``metadata_props``
    (the ``edgekd`` JSON plus the ``flat`` keys, for tools that read plain key/value pairs)."""
    from edgekd.core.fsutil import atomic_path

    if path.suffix == ".tflite":
        from edgekd.formats.tflite.metadata import embed_metadata

        data = embed_metadata(path.read_bytes(), md)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return
    import onnx

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({METADATA_KEY: json.dumps(md, sort_keys=True), **flat})
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The edgekd metadata stored in an ``.onnx`` or ``.tflite`` file, or None when it has none."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix == ".tflite":
        from edgekd.formats.tflite.metadata import read_edgekd_metadata

        try:
            md = read_edgekd_metadata(path.read_bytes())
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        except Exception as exc:  # a truncated flatbuffer raises struct.error / IndexError
            msg = (str(exc).splitlines() or [""])[0][:160]
            raise ModelError(f"{path}: not a valid TFLite file ({type(exc).__name__}: {msg})") from None
        return None if md is None else check_metadata(md, str(path))
    if path.suffix == ".onnx":
        from edgekd.formats.onnx import load_onnx

        raw = {p.key: p.value for p in load_onnx(path).metadata_props}.get(METADATA_KEY)
        if raw is None:
            return None
        try:
            md = json.loads(raw)
        except ValueError as exc:
            raise ModelError(f"{path}: the '{METADATA_KEY}' metadata is not valid JSON ({exc})") from None
        return check_metadata(md, str(path))
    raise ModelError(f"{path.name}: unknown model format (expected .onnx or .tflite)")
