"""Self-describing models: the metadata every exported file carries, and how it is written into and read from it.

An app developer who receives a ``.onnx`` or ``.tflite`` file must be able to feed it and read its output without
asking who trained it. So each exported file holds one JSON object (schema below) — in ONNX ``metadata_props`` under
the key ``edgekd`` (plus a few flat keys for viewers such as Netron), in TFLite as a ``Model.metadata`` entry named
``edgekd`` next to the standard TFLite Support metadata and a packed ``labels.txt`` (edgekd/convert/tflite_metadata.py).

The object is a superset of the metadata the device agent needs (``input_shape`` in NCHW terms, ``input_layout``,
``mean``, ``std``, ``labels``), so ``load_runner(path, read_metadata(path))`` runs any file edgekd exported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekd import __version__
from edgekd.errors import ModelError

METADATA_KEY = "edgekd"
SCHEMA_VERSION = 1
RESIZE = "bilinear-antialias"  # edgekd.data.sources.resize: bilinear, antialiased when shrinking (PIL's BILINEAR)


def preprocessing(channels: int, height: int, width: int, layout: str = "NCHW") -> dict[str, Any]:
    """How an image file becomes the model's input, step by step (edgekd.data.sources.load_image does exactly this)."""
    return {
        "color_mode": "L" if channels == 1 else "RGB",
        "scale": 1.0 / 255.0,
        "resize": RESIZE,
        "size": [height, width],
        "steps": [
            f"decode the image and convert it to {'grey (PIL mode L)' if channels == 1 else 'RGB'}",
            "scale the 0-255 pixels to float32 [0, 1] (divide by 255)",
            f"resize to {height}x{width}: bilinear, antialiased when shrinking (PIL BILINEAR on the float image)",
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
        from edgekd.convert.tflite_inspect import inspect_tflite

        info = inspect_tflite(path)
        return [_io_entry(t) for t in info["inputs"]], [_io_entry(t) for t in info["outputs"]]
    from edgekd.inspect_model import onnx_io

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
        "format": "tflite" if Path(path).suffix == ".tflite" else "onnx",
        "precision": meta.get("precision", ""),
        "task": "image-classification",
        "output_kind": "logits",
        "labels": [str(v) for v in meta["labels"]],
        "input_shape": shape,
        "input_layout": meta.get("input_layout", "NCHW"),
        "mean": [float(v) for v in meta["mean"]],
        "std": [float(v) for v in meta["std"]],
        "preprocessing": preprocessing(shape[1], shape[2], shape[3], meta.get("input_layout", "NCHW")),
        "input": inputs[0],
        "output": outputs[0],
        "input_quantization": inputs[0]["quantization"],
        "output_quantization": outputs[0]["quantization"],
    }
    if "quantization" in meta:
        md["quantization_method"] = meta["quantization"]
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
    from edgekd.fsutil import atomic_path

    if path.suffix == ".tflite":
        from edgekd.convert.tflite_metadata import embed_metadata

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
        from edgekd.convert.tflite_metadata import read_edgekd_metadata

        try:
            return read_edgekd_metadata(path.read_bytes())
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        except Exception as exc:  # a truncated flatbuffer raises struct.error / IndexError
            msg = (str(exc).splitlines() or [""])[0][:160]
            raise ModelError(f"{path}: not a valid TFLite file ({type(exc).__name__}: {msg})") from None
    if path.suffix == ".onnx":
        from edgekd.inspect_model import load_onnx

        raw = {p.key: p.value for p in load_onnx(path).metadata_props}.get(METADATA_KEY)
        if raw is None:
            return None
        try:
            md = json.loads(raw)
        except ValueError as exc:
            raise ModelError(f"{path}: the '{METADATA_KEY}' metadata is not valid JSON ({exc})") from None
        return md if isinstance(md, dict) else None
    raise ModelError(f"{path.name}: unknown model format (expected .onnx or .tflite)")
