"""The adb transport: an Android phone. TFLite's ``benchmark_model`` measures; the Python agent adds accuracy.

Phones rarely have Python, so latency and memory come from the tool Android developers already trust, pushed with the
model and run with the profile's threads, CPU mask (``taskset``) and XNNPACK switch. When the profile gives a
``python`` the phone can run (Termux), the agent also runs there for accuracy and teacher agreement; otherwise the row
says accuracy was not measured on the device. Every adb shell word is quoted with shlex.quote.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from edgekd.edge.profiles import DeviceProfile
from edgekd.edge.transports.base import AgentJob, AgentSession, Completed, TransportError
from edgekd.edge.transports.benchmark_model import BenchmarkModelError, parse_benchmark_model

_FATAL = {
    "no devices/emulators found": "no Android device is connected (adb devices lists none)",
    "unauthorized": "the phone has not authorised this computer: accept the USB debugging prompt on it",
    "offline": "the phone is offline: reconnect the cable or restart adb (adb kill-server)",
    "not found": "no device with this serial is connected (see adb devices)",
    "more than one device": "several devices are connected: set adb.serial in the profile",
}


class AdbTransport:
    """One phone through ``adb [-s SERIAL]``; a temporary directory under ``workdir`` (/data/local/tmp)."""

    def __init__(self, name: str, adb: str = "adb", serial: str | None = None, workdir: str = "/data/local/tmp"):
        self.name, self.workdir = name, workdir
        self._base = [os.path.expanduser(adb), *(["-s", serial] if serial else [])]
        self._dir: str | None = None

    def _adb(self, *args: str, timeout: float = 120) -> Completed:
        try:
            proc = subprocess.run([*self._base, *args], capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise TransportError(
                f"{self.name}: adb not found ('{self._base[0]}'): install Android platform-tools or set adb.adb", True
            ) from None
        except subprocess.TimeoutExpired:
            raise TransportError(f"{self.name}: adb {args[0]} gave no answer within {timeout:.0f} s") from None
        out = Completed(proc.returncode, proc.stdout, proc.stderr)
        text = (proc.stderr + proc.stdout).lower() if proc.returncode else ""
        for key, msg in _FATAL.items():
            if key in text and (key != "not found" or "device" in text):
                raise TransportError(f"{self.name}: {msg}", fatal=True)
        return out

    def _shell(self, words: Sequence[str], timeout: float = 120) -> Completed:
        return self._adb("shell", " ".join(shlex.quote(w) for w in words), timeout=timeout)

    def _check(self, res: Completed, what: str) -> None:
        if res.rc != 0:
            why = " ".join((res.stderr or res.stdout).split())[:300] or f"exit {res.rc}"
            raise TransportError(f"{self.name}: {what} failed on the device: {why}")

    def open(self) -> None:
        state = self._adb("get-state", timeout=30)
        if state.stdout.strip() != "device":
            raise TransportError(f"{self.name}: the phone is not ready (adb get-state: {state.stdout.strip()!r})", True)
        res = self._shell(["mkdir", "-p", self.workdir])
        self._check(res, f"creating {self.workdir}")
        res = self._shell(["mktemp", "-d", f"{self.workdir.rstrip('/')}/edgekd.XXXXXX"])
        self._check(res, f"creating a temporary directory under {self.workdir}")
        self._dir = res.stdout.strip().splitlines()[-1]

    def push(self, path: Path) -> str:
        target = self.scratch(path.name)
        self._check(self._adb("push", str(path), target, timeout=600), f"adb push {path.name}")
        return target

    def scratch(self, name: str) -> str:
        assert self._dir is not None, "open() first"
        return f"{self._dir}/{name}"

    def run(self, argv: Sequence[str], timeout: float) -> Completed:
        assert self._dir is not None, "open() first"
        command = f"cd {shlex.quote(self._dir)} && " + " ".join(shlex.quote(a) for a in argv)
        return self._adb("shell", command, timeout=timeout)

    def pull(self, remote: str, local: Path) -> None:
        self._check(self._adb("pull", remote, str(local), timeout=600), f"adb pull {Path(remote).name}")

    def close(self) -> None:
        if self._dir is not None:
            with contextlib.suppress(TransportError):
                self._shell(["rm", "-rf", self._dir], timeout=60)
            self._dir = None

    def facts(self) -> dict:
        """The phone as it describes itself (getprop, uname, /proc/cpuinfo), in the agent's device-facts keys."""
        props = ("ro.product.manufacturer", "ro.product.model", "ro.soc.model", "ro.board.platform",
                 "ro.build.version.release")  # fmt: skip
        script = "; ".join(f"getprop {p}" for p in props) + "; uname -m; grep -c ^processor /proc/cpuinfo"
        lines = self._adb("shell", script, timeout=30).stdout.splitlines() + [""] * 8
        maker, model, soc, platform, release, machine, cores = (ln.strip() for ln in lines[:7])
        return {
            "cpu_model": soc or platform or None,
            "board": f"{maker} {model}".strip() or None,
            "logical_cores": int(cores) if cores.isdigit() else None,
            "os": f"Android {release}" if release else None,
            "machine": machine or None,
        }


def cpu_mask(cpus: list[int]) -> str:
    """taskset's hexadecimal mask: [4, 5, 6, 7] -> 'f0'."""
    return format(sum(1 << c for c in cpus), "x")


def benchmark_model_argv(tool: str, model: str, job: AgentJob, op_profiling: bool, peak_memory: bool) -> list[str]:
    argv = ["taskset", cpu_mask(job.cpus)] if job.cpus else []
    argv += [tool, f"--graph={model}", f"--num_threads={job.threads}", f"--warmup_runs={job.warmup}"]
    argv += [f"--num_runs={job.runs}", f"--use_xnnpack={str(job.xnnpack).lower()}"]
    if peak_memory:
        argv.append("--report_peak_memory_footprint=true")
    if op_profiling:
        argv.append("--enable_op_profiling=true")
    return argv


def push_tool(session: AgentSession, profile: DeviceProfile) -> str:
    """Push the profile's benchmark_model binary into the session's directory and make it executable."""
    assert profile.adb is not None
    local_tool = Path(os.path.expanduser(profile.adb.benchmark_model or ""))
    if not local_tool.is_file():
        raise TransportError(
            f"{profile.name}: benchmark_model not found at '{profile.adb.benchmark_model}' (adb.benchmark_model): "
            "download android_aarch64_benchmark_model from TFLite's nightly builds",
            fatal=True,
        )
    tool = session.push(local_tool)
    res = session.transport.run(["chmod", "755", tool], 60)
    if res.rc != 0:
        raise TransportError(f"{profile.name}: cannot make benchmark_model executable: {res.stderr.strip()[:200]}")
    return tool


def run_benchmark_model(session: AgentSession, profile: DeviceProfile, tool: str, job: AgentJob) -> dict:
    """Run benchmark_model on one pushed model; an agent-shaped result (``failed`` with the tool's reason)."""
    assert profile.adb is not None
    model = session.push(job.model)
    argv = benchmark_model_argv(tool, model, job, profile.adb.op_profiling, profile.adb.peak_memory)
    proc = session.transport.run(argv, session.timeout)
    try:
        parsed = parse_benchmark_model(proc.stdout + "\n" + proc.stderr)
    except BenchmarkModelError as exc:
        return {"status": "failed", "error": f"{exc} (on {job.model.name})"}
    return {"status": "ok", "measured_by": "benchmark_model", "threads": job.threads, "xnnpack": job.xnnpack,
            "cpus": job.cpus, **parsed}  # fmt: skip
