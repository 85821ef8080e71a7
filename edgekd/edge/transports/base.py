"""How edgekd reaches a device: one small protocol (open / push / run / pull / close) and the agent session on top.

A transport only moves files and runs commands; what is measured, and how, is always ``devices/agent.py`` (or, on
Android, TFLite's own ``benchmark_model``). ``AgentSession`` pushes the agent and the eval data once per device, then
one model after another, so the local, SSH and adb paths share every line that builds or reads an agent run. A
latency-only job (no eval data) pushes no data file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from edgekd.core.errors import EdgekdError
from edgekd.formats.runner import agent_path


@dataclass(frozen=True)
class Completed:
    """What a command run on the device left: exit status, stdout, stderr."""

    rc: int
    stdout: str
    stderr: str


class TransportError(EdgekdError):
    """A device could not be reached or used. ``fatal``: the device is unusable, so its other variants are skipped."""

    def __init__(self, message: str, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


class Transport(Protocol):
    """Moves files to one device and runs commands there; device paths are plain strings."""

    name: str

    def open(self) -> None:
        """Create the temporary working directory on the device."""

    def push(self, path: Path) -> str:
        """Copy a local file into the working directory; returns its path on the device."""

    def run(self, argv: Sequence[str], timeout: float) -> Completed:
        """Run a command (argv, quoted by the transport) in the working directory."""

    def scratch(self, name: str) -> str:
        """A path in the working directory for a file that a command will write."""

    def pull(self, remote: str, local: Path) -> None:
        """Copy a file from the device."""

    def close(self) -> None:
        """Remove the working directory; never raises."""


@dataclass
class AgentJob:
    """One model to measure with the agent, and how."""

    model: Path
    meta: Path
    data: Path | None  # None: latency and memory only, timed on random inputs (the agent without --data)
    threads: int = 1
    warmup: int = 10
    runs: int = 100
    eval_limit: int | None = None
    preds_out: Path | None = None  # where to save the top-1 predictions (the teacher's become teacher_pred)
    cpus: list[int] | None = None  # CPU affinity, e.g. the big cores of a phone
    xnnpack: bool = True  # LiteRT's default CPU delegate; off measures the builtin kernels
    raw_latencies: bool = False  # return every timed run (latency distribution plots)


def agent_flags(job: AgentJob, model: str, meta: str, data: str | None, preds: str | None) -> list[str]:
    """The agent's command-line flags for ``job``, with the files at their paths on the device."""
    args = ["--model", model, "--meta", meta] + (["--data", data] if data is not None else [])
    args += ["--threads", str(job.threads), "--warmup", str(job.warmup), "--runs", str(job.runs)]
    if job.eval_limit:
        args += ["--eval-limit", str(job.eval_limit)]
    if preds:
        args += ["--preds-out", preds]
    if job.cpus:
        args += ["--cpus", ",".join(map(str, job.cpus))]
    if not job.xnnpack:
        args.append("--no-xnnpack")
    if job.raw_latencies:
        args.append("--raw-latencies")
    return args


def _last_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output")[:limit]


def parse_agent_output(proc: Completed, model_name: str, python: str = "python3") -> dict:
    """The agent's JSON line, or a failed row whose error says what to install or fix on the device."""
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    err = proc.stderr
    if proc.rc == 127 or ("No such file or directory" in err and python in err):
        msg = f"{python} not found on the device: install Python 3, then pip install numpy ai-edge-litert"
    elif "No module named 'numpy'" in err:
        msg = f"numpy is missing on the device ({python}): pip install numpy"
    elif proc.rc in (-9, 137):
        msg = f"the agent was killed (out of memory?) while running {model_name}"
    else:
        msg = f"agent exited {proc.rc} on {model_name}: {_last_line(err)}"
    return {"status": "failed", "error": msg}


@dataclass
class AgentSession:
    """The agent and the eval data pushed once to a device, then any number of models measured there.

    Use as a context manager: the device's working directory is created on entry and removed on exit.
    """

    transport: Transport
    python: list[str] = field(default_factory=lambda: ["python3"])
    timeout: float = 1800
    _pushed: dict[tuple, str] = field(default_factory=dict, init=False)

    def open(self) -> None:
        self.transport.open()

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> AgentSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push(self, path: Path) -> str:
        """Push a file once per session (the agent and eval data are shared by every model)."""
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._pushed:
            self._pushed[key] = self.transport.push(path)
        return self._pushed[key]

    def run(self, job: AgentJob) -> dict:
        """Measure one model; a failed run is a ``failed`` row, a device problem raises TransportError."""
        agent = self.push(agent_path())
        for helper in ("wordpiece.py", "pt2_guard.py"):  # the agent imports these from its folder (text, .pt2)
            if agent_path().with_name(helper).is_file():
                self.push(agent_path().with_name(helper))
        model, meta = self.push(job.model), self.push(job.meta)
        data = self.push(job.data) if job.data is not None else None
        preds = self.transport.scratch(f"{job.model.name}.preds.npy") if job.preds_out is not None else None
        argv = [*self.python, agent, *agent_flags(job, model, meta, data, preds)]
        proc = self.transport.run(argv, self.timeout)
        result = parse_agent_output(proc, job.model.name, self.python[-1])
        if preds and result.get("status") == "ok":
            self.transport.pull(preds, job.preds_out)
        return result
