"""The local transport: the device is this machine; the agent runs in a fresh subprocess of this Python.

A subprocess per model keeps each variant's peak memory its own and isolates a runtime crash to one row.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from edgekd.edge.transports.base import AgentJob, AgentSession, Completed, TransportError


class LocalTransport:
    """Files stay where they are (nothing to copy); only the agent's outputs go to a temporary directory."""

    def __init__(self, name: str = "local"):
        self.name = name
        self._dir: Path | None = None

    def open(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="edgekd-local-"))

    def push(self, path: Path) -> str:
        return str(path)

    def scratch(self, name: str) -> str:
        assert self._dir is not None, "open() first"
        return str(self._dir / name)

    def run(self, argv: Sequence[str], timeout: float) -> Completed:
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise TransportError(f"{self.name}: the agent timed out after {timeout:.0f} s") from None
        except OSError as exc:  # the configured python does not exist
            return Completed(127, "", f"{argv[0]}: {exc.strerror}")
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    def pull(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def run_agent(
    model: Path,
    meta: Path,
    data: Path | None,
    threads: int,
    warmup: int,
    runs: int,
    preds_out: Path | None = None,
    eval_limit: int | None = None,
    timeout: float = 1800,
) -> dict:
    """Benchmark one model with the agent; returns its JSON (``status`` is ``ok`` or ``failed`` with ``error``)."""
    job = AgentJob(
        Path(model), Path(meta), Path(data) if data is not None else None, threads, warmup, runs, eval_limit, preds_out
    )
    try:
        with AgentSession(LocalTransport(), [sys.executable], timeout) as session:
            return session.run(job)
    except TransportError as exc:
        return {"status": "failed", "error": str(exc)}
