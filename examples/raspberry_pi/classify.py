#!/usr/bin/env python3
"""Classify image files on a Raspberry Pi (or any Linux board) with a .tflite model exported by edgekd.

Needs only ai-edge-litert, numpy and Pillow -- no edgekd, no torch, no TensorFlow:

    python3 -m venv ~/kd && ~/kd/bin/pip install ai-edge-litert numpy pillow
    ~/kd/bin/python classify.py student-int8.tflite cat.jpg dog.png --top 3 [--json] [--threads 4]

Everything needed to feed the model and read its output -- input size, grey or RGB, layout (NCHW/NHWC), the
training normalisation, int8 input/output scales, the labels -- is read from the metadata edgekd stored inside the
file (a flatbuffer metadata entry named "edgekd" holding JSON).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from PIL import Image


def read_metadata(model_path: str) -> dict:
    """The JSON edgekd stored in the model's flatbuffer metadata."""
    with open(model_path, "rb") as fh:
        data = fh.read()
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == b"edgekd":
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    raise SystemExit(f"{model_path} has no edgekd metadata; export it with edgekd")


def preprocess(image_path: str, md: dict) -> np.ndarray:
    """Image file -> float32 input tensor (1, C, H, W) or (1, H, W, C), normalised: the training preprocessing."""
    _, c, h, w = md["input_shape"]
    with Image.open(image_path) as im:
        x = np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.float32) / 255.0
    x = x.reshape(x.shape[0], x.shape[1], c)
    # Resize each channel as a float image: PIL's BILINEAR on mode "F" is the antialiased bilinear used in training.
    x = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(x[:, :, k])).resize((w, h), Image.BILINEAR))
                  for k in range(c)], axis=-1)  # fmt: skip
    x = (np.clip(x, 0.0, 1.0) - np.float32(md["mean"])) / np.float32(md["std"])
    x = x if md["input_layout"] == "NHWC" else x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None], dtype=np.float32)


def classify(model_path: str, images: list[str], top: int = 5, threads: int = 1) -> list[dict]:
    md = read_metadata(model_path)
    it = Interpreter(model_path=model_path, num_threads=threads)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    results = []
    for path in images:
        x = preprocess(path, md)
        if inp["dtype"] in (np.int8, np.uint8):  # int8 input: quantize with the file's own scale and zero point
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            q = np.sign(x / scale) * np.floor(np.abs(x / scale) + 0.5) + zero  # TFLite rounds half away from zero
            x = np.clip(q, info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], x)
        it.invoke()
        y = it.get_tensor(out["index"])[0]
        if out["dtype"] in (np.int8, np.uint8):
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        p = np.exp(y - y.max())
        p /= p.sum()
        best = np.argsort(-p, kind="stable")[:top]
        results.append({"image": path, "top": [{"label": md["labels"][i], "probability": float(p[i])} for i in best]})
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Classify images with an edgekd .tflite model.")
    ap.add_argument("model")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    try:
        results = classify(args.model, args.images, args.top, args.threads)
    except (OSError, ValueError) as exc:  # unreadable image or model: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for r in results:
        print(json.dumps(r) if args.json else f"{r['image']}: " + ", ".join(
            f"{t['label']} {100 * t['probability']:.1f}%" for t in r["top"]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
