"""Opt-in (slow, root): the agent and a default-pipeline run's int8/fp32 TFLite files on an emulated arm64 Debian.

    EDGEKD_ARM64_ROOTFS=/work/arm64-rootfs EDGEKD_ARM64_RUN_DIR=runs/mobile_vision pytest -m slow tests/devices

Builds the root file system the first time (debootstrap, ~5-10 min; cached in EDGEKD_ARM64_ROOTFS), then checks
that every test image gets the same top-1 on aarch64 as on this host (benchmarks/arm64_check.py does the work).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "arm64_check.py"


@pytest.mark.slow
def test_arm64_userland_gives_the_host_s_predictions():
    rootfs, run_dir = os.environ.get("EDGEKD_ARM64_ROOTFS"), os.environ.get("EDGEKD_ARM64_RUN_DIR")
    if not (rootfs and run_dir):
        pytest.skip("set EDGEKD_ARM64_ROOTFS (where the arm64 root fs is built/cached) and EDGEKD_ARM64_RUN_DIR")
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, binfmt_misc, chroot)")
    cmd = [sys.executable, str(SCRIPT), "--rootfs", rootfs, "--run-dir", run_dir, "--runs", "5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "NOT representative" in proc.stdout and "aarch64" in proc.stdout
