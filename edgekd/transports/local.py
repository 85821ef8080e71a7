"""The local transport: run the device agent in a fresh subprocess of this Python.

A subprocess per model keeps each variant's peak memory its own and isolates a runtime crash to one row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgekd.runtimes import agent_path


def run_agent(model: Path, meta: Path, data: Path, threads: int, warmup: int, runs: int,
              preds_out: Path | None = None, eval_limit: int | None = None, timeout: float = 1800) -> dict:
    """Benchmark one model with the agent; returns its JSON (``status`` is ``ok`` or ``failed`` with ``error``)."""
    cmd = [sys.executable, str(agent_path()), "--model", str(model), "--meta", str(meta), "--data", str(data),
           "--threads", str(threads), "--warmup", str(warmup), "--runs", str(runs)]
    if preds_out is not None:
        cmd += ["--preds-out", str(preds_out)]
    if eval_limit:
        cmd += ["--eval-limit", str(eval_limit)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"agent timed out after {timeout:.0f} s on {model.name}"}
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return {"status": "failed", "error": f"agent exited {proc.returncode} on {model.name}: {err}"}
    return result
