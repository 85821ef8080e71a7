"""Read the output of TFLite's ``benchmark_model`` into edgekd's row schema.

Handles the formats seen in the wild (tests/devices/data/ has real samples): plain lines, ``INFO:`` prefixes and
logcat prefixes (``I tflite  :``); averages printed as ``2.95034e+06``; the memory line under each of its names
(``Memory footprint delta from the start of the tool``, the older ``Peak memory footprint``, and ``Overall peak memory
footprint (MB) via periodic monitoring``); the per-operator profile of ``--enable_op_profiling=true``.
"""

from __future__ import annotations

import re

from edgekd.core.errors import EdgekdError

_NUM = r"([0-9.]+(?:e[+-]?[0-9]+)?)"
_TIMINGS = re.compile(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, "
                      rf"Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}")  # fmt: skip
_STATS = re.compile(r"count=(\d+) first=\S+ curr=\S+ (.*)")
_FOOTPRINT = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                        rf"init={_NUM} overall={_NUM}")  # fmt: skip
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}")
_OPS_START = "Operator-wise Profiling Info for Regular Benchmark Runs"
_SUMMARY = "Summary by node type"
_TOP = "Top by Computation Time"


class BenchmarkModelError(EdgekdError):
    """benchmark_model ran but did not benchmark (delegate refused the graph, bad flag, model it cannot load)."""


def _fields(text: str) -> dict[str, float]:
    """'min=1 max=2 avg=1.5e+03 std=3 p5=... median=...' -> {'min': 1.0, ...}."""
    return {k: float(v) for k, v in re.findall(rf"(\w+)={_NUM}", text)}


def _error_line(lines: list[str]) -> str:
    """The tool's last complaint, plus its first ERROR line when that says more (the delegate's own reason)."""
    bad = [ln.strip() for ln in lines if "ERROR" in ln or "fail" in ln.lower() or "Unknown flag" in ln]
    bad = [ln for ln in bad if not ln.endswith("Benchmarking failed.")] or bad
    if not bad:
        return (" ".join(lines[-1].split()) if lines else "no output")[:300]
    why, first = bad[-1], next((ln for ln in bad if "ERROR" in ln), bad[-1])
    return (why if first == why else f"{why} ({first})")[:400]


def _table(lines: list[str], start: int) -> list[list[str]]:
    """The tab-separated rows of the op-profile table whose header follows line ``start``."""
    rows = []
    for line in lines[start + 2 :]:  # title, then the header row
        cells = [c.strip() for c in line.split("\t") if c.strip()]
        if len(cells) < 6:
            break
        rows.append(cells)
    return rows


def _op_profile(lines: list[str]) -> dict | None:
    """Per node type and the slowest nodes, from the regular-runs part of an ``--enable_op_profiling`` output."""
    try:
        begin = next(i for i, ln in enumerate(lines) if _OPS_START in ln)
    except StopIteration:
        return None
    part = lines[begin:]
    by_type, top = [], []
    for i, line in enumerate(part):
        if _SUMMARY in line:
            for c in _table(part, i):  # node type, count, avg ms, avg %, cdf %, mem KB, times called
                by_type.append({"node_type": c[0], "count": int(c[1]), "avg_ms": float(c[2]),
                                "percent": float(c[3].rstrip("%"))})  # fmt: skip
        elif _TOP in line:
            for c in _table(part, i):  # node type, start, first, avg ms, %, cdf %, mem KB, times called, name
                top.append({"node_type": c[0], "avg_ms": float(c[3]), "percent": float(c[4].rstrip("%")),
                            "name": c[8] if len(c) > 8 else ""})  # fmt: skip
    return {"by_node_type": by_type, "top_nodes": top}


def parse_benchmark_model(output: str) -> dict:
    """Latency (ms), load time, memory and the op profile from benchmark_model's output (stdout + stderr).

    Raises BenchmarkModelError with the tool's own reason when the output holds no inference timings.
    """
    lines = output.replace("\r", "").splitlines()
    timings = next((m for m in map(_TIMINGS.search, lines) if m), None)
    if timings is None:
        raise BenchmarkModelError(f"benchmark_model did not benchmark: {_error_line(lines)}")
    init_us, first_us, warmup_us, avg_us = (float(g) for g in timings.groups())
    stats = [m for m in map(_STATS.search, lines[: lines.index(timings.string)]) if m]
    # The tool prints the warm-up's count= line, then the regular runs'; the last one before the timings is ours.
    regular = _fields(stats[-1].group(2)) if stats else {}
    runs = int(stats[-1].group(1)) if stats else None
    ms = {k: v / 1000.0 for k, v in regular.items()}
    latency = {
        "mean": avg_us / 1000.0,
        "std": ms.get("std"),
        "p50": ms.get("median"),  # printed by newer builds only; p90/p99 are not printed at all
        "p90": None,
        "p99": None,
        "min": ms.get("min"),
        "max": ms.get("max"),
    }
    footprint = next((m for m in map(_FOOTPRINT.search, lines) if m), None)
    peak = next((m for m in map(_PEAK.search, lines) if m), None)
    return {
        "latency_ms": {k: (round(v, 4) if v is not None else None) for k, v in latency.items()},
        "runs": runs,
        "throughput_ips": round(1e6 / avg_us, 2) if avg_us > 0 else None,
        "load_time_ms": round(init_us / 1000.0, 3),
        "first_inference_ms": round(first_us / 1000.0, 3),
        "warmup_avg_ms": round(warmup_us / 1000.0, 4),
        "memory_footprint_mb": (
            {"init": float(footprint.group(1)), "overall": float(footprint.group(2))} if footprint else None
        ),
        "peak_rss_mb": float(peak.group(1)) if peak else None,  # the process's sampled peak, when the tool reports it
        "xnnpack_applied": any("XNNPACK delegate" in ln for ln in lines),
        "op_profile": _op_profile(lines),
    }
