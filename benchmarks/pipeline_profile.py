"""Where a pipeline's time and memory go: cold and cached wall time, seconds per stage, per converter, peak memory.

    python benchmarks/pipeline_profile.py                       # pipelines/mobile_vision.yaml (~10 min on 2 cores)
    python benchmarks/pipeline_profile.py --fast                # + a cold run with the fast distill settings
    python benchmarks/pipeline_profile.py --pipeline P.yaml     # another pipeline

Each run is ``edgekd run`` in a fresh process and a fresh run directory (cold), then again unchanged (cached). The
conversion time per converter comes from re-running the same directory with the other TFLite converter (only the
conversion and the stages after it re-run). Peak memory: the largest resident set of the process tree, sampled every
0.1 s (the runner plus the benchmark agents it starts), and the largest single process's peak (ru_maxrss).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
FAST = ["distill.teacher_cache.enabled=true", "distill.train.channels_last=true"]


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run(pipeline: Path, out: Path, sets: list[str], threads: int) -> dict:
    """One ``edgekd run``: wall seconds, peak tree RSS (sampled), the run's per-stage seconds and statuses."""
    cmd = [sys.executable, "-m", "edgekd", "run", str(pipeline), "-o", str(out)]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "EDGEKD_QUIET": "1", "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, tree_rss(ps))
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"edgekd run failed ({proc.returncode}): {err.strip()[-500:]}")
    stages = json.loads((out / "run.json").read_text())["stages"]
    return {"wall_s": wall, "peak_tree_rss_mb": peak / 2**20, "stages": stages}


def stage_seconds(res: dict, stage: str) -> float | None:
    return next((s["seconds"] for s in res["stages"] if s["stage"] == stage and s["status"] == "ran"), None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", type=Path, default=ROOT / "pipelines" / "mobile_vision.yaml")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the runs")
    ap.add_argument("--fast", action="store_true", help="also a cold run with " + " ".join(FAST))
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra overrides for every run")
    ap.add_argument("--keep", type=Path, help="keep run directories here")
    ap.add_argument("--quick", action="store_true", help="the tests' tiny pipeline instead (checks the script)")
    a = ap.parse_args()
    base = a.keep or Path(tempfile.mkdtemp(prefix="edgekd-profile-"))
    if a.quick:
        sys.path.insert(0, str(ROOT / "tests"))
        from _shared import tiny_pipeline_doc

        a.pipeline = base / "tiny.json"  # JSON is YAML
        a.pipeline.write_text(json.dumps(tiny_pipeline_doc()))
    cold = run(a.pipeline, base / "default", a.sets, a.threads)
    cached = run(a.pipeline, base / "default", a.sets, a.threads)
    print(
        f"{a.pipeline.name}: cold {cold['wall_s']:.1f} s, cached re-run {cached['wall_s']:.1f} s "
        f"({sum(s['status'] == 'cached' for s in cached['stages'])}/{len(cached['stages'])} stages cached)"
    )
    print(
        f"peak memory of the whole cold run: {cold['peak_tree_rss_mb']:.0f} MB resident (process tree, sampled); "
        f"largest single process {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB"
    )
    print("\nper stage (cold run; wall time minus stage time = process start, imports, cache checks):")
    for s in cold["stages"]:
        print(f"  {s['id']:18} {s['seconds']:8.1f} s  {s['status']}")
    print(f"  {'(outside stages)':18} {cold['wall_s'] - sum(s['seconds'] for s in cold['stages']):8.1f} s")

    # the other TFLite converter, same directory: only conversion and what follows re-run
    conv = {}
    doc_converter = "litert-torch"
    for s in a.sets:
        if s.startswith("convert_tflite.converter="):
            doc_converter = s.split("=", 1)[1]
    conv[doc_converter] = stage_seconds(cold, "convert_tflite")
    other = "onnx2tf" if doc_converter != "onnx2tf" else "litert-torch"
    again = run(a.pipeline, base / "default", [*a.sets, f"convert_tflite.converter={other}"], a.threads)
    conv[other] = stage_seconds(again, "convert_tflite")
    print("\nconversion time per converter (the convert_tflite stage: fp32, fp16, int8 files, each verified):")
    print(f"  ONNX export (export_onnx stage, fp32 + int8): {stage_seconds(cold, 'export_onnx') or 0:.1f} s")
    for name, sec in conv.items():
        print(f"  TFLite via {name:13} {sec or 0:8.1f} s")
    if a.fast:
        fast = run(a.pipeline, base / "fast", [*a.sets, *FAST], a.threads)
        print(
            f"\ncold run with {' '.join(FAST)}: {fast['wall_s']:.1f} s (default {cold['wall_s']:.1f} s); "
            f"distill stage {stage_seconds(fast, 'distill'):.1f} s (default {stage_seconds(cold, 'distill'):.1f} s); "
            f"peak {fast['peak_tree_rss_mb']:.0f} MB"
        )
    print(f"\nrun folders in {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
