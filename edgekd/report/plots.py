"""Accuracy-vs-latency and accuracy-vs-size scatter plots, rendered to PNG bytes.

We build ``matplotlib.figure.Figure`` objects with an explicit Agg canvas instead of using pyplot: no display is
needed, the process-wide backend is left alone, and nothing leaks between calls (pyplot keeps figures alive).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogFormatter

from edgekd.report.fmt import DISTRIBUTION_PLOT, PLOT_FILES, as_float, device_groups, is_failed, plot_files

MARKERS = {"pytorch": "o", "onnx": "s", "tflite": "^"}
OTHER_MARKER = "D"
COLORS = {"pytorch": "#4c72b0", "onnx": "#55a868", "tflite": "#8172b2"}
OTHER_COLOR = "#937860"
TEACHER_COLOR = "#c44e52"
DPI = 110
LOG_SPREAD = 20.0  # switch to a log axis once the largest x is this many times the smallest

# PNG "Software" chunk carries the matplotlib version; dropping it keeps identical reports byte-identical.
PNG_METADATA = {"Software": None}


def _is_teacher(v: dict[str, Any]) -> bool:
    return v.get("role") == "teacher"


def _points(variants: list[dict[str, Any]], x_of: Callable[[dict[str, Any]], float | None]) -> list[tuple]:
    """(variant, x, accuracy %) for every ok variant that has both numbers and a positive x (log axes need it)."""
    out = []
    for v in variants:
        if is_failed(v):
            continue
        acc, x = as_float(v.get("accuracy")), x_of(v)
        if acc is None or x is None or x <= 0:
            continue
        out.append((v, x, acc * 100.0))
    return out


def _latency_mean(v: dict[str, Any]) -> float | None:
    lat = v.get("latency_ms")
    return as_float(lat.get("mean")) if isinstance(lat, dict) else None


def _size_kb(v: dict[str, Any]) -> float | None:
    size = as_float(v.get("size_bytes"))
    return None if size is None else size / 1024.0


def _latency_bar(v: dict[str, Any], mean: float) -> tuple[float, float]:
    """Asymmetric x error (left, right) spanning p50..p90 around the mean; the tail is what edge users feel."""
    lat = v.get("latency_ms") or {}
    p50, p90 = as_float(lat.get("p50")), as_float(lat.get("p90"))
    lo = min(p50, mean) if p50 is not None else mean
    hi = max(p90, mean) if p90 is not None else mean
    return mean - lo, hi - mean


def _scatter(points: list[tuple], xlabel: str, title: str, log_x: bool | None, with_bars: bool) -> bytes:
    fig = Figure(figsize=(7.0, 4.5), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)

    if not points:
        # Still emit an image: the markdown/HTML reference it, and "nothing to plot" is itself informative.
        ax.text(
            0.5,
            0.5,
            "no successful variant with accuracy to plot",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="gray",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return _png(fig)

    xs = [x for _, x, _ in points]
    if log_x is None:
        log_x = max(xs) / min(xs) >= LOG_SPREAD
    if log_x:
        ax.set_xscale("log")
        # Plain numbers ("0.5", "20") instead of 10^x: these axes span only a few decades.
        ax.xaxis.set_major_formatter(FuncFormatter(lambda val, _pos: f"{val:g}"))
        # Within one decade matplotlib labels minor ticks; keep those plain too (default is 2x10^2 notation).
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
    # Room on the right and top so the name of the largest / most accurate point is not clipped.
    ax.margins(x=0.15, y=0.12)

    below = _labels_below(points, log_x)
    for i, (v, x, acc) in enumerate(points):
        fmt = v.get("format")
        teacher = _is_teacher(v)
        color = TEACHER_COLOR if teacher else COLORS.get(fmt, OTHER_COLOR)
        marker = MARKERS.get(fmt, OTHER_MARKER)
        if with_bars:
            left, right = _latency_bar(v, x)
            if left or right:
                ax.errorbar([x], [acc], xerr=[[left], [right]], fmt="none", ecolor=color, alpha=0.6, capsize=3)
        ax.scatter(
            [x],
            [acc],
            marker=marker,
            s=140 if teacher else 60,
            color=color,
            edgecolors="black" if teacher else "none",
            linewidths=1.5,
            zorder=3,
        )
        ax.annotate(
            str(v.get("name", "?")),
            (x, acc),
            xytext=(6, -11 if below[i] else 5),
            textcoords="offset points",
            fontsize=8,
            fontweight="bold" if teacher else "normal",
            color=TEACHER_COLOR if teacher else "black",
        )

    teacher_acc = [acc for v, _, acc in points if _is_teacher(v)]
    if teacher_acc:
        # Reference line: how far each student sits below the teacher is the number people look for.
        ax.axhline(teacher_acc[0], color=TEACHER_COLOR, linestyle="--", linewidth=0.8, alpha=0.6)

    _legend(ax, points)
    fig.tight_layout()
    return _png(fig)


def _labels_below(points: list[tuple], log_x: bool) -> list[bool]:
    """Per point: put its label below instead of above, when a point just above it would collide with the label.

    Close pairs are common (fp32 and fp16 of one student differ by a hair); flipping the lower label is enough.
    """
    xs = [math.log10(x) if log_x else x for _, x, _ in points]
    ys = [acc for _, _, acc in points]
    x_span = (max(xs) - min(xs)) or 1.0
    y_span = (max(ys) - min(ys)) or 1.0
    out = []
    for i in range(len(points)):
        out.append(
            any(
                j != i
                and abs(xs[j] - xs[i]) / x_span < 0.15
                and (0 < ys[j] - ys[i] < 0.08 * y_span or (ys[j] == ys[i] and j < i))
                for j in range(len(points))
            )
        )
    return out


def _legend(ax: Any, points: list[tuple]) -> None:
    formats = sorted({str(v.get("format")) for v, _, _ in points})
    handles = [
        Line2D([], [], linestyle="none", marker=MARKERS.get(f, OTHER_MARKER), color=COLORS.get(f, OTHER_COLOR), label=f)
        for f in formats
    ]
    if any(_is_teacher(v) for v, _, _ in points):
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="o",
                color=TEACHER_COLOR,
                markeredgecolor="black",
                markersize=9,
                label="teacher",
            )
        )
    ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.8)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buf.getvalue()


def accuracy_vs_latency_png(variants: list[dict[str, Any]]) -> bytes:
    """Accuracy % against mean latency (ms); bars span p50..p90; log x when latencies differ by >= 20x."""
    points = _points(variants, _latency_mean)
    title = PLOT_FILES["accuracy_vs_latency.png"]
    return _scatter(points, "latency mean (ms), bars p50-p90", title, None, with_bars=True)


def accuracy_vs_size_png(variants: list[dict[str, Any]]) -> bytes:
    """Accuracy % against file size (KB) on a log axis: fp32 -> int8 is a 4x step, best read in ratios."""
    points = _points(variants, _size_kb)
    return _scatter(points, "model size (KB, log scale)", PLOT_FILES["accuracy_vs_size.png"], True, with_bars=False)


def latency_distribution_png(report: dict[str, Any]) -> bytes:
    """Box plot of every timed run, one box per variant and one panel per device (each with its own scale).

    Boxes span p25..p75 with the median marked, whiskers reach 1.5 IQR, dots beyond are the outliers a mean hides.
    """
    panels = [(d, [v for v in vs if v.get("latencies_ms") and not is_failed(v)]) for d, vs in device_groups(report)]
    panels = [(d, vs) for d, vs in panels if vs]
    height = sum(0.9 + 0.32 * len(vs) for _, vs in panels)
    fig = Figure(figsize=(7.0, max(height, 2.5)), dpi=DPI)
    FigureCanvasAgg(fig)
    ratios = [len(vs) + 2 for _, vs in panels]
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": ratios})[:, 0]
    for ax, (device, vs) in zip(axes, panels, strict=True):
        data = [[float(t) for t in v["latencies_ms"]] for v in vs]
        ax.boxplot(data, vert=False, widths=0.6, flierprops={"markersize": 2, "alpha": 0.5})
        ax.set_yticks(range(1, len(vs) + 1), [str(v.get("name", "?")) for v in vs], fontsize=8)
        ax.invert_yaxis()  # report order, top to bottom
        if max(max(d) for d in data) / max(min(min(d) for d in data), 1e-9) >= LOG_SPREAD:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda val, _pos: f"{val:g}"))
        ax.grid(True, axis="x", which="both", alpha=0.3)
        ax.set_title(device or DISTRIBUTION_PLOT["latency_distribution.png"], fontsize=9)
    axes[-1].set_xlabel("latency per run (ms)")
    fig.tight_layout()
    return _png(fig)


PLOTS: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {
    "accuracy_vs_latency.png": accuracy_vs_latency_png,
    "accuracy_vs_size.png": accuracy_vs_size_png,
}


def render_plots(report: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes keyed by file name (the keys of :func:`edgekd.report.fmt.plot_files`)."""
    variants = list(report.get("variants") or [])
    images = {name: fn(variants) for name, fn in PLOTS.items()}
    if "latency_distribution.png" in plot_files(report):
        images["latency_distribution.png"] = latency_distribution_png(report)
    return images
