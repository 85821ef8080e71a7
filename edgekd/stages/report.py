"""report: turn the benchmark rows into report.json, report.md and report.html with plots, plus target checks."""

from __future__ import annotations

import json
import time

from pydantic import Field

from edgekd import __version__
from edgekd.artifacts import Report
from edgekd.config import StageConfig
from edgekd.distill.describe import method_line, method_summary
from edgekd.report.fmt import failure_notes
from edgekd.stages.base import register_stage, require


class ReportConfig(StageConfig):
    checks: bool = Field(True, description="evaluate the built-in targets (accuracy, size, latency, fidelity)")
    title: str | None = None


def _inputs(cfg: ReportConfig, store) -> list[str]:
    distilled = [n for n, a in store.items() if a.kind == "torch" and "method" in a.meta]  # how each was made
    sparse = [n for n, a in store.items() if a.kind == "torch" and (a.meta.get("pruning") or {}).get("sparsity")]
    return require(store, cfg.id, "benchmark", *distilled, *sparse)


def _find(rows: list[dict], **want) -> dict | None:
    return next((r for r in rows if r.get("status") == "ok" and all(r.get(k) == v for k, v in want.items())), None)


def target_checks(rows: list[dict]) -> list[dict]:
    """The foundation's targets, computed from measured rows; a check whose rows are missing is left out."""
    checks: list[dict] = []

    def add(name: str, value: float, target: str, passed: bool, fmt: str = "{:.4g}") -> None:
        checks.append({"name": name, "value": fmt.format(value), "target": target, "passed": bool(passed)})

    teacher = _find(rows, role="teacher", format="pytorch")
    student = _find(rows, role="student", format="pytorch")
    baseline = _find(rows, role="baseline", format="pytorch")
    int8 = _find(rows, role="student", format="tflite", precision="int8")
    tfl32 = _find(rows, role="student", format="tflite", precision="fp32")
    if teacher and int8:
        add(
            "student int8 TFLite accuracy − teacher accuracy (points)",
            100 * (int8["accuracy"] - teacher["accuracy"]),
            "≥ −1.5",
            int8["accuracy"] >= teacher["accuracy"] - 0.015,
            "{:+.2f}",
        )
        add(
            "teacher PyTorch latency / student int8 TFLite latency",
            teacher["latency_ms"]["mean"] / int8["latency_ms"]["mean"],
            "≥ 5",
            int8["latency_ms"]["mean"] * 5 <= teacher["latency_ms"]["mean"],
            "{:.1f}×",
        )
    if teacher and student and teacher.get("params") and student.get("params"):
        ratio = teacher["params"] / student["params"]
        add("teacher params / student params", ratio, "≥ 8", ratio >= 8, "{:.1f}×")
    if student and baseline:
        add(
            "distilled − scratch baseline accuracy (points, this seed)",
            100 * (student["accuracy"] - baseline["accuracy"]),
            "≥ 0",
            student["accuracy"] >= baseline["accuracy"],
            "{:+.2f}",
        )
    for r in rows:
        if r.get("status") != "ok":
            continue
        if r["precision"] == "fp32" and r.get("max_abs_diff_vs_torch") is not None:
            add(
                f"{r['name']}: max |Δlogit| vs PyTorch",
                r["max_abs_diff_vs_torch"],
                "≤ 1e-4",
                r["max_abs_diff_vs_torch"] <= 1e-4,
                "{:.2e}",
            )
        if r["precision"] == "int8" and r.get("agreement_vs_fp32") is not None:
            add(
                f"{r['name']}: top-1 agreement with fp32",
                100 * r["agreement_vs_fp32"],
                "≥ 98 %",
                r["agreement_vs_fp32"] >= 0.98,
                "{:.2f} %",
            )
    if int8 and tfl32:
        ratio = int8["size_bytes"] / tfl32["size_bytes"]
        add("int8 TFLite size / fp32 TFLite size", ratio, "≤ 0.35", ratio <= 0.35, "{:.3f}")
    return checks


def _one_device(rows: list[dict]) -> list[dict]:
    """The rows the targets compare: those measured where the teacher was, never a ratio across two devices."""
    where = next((r.get("device") for r in rows if r.get("role") == "teacher"), None)
    return [r for r in rows if r.get("device") in (where, None)]


@register_stage("report", ReportConfig, _inputs, ("matplotlib",))
def run_report(cfg: ReportConfig, ctx, inputs) -> list[Report]:
    """Write the report files; report.json is written last."""
    from edgekd.report import write_report

    bench = json.loads(inputs["benchmark"].path.read_text())
    rows = bench["rows"]
    notes = failure_notes(rows) + list(bench.get("notes") or [])
    distillation = [method_summary(n, a.meta) for n, a in inputs.items() if a.kind == "torch" and "method" in a.meta]
    notes += [method_line(d) for d in distillation]
    notes += [f"{n}: unstructured pruning ({a.meta['pruning']['sparsity']:.0%} of conv/linear weights are zero) does "
              "not speed up dense runtimes: onnxruntime and LiteRT run every zero" for n, a in inputs.items()
              if a.kind == "torch" and (a.meta.get("pruning") or {}).get("sparsity")]  # fmt: skip
    if any(r.get("precision", "").startswith("dynamic") for r in rows):
        notes.append("dynamic-range files hold int8 weights but compute in float: they are not int8 models")
    report = {
        "pipeline": cfg.title or ctx.pipeline.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "edgekd_version": __version__,
        "host": bench.get("host") or {},
        "threads": bench["threads"],
        "n_test": bench.get("n_test"),
        "variants": rows,
        "devices": bench.get("devices") or {},
        "checks": target_checks(_one_device(rows)) if cfg.checks else [],
        "notes": notes,
        "distillation": distillation,
        "stages": [],
    }
    paths = write_report(report, ctx.out_dir)
    return [Report("report", paths["json"], {"files": sorted(p.name for p in paths.values())})]
