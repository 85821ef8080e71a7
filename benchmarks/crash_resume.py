"""Kill ``edgekd run`` with SIGKILL at random moments, re-run, and check nothing half-written is ever trusted.

    python benchmarks/crash_resume.py                 # 20 kills on a small pipeline through every stage (~10 min)
    python benchmarks/crash_resume.py --kills 5

Procedure: one clean run gives the reference report and its duration T. Then, in a fresh run directory, ``edgekd run``
is started and killed after a random delay in (0, T) — again and again, each attempt resuming from what the previous
ones finished — ``--kills`` times; a final run completes. After every kill, every stage folder that has a manifest is
checked: each output must still have its recorded hash (a stage without manifest is never reused). The final report
must equal the clean one in every field that does not measure time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMING_KEYS = {"latency_ms", "latencies_ms", "throughput_ips", "peak_rss_mb", "load_time_ms", "path", "runtime_version"}


def small_pipeline() -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from _shared import tiny_pipeline_doc

    doc = tiny_pipeline_doc()
    doc["stages"][0]["train"]["epochs"] = 4  # long enough for kills to land inside training epochs
    doc["stages"][1]["train"]["epochs"] = 4
    return doc


def edgekd_cmd(pipe: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "edgekd", "run", str(pipe), "-o", str(out)]


def stable_report(out: Path) -> list[dict]:
    report = json.loads(next(out.glob("*_report/report.json")).read_text())
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in report["variants"]]


def trusted_outputs_intact(out: Path) -> bool:
    """Every stage that has a manifest must have every output with its recorded hash."""
    sys.path.insert(0, str(ROOT))
    from edgekd.core.fsutil import file_sha256

    for manifest in out.glob("[0-9][0-9]_*/manifest.json"):
        for entry in json.loads(manifest.read_text())["outputs"]:
            path = manifest.parent / entry["path"]
            if not path.is_file() or file_sha256(path) != entry["sha256"]:
                return False
    return True


def kill_and_resume(pipe: Path, out: Path, kills: int, window: float, seed: int = 0) -> dict:
    rng = random.Random(seed)
    env = {**os.environ, "EDGEKD_QUIET": "1"}
    killed, intact, completed, delays = 0, 0, 0, []
    while killed < kills:
        delay = rng.uniform(0.5, window)
        proc = subprocess.Popen(edgekd_cmd(pipe, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
            delays.append(round(delay, 1))
            intact += trusted_outputs_intact(out)
            continue
        # the run finished before the kill (resumed runs are short): start again from nothing to keep killing
        completed += 1
        shutil.rmtree(out)
    final = subprocess.run(edgekd_cmd(pipe, out), env=env, capture_output=True, text=True, timeout=1800)
    return {
        "kills": killed,
        "intact_after_kill": intact,
        "completed_between_kills": completed,
        "final_exit": final.returncode,
        "delays_s": delays,
        "final_stderr": final.stderr[-500:],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="edgekd-crash-"))
    pipe = base / "pipe.json.yaml"
    pipe.write_text(json.dumps(small_pipeline()))  # JSON is YAML
    t0 = time.perf_counter()
    subprocess.run(
        edgekd_cmd(pipe, base / "clean"), check=True, capture_output=True, env={**os.environ, "EDGEKD_QUIET": "1"}
    )
    clean_s = time.perf_counter() - t0
    res = kill_and_resume(pipe, base / "killed", args.kills, clean_s, args.seed)
    same = res["final_exit"] == 0 and stable_report(base / "killed") == stable_report(base / "clean")
    print(f"clean run: {clean_s:.1f} s")
    print(f"kills: {res['kills']} at {res['delays_s']} s")
    print(f"trusted outputs intact after each kill: {res['intact_after_kill']}/{res['kills']}")
    print(f"final run exit {res['final_exit']}; report equal to the clean run's (timings aside): {same}")
    return 0 if same and res["intact_after_kill"] == res["kills"] else 1


if __name__ == "__main__":
    sys.exit(main())
