"""arm64 check: the agent and a run's int8 / fp32 TFLite files on an emulated arm64 Debian userland (as root).

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/arm64_check.py --rootfs /work/arm64-rootfs --run-dir runs/x

Shows that devices/agent.py and the exported models run on a Raspberry Pi's CPU architecture (aarch64, Debian
bookworm = Raspberry Pi OS's base) with the aarch64 wheels of numpy and ai-edge-litert, and give the same top-1
predictions as on this host. qemu-user runs the arm64 userland on an x86 kernel: the first run builds the root file
system with debootstrap (~5-10 min, cached in --rootfs), later runs take about a minute. Timings under emulation are
NOT representative of a Pi and are printed only to show that the timed loop ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekd.edge.bench_inputs import find_dataset, find_meta, write_eval_npz, write_meta
from edgekd.edge.transports.base import AgentJob, AgentSession, Completed
from edgekd.edge.transports.local import run_agent

PYTHON = "/opt/v/bin/python"  # the venv inside the root file system
PACKAGES = ["numpy", "ai-edge-litert"]  # what a Pi needs for the agent: no torch, no tensorflow, no edgekd


class ChrootTransport:
    """The arm64 root file system as a device: files are copied into it, commands run under chroot (and qemu)."""

    def __init__(self, root: Path):
        self.name, self.root, self.inside = "arm64-chroot", root, "/tmp/edgekd-arm64"

    def open(self) -> None:
        shutil.rmtree(self.root / self.inside[1:], ignore_errors=True)
        (self.root / self.inside[1:]).mkdir(parents=True)

    def push(self, path: Path) -> str:
        shutil.copyfile(path, self.root / self.inside[1:] / path.name)
        return f"{self.inside}/{path.name}"

    def scratch(self, name: str) -> str:
        return f"{self.inside}/{name}"

    def run(self, argv: Sequence[str], timeout: float) -> Completed:
        proc = subprocess.run(["chroot", str(self.root), *argv], capture_output=True, text=True, timeout=timeout)
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    def pull(self, remote: str, local: Path) -> None:
        shutil.copyfile(self.root / remote[1:], local)

    def close(self) -> None:
        shutil.rmtree(self.root / self.inside[1:], ignore_errors=True)


def sh(cmd: list[str], what: str) -> None:
    t0 = time.perf_counter()
    print(f"$ {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{what} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-1500:]}")
    print(f"  {what}: {time.perf_counter() - t0:.0f} s", flush=True)


def prepare(root: Path) -> None:
    """qemu registered with the kernel, then the root file system and its venv (each step skipped when done)."""
    missing = [t for t in ("qemu-aarch64-static", "debootstrap", "chroot") if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: apt-get install -y qemu-user-static debootstrap binfmt-support")
    if os.geteuid() != 0:
        sys.exit("run as root: debootstrap, binfmt_misc and chroot need it")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "qemu-aarch64").exists():
        if not (binfmt / "register").exists():
            sh(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], "mount binfmt_misc")
        sh(["update-binfmts", "--enable", "qemu-aarch64"], "register qemu-aarch64")
    if not (root / "usr/bin/python3").exists():
        include = "--include=python3,python3-venv,python3-pip,ca-certificates"
        url = "http://deb.debian.org/debian"
        sh(["debootstrap", "--arch=arm64", "--variant=minbase", include, "bookworm", str(root), url], "debootstrap")
    # This machine's DNS and pip settings (index, certificates) so pip inside the chroot reaches the same registry.
    for src in ("/etc/resolv.conf", "/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt"):
        if Path(src).is_file():
            shutil.copyfile(src, root / src[1:])
    if not (root / PYTHON[1:]).exists():
        venv = f"python3 -m venv /opt/v && {PYTHON} -m pip install -q {' '.join(PACKAGES)}"
        sh(["chroot", str(root), "/bin/sh", "-c", venv], "venv + pip install " + " ".join(PACKAGES))


def check(root: Path, run_dir: Path, runs: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="edgekd-arm64-"))
    models = [next(run_dir.glob(f"*_convert_tflite/student-{p}.tflite"), None) for p in ("int8", "fp32")]
    if not all(models):
        sys.exit(f"{run_dir}: no *_convert_tflite/student-int8.tflite and student-fp32.tflite (run the pipeline first)")
    data = write_eval_npz(find_dataset(models[0]), tmp / "eval.npz")
    results = {}
    with AgentSession(ChrootTransport(root), [PYTHON], timeout=1800) as arm:
        for model in models:
            meta = write_meta(find_meta(model), tmp / f"{model.stem}.meta.json")
            job = AgentJob(model, meta, data, warmup=2, runs=runs, preds_out=tmp / f"{model.stem}.arm64.npy")
            t0 = time.perf_counter()
            a = arm.run(job)
            arm_s = time.perf_counter() - t0
            if a["status"] != "ok":
                sys.exit(f"arm64 agent failed on {model.name}: {a['error']}")
            host_preds = tmp / f"{model.stem}.host.npy"
            h = run_agent(model, meta, data, 1, 2, runs, host_preds)
            if h["status"] != "ok":
                sys.exit(f"host agent failed on {model.name}: {h['error']}")
            pa, ph = np.load(job.preds_out), np.load(host_preds)
            results[model.name] = {
                "same_top1": int((pa == ph).sum()),
                "n": len(ph),
                "arm64_accuracy": a["accuracy"],
                "host_accuracy": h["accuracy"],
                "arm64_device": a["device"],
                "arm64_runtime": f"{a['runtime']} {a['runtime_version']}",
                "arm64_latency_ms_NOT_REPRESENTATIVE": a["latency_ms"]["mean"],
                "host_latency_ms": h["latency_ms"]["mean"],
                "arm64_agent_wall_s": round(arm_s, 1),
            }
    shutil.rmtree(tmp, ignore_errors=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rootfs", type=Path, required=True, help="arm64 root file system (built here once, then reused)")
    ap.add_argument("--run-dir", type=Path, required=True, help="an edgekd run directory of the default pipeline")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per model (emulated: keep it small)")
    args = ap.parse_args()
    prepare(args.rootfs.resolve())
    results = check(args.rootfs.resolve(), args.run_dir, args.runs)
    print(json.dumps(results, indent=1))
    head = f"{'model':22} {'same top-1 (arm64 vs host)':28} {'accuracy arm64 / host':23}"
    print(f"\n{head} latency (emulated: NOT representative)")
    for name, r in results.items():
        same = f"{r['same_top1']}/{r['n']}"
        acc = f"{100 * r['arm64_accuracy']:.2f} / {100 * r['host_accuracy']:.2f} %"
        print(f"{name:22} {same:28} {acc:23} {r['arm64_latency_ms_NOT_REPRESENTATIVE']:.2f} ms")
    device = next(iter(results.values()))["arm64_device"]
    print(f"arm64 userland: {device['machine']}, {device['os']}, Python {device['python']}")
    return 0 if all(r["same_top1"] == r["n"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
