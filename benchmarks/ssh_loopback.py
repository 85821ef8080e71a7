"""The SSH path end to end on loopback: benchmark a run's variants through a real sshd on 127.0.0.1, vs locally.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/ssh_loopback.py runs/x --runs 200 --warmup 20

Starts its own OpenSSH server (edgekd/edge/transports/loopback_sshd.py, the one the tests use), then measures every
variant the run's benchmark stage measured, once through the SSH transport (push agent, data and each model over ssh,
run, fetch the JSON, clean up) and once with the local runner, one after the other. Prints the wall time of each
path, and checks that accuracy and teacher agreement are identical: same bytes in, same runtime, same answer.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgekd.edge.bench_inputs import find_dataset, run_dir_variants, write_eval_npz
from edgekd.edge.profiles import load_profile
from edgekd.edge.transports.loopback_sshd import LoopbackSshd, SshdUnavailable
from edgekd.edge.transports.measure import Settings, measure_device


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="an edgekd run directory (after its benchmark stage)")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    variants, teacher_pred = run_dir_variants(args.run_dir)
    tmp = Path(tempfile.mkdtemp(prefix="edgekd-ssh-loopback-"))
    preds = np.load(teacher_pred) if teacher_pred else None
    data = write_eval_npz(find_dataset(variants[0].model), tmp / "eval.npz", preds)
    try:
        server = LoopbackSshd.start(tmp / "sshd")
    except SshdUnavailable as exc:
        sys.exit(f"cannot start sshd here: {exc}")
    settings = Settings(args.threads, args.warmup, args.runs)
    try:
        ssh = server.profile("loopback-ssh", python=sys.executable, runtimes=["torch", "onnxruntime", "litert"])
        t0 = time.perf_counter()
        remote = measure_device(ssh, variants, data, settings)
        ssh_s = time.perf_counter() - t0
    finally:
        server.stop()
    t0 = time.perf_counter()
    local = measure_device(load_profile("local"), variants, data, settings)
    local_s = time.perf_counter() - t0
    same = True
    cols = ("acc ssh", "acc local", "agree ssh", "agree local", "ms ssh", "ms local")
    print(f"{'variant':22}" + "".join(f"{c:>12}" for c in cols))
    for r, lo in zip(remote.rows, local.rows, strict=True):
        if r["status"] != "ok" or lo["status"] != "ok":
            print(f"{r['name']:22} FAILED: {r['error'] or lo['error']}")
            same = False
            continue
        same &= (r["accuracy"], r["teacher_agreement"]) == (lo["accuracy"], lo["teacher_agreement"])
        pct = [100 * v for v in (r["accuracy"], lo["accuracy"], r["teacher_agreement"], lo["teacher_agreement"])]
        ms = [r["latency_ms"]["mean"], lo["latency_ms"]["mean"]]
        print(f"{r['name']:22}" + "".join(f"{v:12.2f}" for v in pct) + "".join(f"{v:12.4f}" for v in ms))
    print(
        f"\n{len(variants)} variants, {args.runs} runs + {args.warmup} warm-up each: SSH path {ssh_s:.1f} s, "
        f"local runner {local_s:.1f} s (SSH adds {ssh_s - local_s:+.1f} s); "
        f"accuracy and teacher agreement identical: {'yes' if same else 'NO'}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
