"""MediaPipe's ImageClassifier vs ``edgekd predict``: top-1 agreement on a run's whole test split, per TFLite file.

    edgekd run pipelines/mobile_vision.yaml -o runs/mv
    python benchmarks/mediapipe_agreement.py runs/mv [--mediapipe-python .venv-mediapipe/bin/python]

The test images (the split edgekd made: scikit-learn digits resized to the model's size) are written as 8-bit PNG
files; MediaPipe reads each TFLite file's standard metadata (ImageProperties, NormalizationOptions, labels) through
examples/mediapipe/classify.py in its own virtual environment (``make mediapipe``), and ``edgekd predict`` reads the
``edgekd`` metadata. Prints one row per file: agreement and the largest difference of the top-1 probability.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    from _mediapipe import ENV_VAR, agreement, mediapipe_python, write_pngs

    from edgekd.data import SplitData

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--mediapipe-python", help=f"a Python with mediapipe (default: ${ENV_VAR}, .venv-mediapipe)")
    args = ap.parse_args(argv)
    if args.mediapipe_python:
        os.environ[ENV_VAR] = args.mediapipe_python
    python, version = mediapipe_python()
    if python is None:
        print(f"error: {version}", file=sys.stderr)
        return 1
    data = sorted(args.run_dir.glob("*_data/dataset.npz"))
    models = sorted(args.run_dir.glob("*_convert_tflite/*.tflite"))
    if not data or not models:
        why = f"{args.run_dir} holds no dataset.npz or no convert_tflite files: run a pipeline first"
        print(f"error: {why}", file=sys.stderr)
        return 1
    x = SplitData.load(data[0]).arrays["test"][0]
    print(f"mediapipe {version}; {len(x)} test images {tuple(x.shape[1:])} from {data[0]}")
    print(f"{'file':<28} {'agree':>10} {'agreement':>10} {'max |Δp top-1|':>15} {'seconds':>8}")
    with tempfile.TemporaryDirectory(prefix="edgekd-mediapipe-") as tmp:
        pngs = write_pngs(x, Path(tmp))
        for model in models:
            t0 = time.perf_counter()
            try:
                got = agreement(python, model, pngs)
            except RuntimeError as exc:  # a file MediaPipe refuses (an NCHW or int8-input export): its reason
                print(f"{model.name:<28} refused: {str(exc).splitlines()[-1][:200]}")
                continue
            print(
                f"{model.name:<28} {got['agree']:>4}/{got['images']:<5} {got['agreement']:>10.2%} "
                f"{got['max_prob_diff']:>15.2e} {time.perf_counter() - t0:>8.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
