"""How the QAT fine-tuning recipe was chosen: validation split only, never the test split.

    python benchmarks/compress.py --keep runs/compress --rounds 1    # first: the runs whose students QAT starts from
    python benchmarks/experiments/qat_recipe_val.py runs/compress                # then: every recipe on every kept seed

For each kept run of pipelines/mobile_vision_compressed.yaml (``<dir>/seed<N>``) and each model QAT starts from
(``student``, ``student_pruned``), run the real ``qat`` stage with each candidate recipe (learning rate, epochs) and
read the fake-quantized model's validation accuracy and cross-entropy at the epoch the stage keeps. Validation
accuracy saturates near 100 % on this data, so the mean validation cross-entropy over seeds decides, per model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from edgekd.api import load_pipeline, load_run, run_stage

PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "mobile_vision_compressed.yaml"
CANDIDATES = [(5e-4, 4), (2e-4, 4), (1e-4, 4), (1e-4, 2), (5e-5, 2)]  # (lr, epochs); the first is the old default
MODELS = ("student", "student_pruned")


def one(run_dir: Path, seed: int, model: str, lr: float, epochs: int) -> tuple[float, float]:
    """Validation (accuracy, cross-entropy) of the fake-quantized model the qat stage keeps."""
    pipeline = load_pipeline(PIPELINE, [f"seed={seed}"])
    train = {"epochs": epochs, "batch_size": 64, "optimizer": "adamw", "lr": lr, "schedule": "cosine"}
    config = {"model": model, "output": "candidate", "temperature": 2.0, "alpha": 0.5, "train": train}
    with tempfile.TemporaryDirectory(prefix="edgekd-qat-recipe-") as tmp:
        (art,) = run_stage("qat", config, load_run(run_dir), tmp, pipeline)
    best = next(h for h in art.meta["history"] if h["epoch"] == art.meta["best_epoch"])
    return best["val_accuracy"], best["val_loss"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="the --keep directory of benchmarks/compress.py")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = ap.parse_args()
    print("| model | lr | epochs | val accuracy % (mean) | val cross-entropy (mean ± sd) | per seed |")
    print("|---|---:|---:|---:|---:|---|")
    best: dict[str, tuple[float, float, int]] = {}
    for model in args.models:
        for lr, epochs in CANDIDATES:
            res = [one(args.runs / f"seed{s}", s, model, lr, epochs) for s in args.seeds]
            acc = statistics.mean(a for a, _ in res)
            ce = [c for _, c in res]
            m = statistics.mean(ce)
            sd = statistics.stdev(ce) if len(ce) > 1 else 0.0
            per = ", ".join(f"{c:.4f}" for c in ce)
            print(f"| {model} | {lr:g} | {epochs} | {100 * acc:.2f} | {m:.4f} ± {sd:.4f} | {per} |", flush=True)
            if model not in best or m < best[model][0]:
                best[model] = (m, lr, epochs)
    for model, (m, lr, epochs) in best.items():
        print(f"chosen for {model}: lr {lr:g}, {epochs} epochs (mean validation cross-entropy {m:.4f})")


if __name__ == "__main__":
    main()
