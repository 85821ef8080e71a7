"""Number and cell formatting shared by the markdown, HTML and terminal reports.

All three renderers call :func:`variant_cells` so a number looks the same wherever it is read; the renderers only
add their own escaping and styling.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "—"  # shown for a value that was not measured (None, NaN) so it is not mistaken for zero

COLUMNS: tuple[str, ...] = (
    "Variant",
    "Format",
    "Precision",
    "Status",
    "Size (KB)",
    "Params",
    "MACs",
    "Accuracy %",
    "Δ acc vs fp32 (points)",
    "Δ acc vs teacher (points)",
    "Agreement w/ teacher %",
    "Latency mean / p50 / p90 / p99 ms",
    "Throughput/s",
    "Peak RSS MB",
)

# The text-embedding task's rows: embeddings judged against the teacher's (edgekd.text.metrics) instead of labels.
TEXT_COLUMNS: tuple[str, ...] = (
    *COLUMNS[:6],  # variant, format, precision, status, size, params: as for images
    "Cosine",
    "Spearman",
    "Top-k overlap",
    "Probe acc %",
    "× teacher ONNX",
    *COLUMNS[-3:],  # latency, throughput, peak RSS
)

# Columns holding numbers: renderers right-align these so digits line up.
NUMERIC_COLUMNS: frozenset[str] = frozenset(COLUMNS[4:]) | frozenset(TEXT_COLUMNS[4:])

# What the plots and the Pareto frontier rank variants by, per task: (row key, axis label, scale to the axis)
QUALITY: dict[str, tuple[str, str, float]] = {
    "image-classification": ("accuracy", "accuracy (%)", 100.0),
    "text-embedding": ("spearman", "Spearman of similarities vs teacher", 1.0),
}


def quality(report: dict[str, Any]) -> tuple[str, str, float]:
    return QUALITY.get(report.get("task") or "image-classification", QUALITY["image-classification"])


def columns(report: dict[str, Any]) -> tuple[str, ...]:
    return TEXT_COLUMNS if report.get("task") == "text-embedding" else COLUMNS


LATENCY_KEYS: tuple[str, ...] = ("mean", "p50", "p90", "p99")

# Plot file names and captions; kept here so markdown/HTML can reference them without importing matplotlib.
PLOT_FILES: dict[str, str] = {
    "accuracy_vs_latency.png": "Accuracy vs latency",
    "accuracy_vs_size.png": "Accuracy vs size",
}
# Drawn only when some variant carries its per-run latencies (the agent's --raw-latencies).
DISTRIBUTION_PLOT = {"latency_distribution.png": "Latency distribution per variant (every timed run)"}


def plot_files(report: dict[str, Any]) -> dict[str, str]:
    """The plots this report has: the scatter plots always, the distribution plot when there is data for it."""
    has_runs = any(v.get("latencies_ms") for v in report.get("variants") or [])
    return {**PLOT_FILES, **(DISTRIBUTION_PLOT if has_runs else {})}


def device_groups(report: dict[str, Any]) -> list[tuple[str | None, list[dict[str, Any]]]]:
    """Variants per device, in report order; a single group (device None) when at most one device was measured."""
    variants = list(report.get("variants") or [])
    names = list(dict.fromkeys(v.get("device") for v in variants if v.get("device")))
    if len(names) <= 1:
        return [(None, variants)]
    groups = [(n, [v for v in variants if v.get("device") == n]) for n in names]
    unmeasured = [v for v in variants if not v.get("device")]
    return groups + ([("not measured", unmeasured)] if unmeasured else [])


def device_line(report: dict[str, Any], device: str) -> str:
    """What the device reported about itself, and how it was reached (transport, host, threads)."""
    info = (report.get("devices") or {}).get(device) or {}
    prof = info.get("profile") or {}
    how = ", ".join(str(x) for x in (prof.get("transport"), prof.get("host") or prof.get("serial")) if x)
    facts = facts_line(info.get("facts") or {}) if info.get("facts") else "device facts not reported"
    return f"{facts} (via {how})" if how else facts


def as_float(x: Any) -> float | None:
    """``x`` as a float, or None when it is missing or not a finite number (NaN would print as 'nan')."""
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt_num(x: Any, digits: int = 1) -> str:
    f = as_float(x)
    return MISSING if f is None else f"{f:,.{digits}f}"


def fmt_kb(size_bytes: Any) -> str:
    """Bytes as KB (1 KB = 1024 bytes); small models keep a decimal so fp16/int8 differences stay visible."""
    f = as_float(size_bytes)
    if f is None:
        return MISSING
    kb = f / 1024.0
    return f"{kb:,.1f}" if kb < 10_000 else f"{kb:,.0f}"


def fmt_count(x: Any) -> str:
    """Parameter / MAC counts with an SI suffix: 1234567 -> '1.23M'."""
    f = as_float(x)
    if f is None:
        return MISSING
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(f) >= div:
            return f"{f / div:.2f}{suffix}"
    return f"{f:.0f}"


def fmt_pct(fraction: Any) -> str:
    """A 0..1 fraction as a percentage with two decimals (accuracy deltas of 0.1 pt matter here)."""
    f = as_float(fraction)
    return MISSING if f is None else f"{f * 100:.2f}"


def fmt_points(x: Any) -> str:
    """A signed accuracy difference in percentage points: ``-0.28``, ``+0.00``."""
    f = as_float(x)
    return MISSING if f is None else f"{f:+.2f}"


def fmt_ms(x: Any) -> str:
    """Milliseconds with about three significant digits: sub-ms edge models need decimals, big ones do not."""
    f = as_float(x)
    if f is None:
        return MISSING
    if abs(f) >= 100:
        return f"{f:,.0f}"
    if abs(f) >= 10:
        return f"{f:.1f}"
    if abs(f) >= 1:
        return f"{f:.2f}"
    return f"{f:.3f}"


def fmt_latency(lat: Any, sep: str = " / ") -> str:
    if not isinstance(lat, dict) or all(as_float(lat.get(k)) is None for k in LATENCY_KEYS):
        return MISSING
    return sep.join(fmt_ms(lat.get(k)) for k in LATENCY_KEYS)


def fmt_seconds(x: Any) -> str:
    f = as_float(x)
    return MISSING if f is None else f"{f:.1f} s"


def shorten(text: Any, width: int | None) -> str:
    """One line of at most ``width`` characters (None: no limit); tracebacks and multi-line errors collapse."""
    s = " ".join(str(text if text is not None else "").split())
    if width is not None and len(s) > width:
        return s[: max(width - 1, 0)] + "…"
    return s


def is_failed(variant: dict[str, Any]) -> bool:
    return variant.get("status") != "ok"


def status_text(variant: dict[str, Any], error_width: int | None = None) -> str:
    if not is_failed(variant):
        return "ok"
    err = shorten(variant.get("error") or "unknown error", error_width)
    return f"FAILED: {err}"


def display_name(variant: dict[str, Any]) -> str:
    """The variant name, tagged "(teacher)" when its role is teacher and the name does not already say so."""
    name = str(variant.get("name", "?"))
    if variant.get("role") == "teacher" and "teacher" not in name.lower():
        name += " (teacher)"
    return name


def cells(
    report: dict[str, Any], variant: dict[str, Any], error_width: int | None = None, sep: str = " / "
) -> list[str]:
    """Plain-text cells for one variant, in :func:`columns` order for the report's task."""
    if report.get("task") != "text-embedding":
        return variant_cells(variant, error_width, sep)
    topk = next((v for k, v in variant.items() if k.startswith("top") and k.endswith("_overlap")), None)
    speedup = as_float(variant.get("speedup_vs_teacher_onnx"))
    return [
        *_file_cells(variant, error_width),
        fmt_num(variant.get("mean_cosine"), 3),
        fmt_num(variant.get("spearman"), 3),
        fmt_num(topk, 3),
        fmt_pct(variant.get("probe_accuracy")),
        MISSING if speedup is None else f"{speedup:.1f}×",
        *_speed_cells(variant, sep),
    ]


def _file_cells(variant: dict[str, Any], error_width: int | None) -> list[str]:
    """The columns every task's table starts with: variant, format, precision, status, size, params."""
    return [
        display_name(variant),
        str(variant.get("format") or MISSING),
        str(variant.get("precision") or MISSING),
        status_text(variant, error_width),
        fmt_kb(variant.get("size_bytes")),
        fmt_count(variant.get("params")),
    ]


def _speed_cells(variant: dict[str, Any], sep: str) -> list[str]:
    """The columns every task's table ends with: latency, throughput, peak memory."""
    return [
        fmt_latency(variant.get("latency_ms"), sep),
        fmt_num(variant.get("throughput_ips"), 1),
        fmt_num(variant.get("peak_rss_mb"), 1),
    ]


def variant_cells(variant: dict[str, Any], error_width: int | None = None, latency_sep: str = " / ") -> list[str]:
    """Plain-text cells for one variant, in :data:`COLUMNS` order; callers escape for their output format."""
    return [
        *_file_cells(variant, error_width),
        fmt_count(variant.get("macs")),
        fmt_pct(variant.get("accuracy")),
        fmt_points(variant.get("acc_vs_fp32")),
        fmt_points(variant.get("acc_vs_teacher")),
        fmt_pct(variant.get("teacher_agreement")),
        *_speed_cells(variant, latency_sep),
    ]


def add_accuracy_deltas(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with ``acc_vs_fp32`` (points vs the fp32 file of the same model, format and device: what int8 or fp16
    cost; the model's PyTorch row when that format has no fp32 file) and ``acc_vs_teacher`` (points vs the teacher
    on the same device); None where there is no reference or the row is the reference itself."""

    def acc(r: dict[str, Any]) -> float | None:
        return as_float(r.get("accuracy")) if r.get("status") == "ok" else None

    def model(r: dict[str, Any]) -> str:
        return str(r.get("name", "")).split("/", 1)[0]

    teachers = {r.get("device"): acc(r) for r in rows if r.get("role") == "teacher" and acc(r) is not None}
    fp32 = {(model(r), r.get("format"), r.get("device")): acc(r) for r in rows
            if r.get("precision") == "fp32" and acc(r) is not None}  # fmt: skip
    out = []
    for r in rows:
        a, ref = acc(r), fp32.get((model(r), r.get("format"), r.get("device")))
        if ref is None:  # no fp32 file of this format (a QAT int8 file): the model's own PyTorch accuracy
            ref = fp32.get((model(r), "pytorch", r.get("device")))
        teacher = teachers.get(r.get("device"), next(iter(teachers.values()), None))
        vs_fp32 = None if a is None or ref is None or r.get("precision") == "fp32" else (a - ref) * 100
        vs_teacher = None if a is None or teacher is None or r.get("role") == "teacher" else (a - teacher) * 100
        out.append({**r, "acc_vs_fp32": vs_fp32, "acc_vs_teacher": vs_teacher})
    return out


def pareto_frontier(points: list[tuple[Any, float, float]]) -> list[int]:
    """Indices of the (item, cost, value) points no other point beats on both (lower cost, higher value), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][2]))
    best, keep = -math.inf, []
    for i in order:
        if points[i][2] > best:
            keep.append(i)
            best = points[i][2]
    return keep


def host_line(report: dict[str, Any]) -> str:
    return facts_line(report.get("host") or {})


def facts_line(host: dict[str, Any]) -> str:
    """A device's own description of itself (the agent's ``device`` block) as one line."""
    cores = host.get("cores", host.get("logical_cores"))
    parts = [
        str(host.get("cpu_model") or "unknown CPU"),
        host.get("board"),
        f"{cores} cores" if cores is not None else None,
        host.get("os"),
        host.get("machine"),
        f"Python {host['python']}" if host.get("python") else None,
    ]
    return ", ".join(str(p) for p in parts if p)


def failure_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One note per failure; a device that failed every variant the same way gets one note, not one per variant."""
    notes: dict[tuple[Any, Any], list[str]] = {}
    for r in rows:
        if r.get("status") != "ok":
            notes.setdefault((r.get("device"), r.get("error")), []).append(r["name"])
    out = []
    for (device, error), names in notes.items():
        what = names[0] if len(names) == 1 else f"{len(names)} variants ({', '.join(names)})"
        if device and str(error).startswith(f"{device}: "):  # a device-level error already names the device
            out.append(f"{error} ({what})")
        else:
            out.append(f"{device + ': ' if device not in (None, 'local') else ''}{what}: {error}")
    return out


def figure_lines(report: dict[str, Any]) -> list[tuple[bool | None, str]]:
    """(met, text) per figure — met is None where no goal was set — then the goals that could not be measured;
    a report written before goals existed shows its acceptance checks."""
    out: list[tuple[bool | None, str]] = []
    for f in report.get("figures") or []:
        goal = f" (goal {f['goal']} {f['target']})" if f.get("goal") else ""
        out.append((f.get("met"), f"{f.get('name', '?')}: {f.get('text', f.get('value'))}{goal}"))
    for g in report.get("goals") or []:
        if g.get("value") is None:
            out.append((False, f"{g.get('figure', '?')}: {g.get('text')} (goal {g.get('goal')} {g.get('target')})"))
    out += [check_line(c) for c in report.get("checks") or []]
    return out


def check_line(check: dict[str, Any]) -> tuple[bool, str]:
    """(passed, 'name: value (target: ...)') for one acceptance check."""
    text = str(check.get("name", "check"))
    value, target = check.get("value"), check.get("target")
    if value is not None:
        text += f": {value}"
    if target is not None:
        text += f" (target: {target})"
    return bool(check.get("passed")), text


def stage_time(stage: dict[str, Any]) -> str:
    if stage.get("status") == "disabled":
        return "disabled"
    t = fmt_seconds(stage.get("seconds"))
    return f"{t} (cached: an earlier run's time)" if stage.get("cached") else t


def goal_mark(met: bool | None) -> str:
    """Plain words, not emoji: a report must read the same without an emoji font."""
    return "" if met is None else "met" if met else "MISSED"


def measurement_line(report: dict[str, Any]) -> str:
    """How the numbers were taken: threads, warm-up and timed runs per variant, test-set size."""
    parts = []
    if report.get("threads") is not None:
        parts.append(f"{report['threads']} thread(s)")
    if report.get("warmup") is not None:
        parts.append(f"{report['warmup']} warm-up runs")
    if report.get("runs") is not None:
        parts.append(f"{report['runs']} timed runs at batch 1 per variant (latency: p50 in the plot)")
    if report.get("n_test") is not None:
        parts.append(f"accuracy on {report['n_test']} test samples")
    return ", ".join(parts)


def versions_line(report: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in (report.get("versions") or {}).items())


def frontier_lines(report: dict[str, Any]) -> list[str]:
    """'device: a → b → c' per device: the variants no other beats on both accuracy and p50 latency."""
    return [f"{d}: {' → '.join(names)}" for d, names in (report.get("pareto_frontier") or {}).items() if names]
