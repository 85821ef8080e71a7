"""Measure model variants on devices: one transport session per device, devices in parallel, one row per variant.

Used by the benchmark stage and by ``edgekd bench``. A device that cannot be reached, or a variant that fails, becomes
failed rows with a one-line error; the other variants and devices go on. Variants the device has no runtime for are
left out with a note rather than failed. Without eval data (``data=None``) every device measures latency and memory
only: nothing but the agent, the metadata and the models is pushed.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.edge.profiles import DeviceProfile
from edgekd.edge.transports.adb import AdbTransport, push_tool, run_benchmark_model
from edgekd.edge.transports.base import AgentJob, AgentSession, Transport, TransportError
from edgekd.edge.transports.local import LocalTransport
from edgekd.edge.transports.ssh import SshTransport

# What a row keeps from an agent (or benchmark_model) result: these always (None when not measured), ...
ROW_FIELDS = ("accuracy", "teacher_agreement", "latency_ms", "throughput_ips", "peak_rss_mb", "load_time_ms",
              "runtime_version", "threads")  # fmt: skip
# ... these when the result has them.
EXTRA_FIELDS = ("xnnpack", "cpus", "latencies_ms", "n_eval", "measured_by", "runs", "first_inference_ms",
                "warmup_avg_ms", "memory_footprint_mb", "op_profile", "accuracy_note")  # fmt: skip


@dataclass
class Variant:
    """One model to measure; ``row`` holds what is known before measuring (format, precision, size, params...)."""

    name: str
    model: Path
    meta: Path
    runtime: str  # litert | onnxruntime | torch
    row: dict = field(default_factory=dict)
    preds_out: Path | None = None  # save its top-1 predictions here (the teacher's become teacher_pred)


@dataclass
class Settings:
    threads: int = 1
    warmup: int = 10
    runs: int = 100
    eval_limit: int | None = None
    force_threads: bool = False  # True: ``threads`` wins over the profile's (an explicit --threads)


@dataclass
class DeviceResult:
    device: str
    profile: dict
    rows: list[dict] = field(default_factory=list)
    facts: dict | None = None  # as the device reported them
    notes: list[str] = field(default_factory=list)


def open_transport(profile: DeviceProfile) -> tuple[Transport, list[str] | None]:
    """The profile's transport and the Python command on the device (None: no Python there)."""
    python = shlex.split(profile.python) if profile.python else None
    assert profile.workdir is not None  # filled in by the profile's validator
    if profile.transport == "ssh":
        assert profile.ssh is not None
        return SshTransport(profile.name, profile.ssh, profile.workdir), python
    if profile.transport == "adb":
        assert profile.adb is not None
        return AdbTransport(profile.name, profile.adb.adb, profile.adb.serial, profile.workdir), python
    return LocalTransport(profile.name), python or [sys.executable]


def _row(variant: Variant, device: str, res: dict) -> dict:
    row = {**variant.row, "name": variant.name, "device": device}
    row.update({k: res.get(k) for k in ROW_FIELDS})
    row.update({k: res[k] for k in EXTRA_FIELDS if k in res})
    row["status"] = res.get("status", "failed")
    row["error"] = res.get("error")
    return row


class _DeviceRun:
    """Everything one device does in one session."""

    def __init__(self, profile: DeviceProfile, data: Path | None, settings: Settings):
        self.profile, self.data, self.settings = profile, data, settings
        self.transport, self.python = open_transport(profile)
        self.session = AgentSession(self.transport, self.python or ["python3"], profile.timeout_s)
        self.tool: str | None = None  # benchmark_model on the phone, pushed on first use

    def job(self, v: Variant) -> AgentJob:
        s, p = self.settings, self.profile
        threads = s.threads if s.force_threads or p.threads is None else p.threads
        return AgentJob(v.model, v.meta, self.data, threads, s.warmup, s.runs, s.eval_limit, v.preds_out,
                        p.cpu_affinity, p.xnnpack, raw_latencies=True)  # fmt: skip

    def measure(self, v: Variant) -> dict:
        adb = self.profile.adb
        if adb is None or not adb.benchmark_model or v.runtime != "litert":
            return self.session.run(self.job(v))
        if self.tool is None:
            self.tool = push_tool(self.session, self.profile)
        res = run_benchmark_model(self.session, self.profile, self.tool, self.job(v))
        if res["status"] != "ok" or self.data is None:  # no eval data: benchmark_model's figures are the row
            return res
        if self.python is None:
            res["accuracy_note"] = "not measured on the device (no Python in the profile)"
            return res
        acc = self.session.run(self.job(v))  # the agent on the phone: accuracy and teacher agreement
        if acc.get("status") != "ok":
            res["accuracy_note"] = f"not measured on the device: {acc.get('error')}"
        else:
            # Accuracy only: the row's timings stay benchmark_model's, never mixed with the agent's.
            res.update({k: acc.get(k) for k in ("accuracy", "teacher_agreement", "n_eval", "device")})
        return res


def measure_device(
    profile: DeviceProfile,
    variants: list[Variant],
    data: Path | None,
    settings: Settings,
    on_row: Callable[[dict], None] | None = None,
) -> DeviceResult:
    """Measure every variant the device has a runtime for; never raises for a device problem."""
    out = DeviceResult(profile.name, profile.summary())
    runnable = [v for v in variants if v.runtime in (profile.runtimes or [])]
    skipped = [v.name for v in variants if v not in runnable]
    if skipped:
        have = ", ".join(profile.runtimes or [])
        out.notes.append(f"{profile.name}: not run (the profile's runtimes are {have}): {', '.join(skipped)}")
    no_python = profile.transport == "adb" and profile.python is None
    if no_python and data is not None and any(v.runtime == "litert" for v in runnable):
        out.notes.append(f"{profile.name}: accuracy not measured on the device (the profile has no python)")
    run, fatal = _DeviceRun(profile, data, settings), None
    try:
        run.session.open()
        if isinstance(run.transport, AdbTransport):
            out.facts = run.transport.facts()
    except TransportError as exc:
        fatal = str(exc)
    try:
        for v in runnable:
            if fatal:
                res = {"status": "failed", "error": fatal}
            else:
                try:
                    res = run.measure(v)
                except TransportError as exc:
                    res = {"status": "failed", "error": str(exc)}
                    fatal = str(exc) if exc.fatal else None
                except OSError as exc:  # a local file gone (model, data): this variant only
                    res = {"status": "failed", "error": f"{profile.name}: {exc.strerror or exc}: {exc.filename}"}
            if res.get("device"):
                out.facts = {**(out.facts or {}), **{k: val for k, val in res["device"].items() if val is not None}}
            out.rows.append(_row(v, profile.name, res))
            if on_row:
                on_row(out.rows[-1])
    finally:
        run.session.close()
    return out


def measure_devices(
    profiles: list[DeviceProfile],
    variants: list[Variant],
    data: Path | None,
    settings: Settings,
    on_row: Callable[[dict], None] | None = None,
) -> list[DeviceResult]:
    """Every device in parallel (one thread each), except that profiles on this machine take turns: two local
    measurements at once would share the CPU and skew each other. Results come back in the order of ``profiles``."""
    local = [p for p in profiles if p.transport == "local"]
    groups = ([local] if local else []) + [[p] for p in profiles if p.transport != "local"]

    def run_group(group: list[DeviceProfile]) -> list[DeviceResult]:
        return [measure_device(p, variants, data, settings, on_row) for p in group]

    if not groups:
        return []
    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="edgekd-device") as pool:
        done = [r for rs in pool.map(run_group, groups) for r in rs]
    by_name = {r.device: r for r in done}
    return [by_name[p.name] for p in profiles]
