"""report: turn the benchmark rows into report.json, report.md and report.html with plots, figures and goals."""

from __future__ import annotations

import json
import platform
import time

from pydantic import AliasChoices, Field, model_validator

from edgekd import __version__
from edgekd.core.artifacts import Report
from edgekd.core.config import IMAGE, TEXT, StageConfig
from edgekd.core.stage import register_stage, require
from edgekd.distill.describe import method_line, method_summary
from edgekd.report.fmt import add_accuracy_deltas, failure_notes, pareto_frontier
from edgekd.report.goals import Goals, check_goals, compute_figures


class ReportConfig(StageConfig):
    # 'checks' is the name this option had before goals existed
    figures: bool = Field(
        True, validation_alias=AliasChoices("figures", "checks"), description="compute the comparison figures"
    )
    goals: Goals = Field(default_factory=Goals, description="targets the run must meet (edgekd run exits 1 if not)")
    title: str | None = Field(None, description="report title (default: the pipeline's name)")

    @model_validator(mode="after")
    def _goals_need_figures(self) -> ReportConfig:
        if self.goals.limits() and not self.figures:
            raise ValueError("goals are checked on the figures: remove 'figures: false' or the goals")
        return self


# what made and measured the files, as installed here (a device's own runtime version is in its rows)
LIBRARIES = ("torch", "numpy", "onnx", "onnxruntime", "ai-edge-litert", "litert-torch", "tensorflow", "onnx2tf",
             "torch-pruning", "torchao", "scikit-learn", "matplotlib")  # fmt: skip


def versions() -> dict[str, str]:
    """Python and the installed libraries above (the runner's own version lookup, absent ones left out)."""
    from edgekd.core.versions import library_versions

    found = {k: v for k, v in library_versions(LIBRARIES).items() if v != "absent"}
    return {"python": platform.python_version(), **found}


def frontier(rows: list[dict], key: str = "accuracy") -> dict[str, list[str]]:
    """Per device, the variants on the quality-vs-p50-latency Pareto frontier (none faster and better); quality is
    ``key``: accuracy, or the Spearman of a text student's similarities against the teacher's."""
    out: dict[str, list[str]] = {}
    for device in dict.fromkeys(r.get("device") or "local" for r in rows):
        points = [(r["name"], r["latency_ms"]["p50"], r[key]) for r in rows
                  if (r.get("device") or "local") == device and r.get("status") == "ok"
                  and isinstance(r.get("latency_ms"), dict) and isinstance(r["latency_ms"].get("p50"), int | float)
                  and isinstance(r.get(key), int | float)]  # fmt: skip
        if points:
            out[device] = [points[i][0] for i in pareto_frontier(points)]
    return out


def _inputs(cfg: ReportConfig, store) -> list[str]:
    distilled = [n for n, a in store.items() if a.kind == "torch" and "method" in a.meta]  # how each was made
    sparse = [n for n, a in store.items() if a.kind == "torch" and (a.meta.get("pruning") or {}).get("sparsity")]
    return require(store, cfg.id, "benchmark", *distilled, *sparse)


@register_stage("report", ReportConfig, _inputs, ("matplotlib",))
def run_report(cfg: ReportConfig, ctx, inputs) -> list[Report]:
    """Write the report files; report.json is written last."""
    bench = json.loads(inputs["benchmark"].path.read_text())
    rows = add_accuracy_deltas(bench["rows"])
    notes = failure_notes(rows) + list(bench.get("notes") or [])
    distillation = [method_summary(n, a.meta) for n, a in inputs.items() if a.kind == "torch" and "method" in a.meta]
    notes += [method_line(d) for d in distillation]
    notes += [f"{n}: unstructured pruning ({a.meta['pruning']['sparsity']:.0%} of conv/linear weights are zero) does "
              "not speed up dense runtimes: onnxruntime and LiteRT run every zero" for n, a in inputs.items()
              if a.kind == "torch" and (a.meta.get("pruning") or {}).get("sparsity")]  # fmt: skip
    if any(r.get("precision", "").startswith("dynamic") for r in rows):
        notes.append("dynamic-range files hold int8 weights but compute in float: they are not int8 models")
    figures = compute_figures(rows, cfg.goals.variant) if cfg.figures else []
    findings = {
        "figures": figures,
        "goals": check_goals(figures, cfg.goals),
        "notes": notes,
        "distillation": distillation,
        "pareto_frontier": frontier(rows),
    }
    return _write(cfg, ctx, bench, bench.get("n_test"), rows, {}, findings)


def _write(cfg, ctx, bench: dict, n_test, rows: list[dict], measured: dict, findings: dict) -> list[Report]:
    """report.json (last), report.md, report.html and the plots: what every task's report holds around its own
    ``measured`` facts and ``findings`` (figures, goals, notes, frontier)."""
    from edgekd.report import write_report

    task = ctx.pipeline.task
    report = {
        "pipeline": cfg.title or ctx.pipeline.name,
        **({"task": task} if task != IMAGE else {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "edgekd_version": __version__,
        "host": bench.get("host") or {},
        "threads": bench["threads"],
        "n_test": n_test,
        "warmup": bench.get("warmup"),
        "runs": bench.get("runs"),
        **measured,
        "variants": rows,
        "devices": bench.get("devices") or {},
        **findings,
        "stages": list(ctx.earlier),
        "versions": versions(),
        "config": ctx.pipeline.model_dump(mode="json", by_alias=True),
    }
    paths = write_report(report, ctx.out_dir)
    return [Report("report", paths["json"], {"files": sorted(p.name for p in paths.values())})]


# ---------------------------------------- text embedding (task: text-embedding)


class TextReportConfig(StageConfig):
    title: str | None = Field(None, description="report title (default: the pipeline's name)")


def _text_inputs(cfg: TextReportConfig, store) -> list[str]:
    return require(store, cfg.id, "benchmark")


@register_stage("report", TextReportConfig, _text_inputs, ("matplotlib",), task=TEXT)
def run_text_report(cfg: TextReportConfig, ctx, inputs) -> list[Report]:
    """The same report files for text students: embeddings judged against the teacher's instead of labels."""
    bench = json.loads(inputs["benchmark"].path.read_text())
    rows = bench["rows"]
    notes = failure_notes(rows)
    if bench.get("teacher_probe_accuracy") is not None:
        notes.append(
            f"a linear probe on the teacher's own embeddings scores {bench['teacher_probe_accuracy']:.4f}: the "
            "ceiling for the students' probe accuracy"
        )
    measured = {"max_length": bench.get("max_length"), "teacher_params": bench.get("teacher_params")}
    findings = {
        "figures": [],
        "goals": [],
        "notes": notes,
        "distillation": [],
        "pareto_frontier": frontier(rows, "spearman"),
    }
    return _write(cfg, ctx, bench, bench.get("n_eval"), rows, measured, findings)
