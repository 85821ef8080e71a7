"""Text-embedding figures: MiniLM teacher vs distilled students, on held-out stdlib docstring sentences.

    OMP_NUM_THREADS=1 python benchmarks/text_embedding.py --keep runs/text_embedding   # ~1.8 CPU-hours, 1 seed
    python benchmarks/text_embedding.py --seeds 0 1 2 --keep runs/text_embedding                      # 3 seeds

Per seed: one run of pipelines/text_embedding.yaml (``--set seed=N``; a kept run directory reuses its cached stages,
the corpus and the teacher's embeddings are seed-independent). Every number printed comes from that run's
benchmark stage (text form): the device agent (devices/agent.py, on this machine) tokenises the test sentences with
devices/wordpiece.py, times batch-1 calls at the fixed sequence length (1 thread) and returns embeddings, which are
compared with the teacher's PyTorch embeddings (mean cosine, Spearman of the pairwise cosine similarities, top-10
neighbour overlap, 5-fold linear-probe accuracy on module categories). Speed-ups are against the teacher's ONNX fp32
file in onnxruntime on the same machine, same thread count and sequence length. Precision is what the file holds.

Targets (issue 9): the int8 TFLite student with <= 1/6 of the teacher's parameters reaches Spearman >= 0.90, top-10
overlap >= 70 % and >= 5x lower latency than the teacher in onnxruntime fp32. The verdict names the precision the
file holds: "mixed" when convert_tflite kept outlier layers float (float_outlier_ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "text_embedding.yaml"
SHOW = [
    "teacher/onnx-fp32",
    "student/pytorch",
    "student/onnx-fp32",
    "student/onnx-int8",
    "student/tflite-fp32",
    "student/tflite-int8",
    "cnn_student/pytorch",
    "cnn_student/onnx-int8",
    "cnn_student/tflite-fp32",
    "cnn_student/tflite-int8",
    "student_untrained/pytorch",
    "student_untrained/tflite-int8",
]
TARGETS = ["student/tflite-int8", "cnn_student/tflite-int8", "student_untrained/tflite-int8"]
FIGS = ["spearman", "top10_overlap", "mean_cosine", "probe_accuracy", "speedup_vs_teacher_onnx"]


def run_pipeline(out: Path, seed: int) -> dict:
    cmd = [sys.executable, "-m", "edgekd", "run", str(PIPELINE), "-o", str(out), "--set", f"seed={seed}"]
    subprocess.run(cmd, check=True, env={**os.environ, "EDGEKD_QUIET": "1"})
    return json.loads(next(out.glob("*_benchmark/benchmark.json")).read_text())


def fmt(values: list[float], spec: str = "{:.3f}") -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return spec.format(vals[0])
    return f"{spec.format(statistics.mean(vals))} ± {spec.format(statistics.stdev(vals))}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--keep", type=Path, default=ROOT / "runs" / "text_embedding", help="run directories (cached)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    runs = {s: run_pipeline(args.keep if len(args.seeds) == 1 else args.keep / f"seed{s}", s) for s in args.seeds}
    rows = {s: {r["name"]: r for r in b["rows"] if r.get("status") == "ok"} for s, b in runs.items()}
    b0 = next(iter(runs.values()))
    print(
        f"\n{b0['n_eval']} held-out sentences, max length {b0['max_length']}, {b0['threads']} thread, "
        f"teacher {b0['teacher_params']:,} parameters, seeds {args.seeds}; teacher probe accuracy "
        f"{b0['teacher_probe_accuracy']}\n"
    )
    print(
        "| variant | params (× teacher) | size MB | precision in file | p50 ms | speed-up | peak RSS MB | "
        "cosine | Spearman | top-10 | probe |\n|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for name in SHOW:
        got = [rows[s][name] for s in args.seeds if name in rows[s]]
        if not got:
            continue
        r = got[0]
        ratio = f"{r['params']:,} ({r['params'] / b0['teacher_params']:.3f})" if r.get("params") else "-"
        print(
            f"| {name} | {ratio} | {r['size_bytes'] / 1e6:.2f} | {r.get('precision')} | "
            f"{fmt([g['latency_ms']['p50'] for g in got], '{:.2f}')} | "
            f"{fmt([g.get('speedup_vs_teacher_onnx') for g in got], '{:.1f}')} | "
            f"{fmt([g.get('peak_rss_mb') for g in got], '{:.0f}')} | {fmt([g.get('mean_cosine') for g in got])} | "
            f"{fmt([g.get('spearman') for g in got])} | {fmt([g.get('top10_overlap') for g in got])} | "
            f"{fmt([g.get('probe_accuracy') for g in got])} |"
        )
    print(
        "\nTargets (int8 TFLite, <= 1/6 of the teacher's parameters): Spearman >= 0.90, top-10 >= 0.70, speed-up >= 5"
    )
    summary = {}
    for name in TARGETS:
        got = [rows[s][name] for s in args.seeds if name in rows[s]]
        if not got:
            print(f"  {name}: not measured")
            continue
        mean = {k: statistics.mean(g.get(k) or 0.0 for g in got) for k in FIGS}
        ok = (
            mean["spearman"] >= 0.90,
            mean["top10_overlap"] >= 0.70,
            mean["speedup_vs_teacher_onnx"] >= 5,
            got[0]["params"] <= b0["teacher_params"] / 6,
        )
        verdict = (
            "meets all"
            if all(ok)
            else "misses: "
            + ", ".join(n for n, o in zip(("Spearman", "top-10", "speed-up", "params"), ok, strict=True) if not o)
        )
        print(
            f"  {name} ({got[0].get('precision')} in file): Spearman {mean['spearman']:.3f}, "
            f"top-10 {mean['top10_overlap']:.3f}, "
            f"speed-up {mean['speedup_vs_teacher_onnx']:.1f}x -> {verdict}"
        )
        summary[name] = {**mean, "precision": got[0].get("precision"), "verdict": verdict, "seeds": args.seeds}
    if args.json:
        args.json.write_text(json.dumps({"targets": summary, "runs": {str(s): b for s, b in runs.items()}}, indent=1))


if __name__ == "__main__":
    main()
