"""Report writer: files, escaping, failed variants, round-trip of report.json."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from edgekd.report import REQUIRED_VARIANT_KEYS, results_table, to_markdown, write_report
from edgekd.report.fmt import fmt_count, fmt_kb, fmt_latency, fmt_ms, fmt_pct
from edgekd.report.goals import Goals, check_goals, compute_figures, goal_line

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NASTY_ERROR = '[bold]boom[/bold] <script>alert("x")</script> & | pipe, then a long tail ' + "x" * 200
OUTPUT_NAMES = {"report.json", "report.md", "report.html", "accuracy_vs_latency.png", "accuracy_vs_size.png"}


def _variant(name: str, role: str, fmt: str, precision: str, size: int, acc: float, mean: float) -> dict:
    return {
        "name": name,
        "role": role,
        "format": fmt,
        "precision": precision,
        "runtime": {"pytorch": "torch", "onnx": "onnxruntime", "tflite": "litert"}[fmt],
        "path": f"runs/x/{name}",
        "size_bytes": size,
        "params": 1_234_567,
        "macs": 56_000_000,
        "accuracy": acc,
        "teacher_agreement": None if role == "teacher" else acc + 0.01,
        "latency_ms": {
            "mean": mean,
            "std": mean / 10,
            "p50": mean * 0.95,
            "p90": mean * 1.2,
            "p99": mean * 1.5,
            "min": mean * 0.8,
            "max": mean * 2,
        },
        "throughput_ips": 1000.0 / mean,
        "peak_rss_mb": 123.4,
        "load_time_ms": 5.0,
        "status": "ok",
        "error": None,
    }


def _failed(name: str) -> dict:
    return {
        "name": name,
        "role": "student",
        "format": "tflite",
        "precision": "int8",
        "runtime": "litert",
        "path": None,
        "size_bytes": None,
        "params": None,
        "macs": None,
        "accuracy": None,
        "teacher_agreement": None,
        "latency_ms": None,
        "throughput_ips": None,
        "peak_rss_mb": None,
        "load_time_ms": None,
        "status": "failed",
        "error": NASTY_ERROR,
    }


@pytest.fixture
def report() -> dict:
    return {
        "pipeline": "mobile_vision",
        "created": "2026-11-23T15:00:00Z",
        "edgekd_version": "0.1.0",
        "host": {"cpu_model": "Test CPU", "cores": 2, "os": "Linux", "machine": "x86_64", "python": "3.11.7"},
        "threads": 1,
        "variants": [
            _variant("teacher", "teacher", "pytorch", "fp32", 45_000_000, 0.93, 40.0),
            _variant("student-onnx-fp32", "student", "onnx", "fp32", 2_000_000, 0.91, 1.5),
            _variant("student-tflite-fp16", "student", "tflite", "fp16", 1_000_000, 0.909, 1.2),
            _variant("student-tflite-int8", "student", "tflite", "int8", 520_000, 0.905, 0.7),
            _failed("student-tflite-int8-full"),
        ],
        "checks": [
            {
                "name": "student int8 accuracy >= teacher - 1.5 pts",
                "value": "90.5",
                "target": ">= 91.5",
                "passed": False,
            },
            {"name": "int8 size <= 1 MB", "value": "508 KB", "target": "<= 1024 KB", "passed": True},
        ],
        "notes": ["onnx fp32 vs pytorch max abs logit diff 2.1e-6"],
        "stages": [
            {"name": "distill", "seconds": 12.3, "cached": False},
            {"name": "export", "seconds": 0.4, "cached": True},
        ],
    }


def _table_rows(md: str) -> list[str]:
    """Markdown table body rows of the Results table (header and separator dropped)."""
    section = md.split("## Results", 1)[1].split("\n## ", 1)[0].split("### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return rows[2:]


def test_write_report_files_and_roundtrip(report: dict, tmp_path: Path) -> None:
    original = copy.deepcopy(report)
    paths = write_report(report, tmp_path)

    assert report == original, "write_report must not mutate its input"
    assert {p.name for p in paths.values()} == OUTPUT_NAMES
    assert all(p.exists() and p.parent == tmp_path for p in paths.values())
    assert list(paths)[-1] == "json"  # written last: it is the completion marker

    data = json.loads((tmp_path / "report.json").read_text())
    assert data == original
    for v in data["variants"]:
        for key in REQUIRED_VARIANT_KEYS:
            assert key in v
        if v["status"] == "ok":
            assert {"mean", "p50", "p90", "p99"} <= set(v["latency_ms"])

    for name in ("accuracy_vs_latency.png", "accuracy_vs_size.png"):
        blob = (tmp_path / name).read_bytes()
        assert blob.startswith(PNG_MAGIC) and len(blob) > 1000
        assert b"Software" not in blob[:200]  # no version/timestamp chunk, keeps PNGs reproducible


def test_markdown_rows_and_escaping(report: dict, tmp_path: Path) -> None:
    write_report(report, tmp_path)
    md = (tmp_path / "report.md").read_text()
    rows = _table_rows(md)
    assert len(rows) == len(report["variants"])
    for v, row in zip(report["variants"], rows, strict=True):
        assert v["name"] in row
    n_cols = md.split("## Results", 1)[1].splitlines()[2].count(" | ") + 1
    assert all(row.replace("\\|", "").count(" | ") + 1 == n_cols for row in rows), "cell count must match header"
    assert "FAILED" in rows[-1]
    assert "<script>" not in md
    assert "**met**" in md and "**MISSED**" in md and "✅" not in md and "❌" not in md  # no emoji font needed
    assert "max abs logit diff" in md and "distill" in md
    assert "](accuracy_vs_latency.png)" in md and "](accuracy_vs_size.png)" in md
    assert to_markdown(report) == md


def test_html_escaped_and_self_contained(report: dict, tmp_path: Path) -> None:
    write_report(report, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page and "&amp;" in page and "&quot;x&quot;" in page
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == 2
    assert "http://" not in page and "https://" not in page
    for v in report["variants"]:
        assert v["name"] in page
    assert page.count("<tr class=") >= 2  # teacher + failed rows are marked


def test_all_failed_still_writes(report: dict, tmp_path: Path) -> None:
    report["variants"] = [_failed("a"), _failed("b")]
    report["checks"], report["stages"] = [], []
    paths = write_report(report, tmp_path / "nested" / "out")
    for p in paths.values():
        assert p.exists()
    assert (paths["accuracy_vs_size"]).read_bytes().startswith(PNG_MAGIC)
    assert len(_table_rows(paths["markdown"].read_text())) == 2


def test_write_is_deterministic(report: dict, tmp_path: Path) -> None:
    a, b = write_report(report, tmp_path / "a"), write_report(report, tmp_path / "b")
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key


def test_nan_becomes_null_in_json(report: dict, tmp_path: Path) -> None:
    report["variants"][1]["peak_rss_mb"] = float("nan")
    write_report(report, tmp_path)
    text = (tmp_path / "report.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["variants"][1]["peak_rss_mb"] is None


def test_results_table(report: dict) -> None:
    table = results_table(report)
    assert table.row_count == len(report["variants"])
    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(table)
    out = console.file.getvalue()
    assert "FAILED" in out and "[bold]boom[/bold]" in out  # error shown literally, not parsed as markup
    for v in report["variants"]:
        assert v["name"] in out


def test_formatting() -> None:
    assert fmt_kb(None) == "—" and fmt_kb(2048) == "2.0"
    assert fmt_count(1_234_567) == "1.23M" and fmt_count(999) == "999" and fmt_count(5.6e9) == "5.60G"
    assert fmt_pct(0.9123) == "91.23" and fmt_pct(float("nan")) == "—"
    assert fmt_ms(0.1234) == "0.123" and fmt_ms(12.34) == "12.3" and fmt_ms(1234) == "1,234"
    assert fmt_latency({"mean": 1, "p50": 1, "p90": 2, "p99": 3}) == "1.00 / 1.00 / 2.00 / 3.00"
    assert fmt_latency(None) == "—"


def test_plots_survive_sparse_data(report: dict, tmp_path: Path) -> None:
    # One plottable point, an ok variant without accuracy or latency, a teacher under another name.
    teacher = report["variants"][0]
    teacher["name"] = "resnet50"
    no_acc = dict(report["variants"][1], accuracy=None, latency_ms=None)
    report["variants"] = [teacher, no_acc, _failed("broken")]
    paths = write_report(report, tmp_path)
    assert paths["accuracy_vs_latency"].read_bytes().startswith(PNG_MAGIC)
    md = paths["markdown"].read_text()
    assert "**resnet50 (teacher)**" in md
    assert len(_table_rows(md)) == 3


def _rows() -> list[dict]:
    """A teacher, a scratch baseline and a distilled student with fp32/int8 TFLite files (the int8 one 2 points
    worse), all measured on this machine, plus the int8 file again on a board."""
    rows = [
        _variant("teacher/pytorch", "teacher", "pytorch", "fp32", 11_000_000, 0.99, 6.0),
        _variant("baseline/pytorch", "baseline", "pytorch", "fp32", 1_200_000, 0.97, 3.0),
        _variant("student/pytorch", "student", "pytorch", "fp32", 1_200_000, 0.96, 3.0),
        _variant("student/tflite-fp32", "student", "tflite", "fp32", 1_200_000, 0.96, 0.1),
        _variant("student/tflite-int8", "student", "tflite", "int8", 400_000, 0.94, 0.05),
        _variant("student/tflite-int8", "student", "tflite", "int8", 400_000, 0.94, 2.0) | {"device": "pi"},
    ]
    for r in rows[:5]:
        r["device"] = "local"
    rows[0]["params"], rows[3]["max_abs_diff_vs_torch"], rows[4]["agreement_vs_fp32"] = 2_800_000, 3e-6, 0.97
    return rows


def test_figures_are_reported_without_goals():
    figures = {(f["key"], f["subject"]): f for f in compute_figures(_rows(), "student/tflite-int8")}
    assert figures[("int8_acc_drop", "student/tflite")]["value"] == pytest.approx(2.0)
    assert figures[("teacher_acc_drop", "student/tflite-int8")]["value"] == pytest.approx(5.0)
    assert figures[("student_vs_baseline", "student")]["text"] == "-1.00 points"
    assert figures[("speedup", "student/tflite-int8")]["value"] == pytest.approx(6.0 / 0.05)  # p50 / p50, one device
    assert figures[("size_kb", "student/tflite-int8")]["value"] == pytest.approx(400_000 / 1024)
    assert figures[("int8_agreement", "student/tflite-int8")]["value"] == pytest.approx(97.0)
    assert figures[("params_ratio", "student/tflite-int8")]["value"] == pytest.approx(2_800_000 / 1_234_567)
    latency = [f for f in figures.values() if f["key"] == "latency_ms"]
    assert sorted(f["subject"] for f in latency) == ["student/tflite-int8@local", "student/tflite-int8@pi"]
    assert all("goal" not in f for f in figures.values())


def test_goals_are_checked_on_their_figures_and_a_missing_figure_is_missed():
    figures = compute_figures(_rows(), "student/tflite-int8")
    goals = Goals(int8_acc_drop_max=1.0, latency_ms_max=1.0, student_vs_baseline_min=-2.0, accuracy_min=90)
    results = check_goals(figures, goals)
    missed = sorted(g["figure"] for g in results if not g["met"])
    assert missed == ["student tflite fp32 accuracy − int8 accuracy", "student/tflite-int8 p50 latency on pi"]
    assert len(results) == 5  # latency: one per device
    assert goal_line(next(g for g in results if g["goal"] == "int8_acc_drop_max")) == (
        "goal int8_acc_drop_max (≤ 1) missed: student tflite fp32 accuracy − int8 accuracy = +2.00 points"
    )
    (nothing,) = check_goals(
        compute_figures(_rows(), "student/onnx-int8"), Goals(variant="student/onnx-int8", size_kb_max=500)
    )
    assert not nothing["met"] and nothing["value"] is None and "not measured" in nothing["text"]


def test_markdown_marks_goals_met_and_missed(report: dict, tmp_path: Path) -> None:
    report.pop("checks")
    report["figures"] = compute_figures(_rows(), "student/tflite-int8")
    report["goals"] = check_goals(report["figures"], Goals(int8_acc_drop_max=1.0, accuracy_min=90))
    md = to_markdown(report)
    assert "- **MISSED** student tflite fp32 accuracy − int8 accuracy: +2.00 points (goal int8_acc_drop_max ≤ 1)" in md
    assert "- **met** student/tflite-int8 test accuracy: 94.00 % (goal accuracy_min ≥ 90)" in md
    assert "- teacher params / student params: 2.3×" in md  # a figure without a goal: no mark


def test_report_stage_goals_are_validated():
    from edgekd.core.errors import ConfigError
    from edgekd.core.loader import validate_document
    from edgekd.stages.report import ReportConfig

    assert ReportConfig(stage="report", checks=False).figures is False  # the option's name before goals
    with pytest.raises(ValueError, match="goals are checked on the figures"):
        ReportConfig(stage="report", figures=False, goals={"size_kb_max": 500})
    with pytest.raises(ConfigError, match=r"goals\.int8_drop_max: unknown key; did you mean 'int8_acc_drop_max'"):
        validate_document({"stages": [{"stage": "report", "goals": {"int8_drop_max": 1}}]})


def _row(name: str, acc: float, p50: float, device: str = "local", role: str = "student") -> dict:
    fmt, _, precision = name.split("/")[1].partition("-")
    v = _variant(name, role, fmt, precision or "fp32", 1000, acc, p50)
    v["latency_ms"]["p50"], v["device"] = p50, device
    return v


def test_accuracy_deltas_vs_fp32_and_teacher():
    from edgekd.report.fmt import add_accuracy_deltas

    rows = [_row("teacher/pytorch", 0.99, 3.0, role="teacher"), _row("student/pytorch", 0.98, 1.0),
            _row("student/tflite-fp32", 0.98, 0.1), _row("student/tflite-int8", 0.975, 0.05),
            _row("student_qat/pytorch", 0.97, 1.0), _row("student_qat/tflite-int8", 0.972, 0.05),
            _row("student/tflite-int8", 0.95, 4.0, device="pi"), _failed("student/onnx-int8")]  # fmt: skip
    out = {(r["name"], r.get("device")): r for r in add_accuracy_deltas(rows)}
    assert out["teacher/pytorch", "local"]["acc_vs_teacher"] is None
    assert out["student/tflite-fp32", "local"]["acc_vs_fp32"] is None  # the reference itself
    assert out["student/tflite-int8", "local"]["acc_vs_fp32"] == pytest.approx(-0.5)
    assert out["student/tflite-int8", "local"]["acc_vs_teacher"] == pytest.approx(-1.5)
    assert out["student_qat/tflite-int8", "local"]["acc_vs_fp32"] == pytest.approx(0.2)  # no fp32 TFLite: PyTorch's
    assert out["student/tflite-int8", "pi"]["acc_vs_fp32"] is None  # no fp32 measured on the Pi
    assert out["student/onnx-int8", None]["acc_vs_fp32"] is None
    md = to_markdown({"pipeline": "x", "variants": list(out.values())})
    assert "| -0.50 | -1.50 |" in md and "Δ acc vs fp32 (points)" in md


def test_pareto_frontier_is_what_nothing_beats():
    from edgekd.report.fmt import pareto_frontier
    from edgekd.stages.report import frontier

    points = [("a", 1.0, 90.0), ("b", 2.0, 95.0), ("c", 3.0, 94.0), ("d", 0.5, 80.0), ("e", 2.0, 93.0)]
    assert [points[i][0] for i in pareto_frontier(points)] == ["d", "a", "b"]
    rows = [_row("teacher/pytorch", 0.99, 3.0, role="teacher"), _row("student/tflite-int8", 0.97, 0.05),
            _row("student/tflite-fp32", 0.96, 0.08), _row("student/tflite-int8", 0.97, 4.0, device="pi")]  # fmt: skip
    assert frontier(rows) == {"local": ["student/tflite-int8", "teacher/pytorch"], "pi": ["student/tflite-int8"]}


def test_plot_labels_never_overlap_and_name_the_device():
    """A crowded plot (fp32/fp16/int8 of four models within a hair of each other, two devices): every label is
    placed where it overlaps no other label, no other point and not the legend."""
    from edgekd.report.plots import accuracy_vs_latency_figure

    rows = [_row("teacher/pytorch", 0.994, 2.8, role="teacher")]
    for k, model in enumerate(["student", "student_pruned", "student_qat", "student_pruned_qat"]):
        for j, fmt in enumerate(["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-fp16", "tflite-int8"]):
            rows.append(_row(f"{model}/{fmt}", 0.99 - 0.003 * (k % 2), 0.05 + 0.004 * j + 0.002 * k))
    rows += [_row("student/tflite-int8", 0.99, 0.9, device="raspberry-pi-4")]
    fig = accuracy_vs_latency_figure(rows)
    fig.canvas.draw()  # annotations take their final place when drawn
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if "@" in t.get_text()]
    assert len(labels) == len(rows)
    assert all(t.get_text().endswith(("@ local", "@ raspberry-pi-4")) for t in labels)
    from matplotlib.text import Text

    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text alone, not its leader line
    clashes = [(labels[i].get_text(), labels[j].get_text()) for i in range(len(boxes)) for j in range(i)
               if boxes[i].overlaps(boxes[j])]  # fmt: skip
    assert clashes == []
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(b.overlaps(legend) for b in boxes)
    assert any(line.get_linestyle() == "--" and line.get_drawstyle() == "steps-post" for line in ax.lines)
