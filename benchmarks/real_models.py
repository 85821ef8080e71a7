"""Real architectures on RGB photos: a timm ResNet-18 teacher distilled into a timm MobileNetV3-Small, at 96x96 and
224x224, over several seeds.

    python benchmarks/real_models.py --sizes 96                             # the README's 96x96 table (38 min)
    python benchmarks/real_models.py --sizes 224 --per-class 100 --teacher-epochs 5 --epochs 10 --qat-epochs 2 \
        --teacher-init runs/real_models/runs-96/seed0/01_teacher/teacher.pt   # 224x224, the teacher from the 96 run

(prefix EDGEKD_TORCHVISION_WITHOUT_OPS=1 where torchvision does not match torch; the script sets it otherwise.)

The data is the shipped synthetic photo set (``edgekd synth-photos``: 10 shape classes in random colour, scale,
rotation and clutter; procedural, not real photographs), rendered at each size. For each size the teacher is trained
once (seed 0, its own pipeline run) and every seed then loads that teacher file (``checkpoint:``). Each seed is one
``edgekd run`` of teacher -> distill (the student, and the same student from scratch: ``baseline``) ->
convert_tflite (litert-torch, fp32 and full-integer int8 by post-training quantization) -> qat (a quantization-aware
fine-tune of the distilled student, the teacher still in the loss) -> convert_tflite (int8 from the ranges QAT learned)
-> benchmark (the agent on this host, 1 thread, accuracy on the test split).

Prints a markdown table (mean ± std over the seeds; the teacher is one model) and writes it with every figure to
``--out``/real_models-<size>.{md,json}. Peak RSS: the largest single process of the runs (ru_maxrss of the children).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

TEACHER = {"timm": "resnet18"}
STUDENT = {"timm": "mobilenetv3_small_100"}


def _doc(size: int, photos: Path, seed: int, args, teacher_file: Path | None) -> dict:
    teacher: dict = {"stage": "teacher", "model": TEACHER}
    if teacher_file is None:
        if args.teacher_init:  # start from a teacher trained at another size (weights on disk)
            teacher["model"] = {**TEACHER, "pretrained": str(Path(args.teacher_init).resolve())}
        teacher["train"] = {"epochs": args.teacher_epochs, "batch_size": args.batch, "lr": 2e-3, "channels_last": True}
    else:
        teacher["checkpoint"] = str(teacher_file)
    stages = [
        teacher,
        {"stage": "distill", "student": STUDENT, "baseline": True, "temperature": 4.0, "alpha": 0.7,
         "train": {"epochs": args.epochs, "batch_size": args.batch, "lr": 2e-3, "channels_last": True}},
        {"stage": "convert_tflite", "converter": "litert-torch", "precisions": ["fp32", "int8"],
         "min_int8_agreement": 0.0, "tolerance": 1e-3},
        {"stage": "qat", "model": "student", "temperature": 4.0, "alpha": 0.7,
         "train": {"epochs": args.qat_epochs, "batch_size": args.batch, "lr": 5e-4, "channels_last": True}},
        {"stage": "convert_tflite", "name": "tflite_qat", "model": "student_qat", "precisions": ["int8"],
         "min_int8_agreement": 0.0},
        {"stage": "benchmark", "threads": 1, "warmup": 10, "runs": args.runs},
    ]  # fmt: skip
    return {
        "name": f"real-{size}",
        "seed": seed,
        "data": {
            "source": "folder",
            "path": str(photos),
            "image_size": size,
            # the training split's mean/std in every seed: `auto` would take ImageNet's for a teacher given
            # `pretrained:` (--teacher-init), which is this script's own teacher, not ImageNet weights
            "normalization": "train_split",
            "augment": {"enabled": True, "max_shift": 0, "max_rotate_deg": 10, "crop_scale": [0.6, 1.0], "hflip": True},
        },
        "stages": stages,
    }


def _run(doc: dict, run: Path) -> float:
    run.parent.mkdir(parents=True, exist_ok=True)
    yml = run.parent / f"{run.name}.yaml"
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgekd", "run", str(yml), "-o", str(run)], capture_output=True,
                          text=True, env={**os.environ, "EDGEKD_QUIET": "1"})  # fmt: skip
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"{yml}: edgekd run failed: {' | '.join(tail)}")
    return time.perf_counter() - t0


def _stage_dir(run: Path, stage: str) -> Path:
    return sorted(run.glob(f"*_{stage}"))[0]


def _figures(run: Path, epochs: int) -> dict:
    """Accuracy and p50 latency of every variant, from the benchmark's rows; distill seconds per epoch."""
    rows = json.loads((_stage_dir(run, "benchmark") / "benchmark.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    out: dict = {}
    for r in rows:
        out[r["name"]] = {"accuracy": r.get("accuracy"), "p50_ms": (r.get("latency_ms") or {}).get("p50"),
                          "size_bytes": r.get("size_bytes"), "format": r.get("format")}  # fmt: skip
    manifest = json.loads((_stage_dir(run, "distill") / "manifest.json").read_text())
    # the distill stage trains the student and the baseline for `epochs` each
    out["_distill_s_per_epoch"] = manifest["seconds"] / (2 * epochs)
    return out


def _ms(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 224])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--per-class", type=int, default=300, help="synthetic images per class (70/15/15 split)")
    ap.add_argument("--teacher-epochs", type=int, default=15)
    ap.add_argument(
        "--teacher-init",
        type=Path,
        help="a teacher.pt to start the teacher from (e.g. the one trained "
        "at 96: runs/real_models/runs-96/seed0/01_teacher/teacher.pt), fine-tuned --teacher-epochs here",
    )
    ap.add_argument("--epochs", type=int, default=15, help="student epochs (distilled and scratch)")
    ap.add_argument("--qat-epochs", type=int, default=3, help="quantization-aware fine-tune of the distilled student")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--runs", type=int, default=100, help="timed runs per model in the benchmark")
    ap.add_argument("--out", type=Path, default=Path("runs/real_models"))
    args = ap.parse_args()
    os.environ.setdefault("EDGEKD_TORCHVISION_WITHOUT_OPS", "1")  # the documented workaround, where builds mismatch
    from edgekd.data.synthetic import make_photos

    for size in args.sizes:
        photos = args.out / f"photos-{size}-{args.per_class}"
        if not photos.exists():
            make_photos(photos, per_class=args.per_class, size=size, seed=0)
        runs: dict[int, dict] = {}
        wall: dict[int, float] = {}
        teacher_file = None
        for seed in args.seeds:
            run = args.out / f"runs-{size}" / f"seed{seed}"
            wall[seed] = _run(_doc(size, photos, seed, args, teacher_file), run)
            if teacher_file is None:
                teacher_file = next(_stage_dir(run, "teacher").glob("teacher.pt")).resolve()
            runs[seed] = _figures(run, args.epochs)
            print(f"{size}px seed {seed}: {wall[seed]:.0f} s  " + json.dumps(
                {k: v for k, v in runs[seed].items() if not k.startswith("_")}), flush=True)  # fmt: skip
        names = [n for n in runs[args.seeds[0]] if not n.startswith("_")]
        per = {n: [runs[s][n] for s in args.seeds if n in runs[s]] for n in names}
        lines = [
            f"| model ({size}×{size}, {len(args.seeds)} seeds) | test accuracy % | p50 ms (1 thread) | size KB |",
            "|---|---|---|---|",
        ]
        for n in names:
            acc = [100 * r["accuracy"] for r in per[n] if r["accuracy"] is not None]
            p50 = [r["p50_ms"] for r in per[n] if r["p50_ms"] is not None]
            kb = per[n][0]["size_bytes"] / 1024 if per[n][0]["size_bytes"] else None
            shown = acc[:1] if n.startswith("teacher") else acc  # one teacher, loaded by every seed
            lines.append(
                f"| {n} | {_ms(shown)} | {_ms(p50)} | {kb:,.0f} |" if kb else f"| {n} | {_ms(shown)} | {_ms(p50)} | — |"
            )
        fp32 = [n for n in names if n.endswith("fp32") and "tflite" in n]
        diff = {  # each int8 TFLite file (post-training, and from QAT) against the distilled student's fp32 file
            n: [100 * (runs[s][n]["accuracy"] - runs[s][fp32[0]]["accuracy"]) for s in args.seeds]
            for n in names if "int8" in n and "tflite" in n and fp32
        }  # fmt: skip
        spe = [runs[s]["_distill_s_per_epoch"] for s in args.seeds]
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        diffs = "; ".join(f"{n} − {fp32[0]}: {_ms(d)} points" for n, d in diff.items())
        summary = (
            f"{diffs}; distill {_ms(spe)} s per epoch "
            f"({args.per_class * 10 * 7 // 10} training images, batch {args.batch}); peak RSS {peak:,.0f} MB; "
            f"settings: --per-class {args.per_class} --teacher-epochs {args.teacher_epochs} --epochs {args.epochs} "
            f"--qat-epochs {args.qat_epochs}" + (f" --teacher-init {args.teacher_init}" if args.teacher_init else "")
        )
        table = "\n".join(lines) + "\n\n" + summary
        print("\n" + table + "\n", flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"real_models-{size}.md").write_text(table + "\n")
        (args.out / f"real_models-{size}.json").write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs, "wall_s": wall,
             "int8_minus_fp32": diff, "peak_rss_mb": peak}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
