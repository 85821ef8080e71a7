#!/usr/bin/env python3
"""Classify image files with MediaPipe's ImageClassifier and a .tflite model exported by edgekd.

Needs only mediapipe (it brings numpy and Pillow) -- no edgekd, no torch, no TensorFlow:

    python3 -m venv ~/mp && ~/mp/bin/pip install mediapipe
    ~/mp/bin/python classify.py student-int8.tflite cat.jpg dog.png --top 3 [--json]

Nothing about the model is written here: MediaPipe reads the input size, the normalisation and the labels from the
standard TFLite metadata edgekd stores in the file (ImageProperties, NormalizationOptions, labels.txt). The model
takes RGB (a grey model converts to grey inside the file), so every image is handed over as RGB.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
from PIL import Image


def classify(model_path: str, images: list[str], top: int = 5) -> list[dict]:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model_path), max_results=-1)
    results = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for path in images:
            with Image.open(path) as im:  # MediaPipe's classifier takes 3-channel images: grey files become RGB
                rgb = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
            found = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            cats = found.classifications[0].categories  # edgekd models output logits: softmax gives probabilities
            peak = max(c.score for c in cats)
            total = sum(math.exp(c.score - peak) for c in cats)
            ranked = sorted(cats, key=lambda c: -c.score)[:top]
            results.append({"image": path, "top": [
                {"label": c.category_name, "index": c.index, "score": c.score,
                 "probability": math.exp(c.score - peak) / total} for c in ranked]})  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Classify images with MediaPipe and an edgekd .tflite model.")
    ap.add_argument("model")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object per image")
    args = ap.parse_args(argv)
    try:
        results = classify(args.model, args.images, args.top)
    except (OSError, ValueError, RuntimeError) as exc:  # unreadable image, or a model MediaPipe refuses: one line
        print(f"error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}", file=sys.stderr)
        return 1
    for r in results:
        print(json.dumps(r) if args.json else f"{r['image']}: " + ", ".join(
            f"{t['label']} {100 * t['probability']:.1f}%" for t in r["top"]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
