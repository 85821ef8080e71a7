"""Foundation figures: pipeline wall time (cold and cached) and accuracy/size/latency targets over 3 seeds.

    python benchmarks/foundation.py                 # 3 seeds, ~15-20 min on 2 cores
    python benchmarks/foundation.py --seeds 0       # one seed (cold + cached timing only)

Each seed is a cold run of pipelines/mobile_vision.yaml in a fresh run directory (``--set seed=N``); seed 0 is then
re-run unchanged to time the cache. Every number printed comes from the run's report.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "mobile_vision.yaml"


def run(out: Path, seed: int) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "edgekd", "run", str(PIPELINE), "-o", str(out), "--set", f"seed={seed}"],
        check=True,
        env={**__import__("os").environ, "EDGEKD_QUIET": "1"},
    )
    return time.perf_counter() - t0


def rows_of(out: Path) -> dict[str, dict]:
    report = json.loads(next(out.glob("*_report/report.json")).read_text())
    return {r["name"]: r for r in report["variants"]}


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--keep", type=Path, help="keep run directories here instead of a temp dir")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="edgekd-bench-"))
    results = {}
    for seed in args.seeds:
        out = base / f"seed{seed}"
        cold = run(out, seed)
        results[seed] = {"cold_s": cold, "rows": rows_of(out)}
        print(f"seed {seed}: cold run {cold:.1f} s", flush=True)
    first = args.seeds[0]
    cached = run(base / f"seed{first}", first)
    print(f"seed {first}: cached re-run {cached:.1f} s\n")

    def col(name: str, key: str) -> list[float]:
        return [results[s]["rows"][name][key] for s in args.seeds if results[s]["rows"][name]["status"] == "ok"]

    acc = {n: [100 * v for v in col(n, "accuracy")] for n in results[first]["rows"]}
    print(f"{'variant':24} {'accuracy % (mean ± std)':>24} {'agreement %':>12} {'size KB':>9} {'latency ms':>11}")
    for name, row in results[first]["rows"].items():
        if row["status"] != "ok":
            print(f"{name:24} FAILED: {row.get('error')}")
            continue
        agree = mean_std([100 * v for v in col(name, "teacher_agreement")])
        lat = mean_std([d["mean"] for d in col(name, "latency_ms")])
        print(f"{name:24} {mean_std(acc[name]):>24} {agree:>12} {row['size_bytes'] / 1024:9.1f} {lat:>11}")

    r = results[first]["rows"]
    t, s, q, f32 = r["teacher/pytorch"], r["student/pytorch"], r["student/tflite-int8"], r["student/tflite-fp32"]
    checks = [
        ("cold pipeline time (s), seed 0", f"{results[first]['cold_s']:.0f}", "≤ 600", results[first]["cold_s"] <= 600),
        ("cached re-run time (s)", f"{cached:.1f}", "≤ 20", cached <= 20),
        (
            "int8 TFLite acc − teacher acc (points, mean)",
            f"{statistics.mean(acc['student/tflite-int8']) - statistics.mean(acc['teacher/pytorch']):+.2f}",
            "≥ −1.5",
            statistics.mean(acc["student/tflite-int8"]) >= statistics.mean(acc["teacher/pytorch"]) - 1.5,
        ),
        ("teacher params / student params", f"{t['params'] / s['params']:.1f}", "≥ 8", t["params"] >= 8 * s["params"]),
        (
            "teacher PyTorch latency / int8 TFLite latency",
            f"{t['latency_ms']['mean'] / q['latency_ms']['mean']:.1f}",
            "≥ 5",
            t["latency_ms"]["mean"] >= 5 * q["latency_ms"]["mean"],
        ),
        (
            "distilled acc − scratch acc (points, mean)",
            f"{statistics.mean(acc['student/pytorch']) - statistics.mean(acc['baseline/pytorch']):+.2f}",
            "≥ 0",
            statistics.mean(acc["student/pytorch"]) >= statistics.mean(acc["baseline/pytorch"]),
        ),
        (
            "ONNX fp32 max |Δlogit| vs PyTorch",
            f"{r['student/onnx-fp32']['max_abs_diff_vs_torch']:.1e}",
            "≤ 1e-4",
            r["student/onnx-fp32"]["max_abs_diff_vs_torch"] <= 1e-4,
        ),
        (
            "TFLite fp32 max |Δlogit| vs PyTorch",
            f"{f32['max_abs_diff_vs_torch']:.1e}",
            "≤ 1e-4",
            f32["max_abs_diff_vs_torch"] <= 1e-4,
        ),
        (
            "TFLite int8 top-1 agreement with fp32 (%)",
            f"{100 * q['agreement_vs_fp32']:.2f}",
            "≥ 98",
            q["agreement_vs_fp32"] >= 0.98,
        ),
        (
            "ONNX int8 top-1 agreement with fp32 (%)",
            f"{100 * r['student/onnx-int8']['agreement_vs_fp32']:.2f}",
            "≥ 98",
            r["student/onnx-int8"]["agreement_vs_fp32"] >= 0.98,
        ),
        (
            "int8 TFLite size / fp32 TFLite size",
            f"{q['size_bytes'] / f32['size_bytes']:.3f}",
            "≤ 0.35",
            q["size_bytes"] <= 0.35 * f32["size_bytes"],
        ),
    ]
    print()
    for name, value, target, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value} (target {target})")
    print(f"\nrun directories: {base}")
    return 0 if all(c[3] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
