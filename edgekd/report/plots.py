"""Accuracy-vs-latency and accuracy-vs-size scatter plots, rendered to PNG bytes.

We build ``matplotlib.figure.Figure`` objects with an explicit Agg canvas instead of using pyplot: no display is
needed, the process-wide backend is left alone, and nothing leaks between calls (pyplot keeps figures alive).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogFormatter

from edgekd.formats.registry import FILE_FORMATS
from edgekd.report.fmt import (
    DISTRIBUTION_PLOT,
    PLOT_FILES,
    QUALITY,
    as_float,
    device_groups,
    is_failed,
    pareto_frontier,
    plot_files,
    quality,
)

MARKERS = {f.label: f.marker for f in FILE_FORMATS.values()}
OTHER_MARKER = "D"
COLORS = {f.label: f.color for f in FILE_FORMATS.values()}
OTHER_COLOR = "#937860"
TEACHER_COLOR = "#c44e52"
DPI = 110
LOG_SPREAD = 20.0  # switch to a log axis once the largest x is this many times the smallest

# PNG "Software" chunk carries the matplotlib version; dropping it keeps identical reports byte-identical.
PNG_METADATA = {"Software": None}


def _is_teacher(v: dict[str, Any]) -> bool:
    return v.get("role") == "teacher"


ACCURACY = QUALITY["image-classification"]


def _points(
    variants: list[dict[str, Any]], x_of: Callable[[dict[str, Any]], float | None], quality=ACCURACY
) -> list[tuple]:
    """(variant, x, quality) for every ok variant that has both numbers and a positive x (log axes need it);
    quality is the task's measure (accuracy %, or the text embeddings' Spearman against the teacher)."""
    key, _label, scale = quality
    out = []
    for v in variants:
        if is_failed(v):
            continue
        acc, x = as_float(v.get(key)), x_of(v)
        if acc is None or x is None or x <= 0:
            continue
        out.append((v, x, acc * scale))
    return out


def _latency_p50(v: dict[str, Any]) -> float | None:
    """The median: one slow run (a page fault, a scheduler hiccup) moves the mean of a 0.1 ms model by 3x."""
    lat = v.get("latency_ms")
    return as_float(lat.get("p50")) if isinstance(lat, dict) else None


def _size_kb(v: dict[str, Any]) -> float | None:
    size = as_float(v.get("size_bytes"))
    return None if size is None else size / 1024.0


def _tail_bar(v: dict[str, Any], p50: float) -> float:
    """How far p90 lies right of p50: the tail is what edge users feel."""
    p90 = as_float((v.get("latency_ms") or {}).get("p90"))
    return max(p90 - p50, 0.0) if p90 is not None else 0.0


def _label(v: dict[str, Any]) -> str:
    """The variant and where it was measured: two devices' points must not be mistaken for one another."""
    name = str(v.get("name", "?"))
    return f"{name} @ {v['device']}" if v.get("device") else name


def _frontier_line(ax: Any, points: list[tuple]) -> bool:
    """Per device, a dashed step line through the variants on the Pareto frontier; True when one was drawn."""
    drawn = False
    for device in dict.fromkeys(v.get("device") for v, _, _ in points):
        mine = [p for p in points if p[0].get("device") == device]
        front = [mine[i] for i in pareto_frontier(mine)]
        if len(front) < 2:
            continue
        ax.plot([x for _, x, _ in front], [a for _, _, a in front], drawstyle="steps-post", color="#555555",
                linestyle="--", linewidth=1.0, alpha=0.7, zorder=2)  # fmt: skip
        drawn = True
    return drawn


def _scatter(
    points: list[tuple], xlabel: str, title: str, log_x: bool | None, latency: bool, quality=ACCURACY
) -> Figure:
    fig = Figure(figsize=(7.5, 5.0), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(quality[1])
    ax.grid(True, which="both", alpha=0.3)

    if not points:
        # Still emit an image: the markdown/HTML reference it, and "nothing to plot" is itself informative.
        ax.text(0.5, 0.5, f"no successful variant with {quality[0]} to plot", ha="center", va="center",
                transform=ax.transAxes, color="gray")  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
        return fig

    xs = [x for _, x, _ in points]
    if log_x is None:
        log_x = max(xs) / min(xs) >= LOG_SPREAD
    if log_x:
        ax.set_xscale("log")
        # Plain numbers ("0.5", "20") instead of 10^x: these axes span only a few decades.
        ax.xaxis.set_major_formatter(FuncFormatter(lambda val, _pos: f"{val:g}"))
        # Within one decade matplotlib labels minor ticks; keep those plain too (default is 2x10^2 notation).
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
    # Room on every side: labels may go left, right, above or below their point.
    ax.margins(x=0.25, y=0.2)

    for v, x, acc in points:
        fmt = v.get("format")
        teacher = _is_teacher(v)
        color = TEACHER_COLOR if teacher else COLORS.get(fmt, OTHER_COLOR)
        if latency and (tail := _tail_bar(v, x)):
            ax.errorbar([x], [acc], xerr=[[0.0], [tail]], fmt="none", ecolor=color, alpha=0.6, capsize=3)
        ax.scatter([x], [acc], marker=MARKERS.get(fmt, OTHER_MARKER), s=140 if teacher else 60, color=color,
                   edgecolors="black" if teacher else "none", linewidths=1.5, zorder=3)  # fmt: skip

    teacher_acc = [acc for v, _, acc in points if _is_teacher(v)]
    if teacher_acc:
        # Reference line: how far each student sits below the teacher is the number people look for.
        ax.axhline(teacher_acc[0], color=TEACHER_COLOR, linestyle="--", linewidth=0.8, alpha=0.6)
    frontier = latency and _frontier_line(ax, points)
    _legend(ax, points, frontier)
    fig.tight_layout()
    place_labels(fig, ax, points)
    return fig


# Where a label may sit relative to its point, in typographic points: nearest first; far ones get a leader line.
_OFFSETS = sorted(((dx, dy) for dx in (6, -6, 35, -35, 80, -80) for dy in range(-130, 131, 9)),
                  key=lambda o: (abs(o[0]) > 6) * 25 + abs(o[1]) + abs(o[0]) / 4)  # fmt: skip
_TEXT = {"fontsize": 7.5, "va": "center", "annotation_clip": False}


def place_labels(fig: Figure, ax: Any, points: list[tuple]) -> list[Any]:
    """Name every point with a label that overlaps no other label, no point and not the legend (greedy: teacher
    first, then left to right, each label takes the nearest free spot; one far from its point gets a leader line).
    Returns the annotations."""
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0
    centers = [ax.transData.transform((x, acc)) for _, x, acc in points]
    taken = [(cx - 6, cy - 6, cx + 6, cy + 6) for cx, cy in centers]  # each point's marker, then legend and labels
    legend = ax.get_legend()
    if legend is not None:
        box = legend.get_window_extent(renderer)
        taken.append((box.x0, box.y0, box.x1, box.y1))
    inside = ax.get_window_extent(renderer)
    placed = []
    for i in sorted(range(len(points)), key=lambda i: (not _is_teacher(points[i][0]), points[i][1])):
        v, x, acc = points[i]
        teacher = _is_teacher(v)
        style = {"fontweight": "bold" if teacher else "normal", "color": TEACHER_COLOR if teacher else "black"}
        probe = ax.text(0, 0, _label(v), fontsize=_TEXT["fontsize"], **style)
        size = probe.get_window_extent(renderer)
        probe.remove()
        w, h = size.width + 2, size.height + 2  # a pixel of air around each label
        cx, cy = centers[i]
        best = None
        for dx, dy in _OFFSETS:
            x0 = cx + dx * scale - (0 if dx > 0 else w)
            b = (x0, cy + dy * scale - h / 2, x0 + w, cy + dy * scale + h / 2)
            score = sum(_overlap(b, t) for j, t in enumerate(taken) if j != i)
            if _overlap(b, (inside.x0, inside.y0, inside.x1, inside.y1)) < w * h:  # partly outside the axes
                score += w * h
            if best is None or score < best[0]:
                best = (score, dx, dy, b)
            if score == 0:
                break
        _, dx, dy, b = best
        far = abs(dx) > 6 or abs(dy) > 20
        leader = {"arrowprops": {"arrowstyle": "-", "color": "#999999", "lw": 0.6}} if far else {}
        ann = ax.annotate(_label(v), (x, acc), xytext=(dx, dy), textcoords="offset points",
                          ha="left" if dx > 0 else "right", **_TEXT, **style, **leader)  # fmt: skip
        taken.append(b)
        placed.append(ann)
    return placed


def _overlap(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _legend(ax: Any, points: list[tuple], frontier: bool = False) -> None:
    formats = sorted({str(v.get("format")) for v, _, _ in points})
    handles = [
        Line2D([], [], linestyle="none", marker=MARKERS.get(f, OTHER_MARKER), color=COLORS.get(f, OTHER_COLOR), label=f)
        for f in formats
    ]
    if any(_is_teacher(v) for v, _, _ in points):
        handles.append(Line2D([], [], linestyle="none", marker="o", color=TEACHER_COLOR, markeredgecolor="black",
                              markersize=9, label="teacher"))  # fmt: skip
    if frontier:
        handles.append(Line2D([], [], color="#555555", linestyle="--", label="Pareto frontier"))
    ax.legend(handles=handles, loc="lower right", fontsize=7.5, framealpha=0.8)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buf.getvalue()


def accuracy_vs_latency_figure(variants: list[dict[str, Any]], quality=ACCURACY) -> Figure:
    points = _points(variants, _latency_p50, quality)
    title = PLOT_FILES["accuracy_vs_latency.png"].replace("Accuracy", quality[0].capitalize())
    return _scatter(points, "latency p50 (ms, batch 1); bar: to p90", title, None, True, quality)


def accuracy_vs_latency_png(variants: list[dict[str, Any]], quality=ACCURACY) -> bytes:
    """Accuracy % (or the task's quality) against p50 latency (ms), bars reach p90, dashed: the Pareto frontier per
    device; log x when latencies differ by >= 20x."""
    return _png(accuracy_vs_latency_figure(variants, quality))


def accuracy_vs_size_png(variants: list[dict[str, Any]], quality=ACCURACY) -> bytes:
    """Accuracy % (or the task's quality) against file size (KB) on a log axis: fp32 -> int8 is a 4x step."""
    points = _points(variants, _size_kb, quality)
    title = PLOT_FILES["accuracy_vs_size.png"].replace("Accuracy", quality[0].capitalize())
    return _png(_scatter(points, "model size (KB, log scale)", title, True, False, quality))


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


PLOTS: dict[str, Callable[..., bytes]] = {
    "accuracy_vs_latency.png": accuracy_vs_latency_png,
    "accuracy_vs_size.png": accuracy_vs_size_png,
}


def render_plots(report: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes keyed by file name (the keys of :func:`edgekd.report.fmt.plot_files`)."""
    variants = list(report.get("variants") or [])
    images = {name: fn(variants, quality(report)) for name, fn in PLOTS.items()}
    if "latency_distribution.png" in plot_files(report):
        images["latency_distribution.png"] = latency_distribution_png(report)
    return images
