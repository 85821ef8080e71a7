"""The real CLI through every stage on a tiny pipeline, with the real onnxruntime and LiteRT interpreter."""

import json
import subprocess
import sys
import time

import pytest

from edgekd.report import REQUIRED_VARIANT_KEYS

pytestmark = pytest.mark.integration

REQUIRED = set(REQUIRED_VARIANT_KEYS)


def _run(pipe, out, *extra):
    return subprocess.run(
        [sys.executable, "-m", "edgekd", "run", str(pipe), "-o", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("converter", ["litert-torch", "onnx2tf"])
def test_tiny_pipeline_end_to_end(write_pipeline, tmp_path, tiny_doc, converter):
    tiny_doc["stages"][3]["converter"] = converter
    pipe = write_pipeline(tiny_doc)
    t0 = time.perf_counter()
    proc = _run(pipe, tmp_path / "run")
    cold = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    report_dir = tmp_path / "run" / "06_report"
    report = json.loads((report_dir / "report.json").read_text())
    for name in ("report.md", "report.html", "accuracy_vs_latency.png", "accuracy_vs_size.png"):
        assert (report_dir / name).stat().st_size > 0
    rows = {r["name"]: r for r in report["variants"]}
    expected = {
        "teacher/pytorch",
        "student/pytorch",
        "baseline/pytorch",
        "student/onnx-fp32",
        "student/onnx-int8",
        "student/tflite-fp32",
        "student/tflite-fp16",
        "student/tflite-int8",
    }
    assert set(rows) == expected
    for r in rows.values():
        assert set(r) >= REQUIRED, r["name"]
        assert r["status"] == "ok", (r["name"], r.get("error"))
        assert {"mean", "p50", "p90", "p99"} <= set(r["latency_ms"])
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["teacher_agreement"] <= 1
    assert rows["teacher/pytorch"]["teacher_agreement"] == 1.0
    # precision as found in the file, not as asked for
    assert rows["student/tflite-int8"]["precision"] == "int8"
    assert rows["student/tflite-fp16"]["precision"] == "fp16"
    assert rows["student/onnx-int8"]["precision"] == "int8"
    assert rows["student/tflite-fp32"]["max_abs_diff_vs_torch"] <= 1e-4
    assert rows["student/onnx-fp32"]["max_abs_diff_vs_torch"] <= 1e-4
    _html_answers_the_questions(report_dir, report)
    # a second run with nothing changed reuses every stage
    t0 = time.perf_counter()
    again = _run(pipe, tmp_path / "run")
    warm = time.perf_counter() - t0
    assert again.returncode == 0, again.stderr[-2000:]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert {s["status"] for s in run["stages"]} == {"cached"}
    assert warm < cold


def _html_answers_the_questions(report_dir, report):
    """report.html, parsed: stage times of every stage before the report, the resolved config, versions, how the
    latency was measured, and what int8 cost next to each row."""
    from html.parser import HTMLParser

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.headings, self.cells, self.pre, self._tag = [], [], "", None

        def handle_starttag(self, tag, attrs):
            self._tag = tag

        def handle_data(self, data):
            if self._tag in ("h2", "h3"):
                self.headings.append(data.strip())
            elif self._tag in ("td", "th"):
                self.cells.append(data.strip())
            elif self._tag == "pre":
                self.pre += data

    page = Page()
    page.feed((report_dir / "report.html").read_text())
    assert {"Results", "Stage times", "Resolved config", "Pareto frontier (accuracy vs p50 latency)"} <= set(
        page.headings
    )
    assert [s["name"] for s in report["stages"]] == ["data", "teacher", "distill", "export_onnx", "convert_tflite",
                                                     "benchmark"]  # fmt: skip
    assert all(s["status"] == "ran" and s["seconds"] > 0 for s in report["stages"])
    for stage in report["stages"]:
        assert stage["name"] in page.cells
    assert "Δ acc vs fp32 (points)" in page.cells and "Δ acc vs teacher (points)" in page.cells
    assert "name: tiny" in page.pre and "stage: distill" in page.pre  # the config, defaults filled in
    text = (report_dir / "report.html").read_text()
    assert f"torch {report['versions']['torch']}" in text and "onnxruntime" in report["versions"]
    assert f"{report['runs']} timed runs" in text and f"accuracy on {report['n_test']} test samples" in text
    assert "✅" not in text and "❌" not in text  # plain words: no emoji font needed
