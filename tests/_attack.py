"""The harness of the attack suite (tests/test_attacks*.py): run the real ``edgekd`` CLI in a child process the way
an attacker would, bounded in time and memory, and check what a user must get back: a non-zero exit, one line
starting with ``error:``, no traceback, no code executed, no file touched outside the place it may write.

A plain module (not conftest) so every attack file and ``benchmarks/`` can import it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgekd.core.fsutil import file_sha256

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 6 * 2**30  # address-space cap of the child: a regression fails the test instead of eating the machine
RSS_BUDGET = 1.1 * 2**30  # what the issue allows a hostile input to grow to (~1 GiB)
PWNED_ENV = "EDGEKD_PWNED"  # hostile payloads write this file if their code ever runs


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int  # bytes, from wait4's rusage of this child alone
    timed_out: bool

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""

    def describe(self) -> str:
        return (
            f"exit {self.code} in {self.seconds:.1f} s, peak RSS {self.peak_rss / 2**20:.0f} MB"
            f"{' (TIMED OUT)' if self.timed_out else ''}\n--- stdout\n{self.stdout[-3000:]}\n"
            f"--- stderr\n{self.stderr[-3000:]}"
        )


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    os.setsid()  # its own process group: a timeout kills everything it started


def edgekd(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> Outcome:
    """Run ``python -m edgekd ARGS`` in ``cwd``; killed (whole group) after ``timeout`` seconds."""
    full_env = {**os.environ, "EDGEKD_QUIET": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    full_env.pop("EDGEKD_DEBUG", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekd", *args],
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_memory,
    )
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, _kill)
    timer.start()
    out = {}
    readers = [
        threading.Thread(target=lambda: out.__setitem__("stdout", proc.stdout.read())),
        threading.Thread(target=lambda: out.__setitem__("stderr", proc.stderr.read())),
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Outcome(
        code=proc.returncode,
        stdout=out.get("stdout", ""),
        stderr=out.get("stderr", ""),
        seconds=time.perf_counter() - t0,
        peak_rss=usage.ru_maxrss * 1024,
        timed_out=timed_out.is_set(),
    )


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file (and symlink target) under ``roots`` with its SHA-256: compared before and after an attack."""
    out: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for p in sorted(root.rglob("*")):
            if p.is_symlink():
                out[str(p)] = "-> " + os.readlink(p)
            elif p.is_file():
                out[str(p)] = file_sha256(p)
            elif p.is_dir():
                out[str(p)] = "<dir>"
    return out


def assert_refused(res: Outcome, *patterns: str, code: int | None = None) -> None:
    """A clean refusal: non-zero exit (``code`` if given), no traceback, last line ``error: ...`` matching every
    regex in ``patterns``, bounded time and memory."""
    import re

    assert not res.timed_out, res.describe()
    assert res.code != 0, res.describe()
    if code is not None:
        assert res.code == code, res.describe()
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.describe()
    line = res.last_line
    assert line.startswith("error: "), res.describe()
    error_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error")]
    assert len(error_lines) == 1, res.describe()
    for pat in patterns:
        assert re.search(pat, line), f"/{pat}/ not in: {line}\n" + res.describe()
    assert res.peak_rss < RSS_BUDGET, res.describe()
