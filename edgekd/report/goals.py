"""Report figures (always computed from the benchmark rows) and goals (checked only when the pipeline sets them).

Every figure has a key; a goal is that key plus ``_min`` or ``_max`` (Olive's ``max-degradation`` idea), so a goal
means exactly what its figure measures. A figure that covers several rows (every int8 file, every device) is reported
once per row and a goal on it must hold for each. A goal whose figure could not be measured (no such row, a failed
variant) is missed: a number you asked for and did not get is not a pass. ``edgekd run`` exits 1 when a goal is
missed. The README's pipeline reference (``report`` stage) defines each one.
"""

from __future__ import annotations

from pydantic import Field

from edgekd.core.config import Strict

# key: (what the figure is, unit) — the unit also picks the number format
FIGURES: dict[str, tuple[str, str]] = {
    "accuracy": ("{v} test accuracy", "%"),
    "teacher_acc_drop": ("teacher PyTorch accuracy − {v} accuracy", "points"),
    "int8_acc_drop": ("{m} {f} fp32 accuracy − int8 accuracy", "points"),
    "int8_agreement": ("{v}: top-1 agreement with its fp32 model", "%"),
    "fp32_logit_diff": ("{v}: max |Δlogit| vs PyTorch", ""),
    "latency_ms": ("{v} p50 latency{d}", "ms"),
    "speedup": ("teacher PyTorch p50 latency / {v} p50 latency", "×"),
    "size_kb": ("{v} file size", "KB"),
    "int8_size_ratio": ("{m} {f} int8 size / fp32 size", "×"),
    "params_ratio": ("teacher params / {m} params", "×"),
    "student_vs_baseline": ("distilled student − scratch baseline accuracy, PyTorch", "points"),
}


class Goals(Strict):
    """What a run must reach; unset goals are not checked (their figures are still reported)."""

    variant: str = Field("student/tflite-int8", description="the row (table 'Variant') the one-model goals are about")
    accuracy_min: float | None = Field(None, description="percent: the variant's test accuracy")
    teacher_acc_drop_max: float | None = Field(None, description="points: teacher PyTorch − variant accuracy")
    int8_acc_drop_max: float | None = Field(None, description="points: fp32 − int8 accuracy, each model and format")
    int8_agreement_min: float | None = Field(None, ge=0, le=100, description="percent: each int8 file vs its fp32")
    fp32_logit_diff_max: float | None = Field(None, ge=0, description="each fp32 ONNX/TFLite file vs PyTorch")
    latency_ms_max: float | None = Field(None, gt=0, description="the variant's p50, batch 1, on each device")
    speedup_min: float | None = Field(None, gt=0, description="teacher PyTorch p50 / variant p50, same device")
    size_kb_max: float | None = Field(None, gt=0, description="the variant's file size, 1 KB = 1024 bytes")
    int8_size_ratio_max: float | None = Field(None, gt=0, description="int8 / fp32 file size, each model and format")
    params_ratio_min: float | None = Field(None, gt=0, description="teacher params / the variant's model's params")
    student_vs_baseline_min: float | None = Field(None, description="points: distilled − scratch student, PyTorch")

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if k != "variant" and v is not None}


def _ok(rows: list[dict], **want) -> dict | None:
    return next((r for r in rows if r.get("status") == "ok" and all(r.get(k) == v for k, v in want.items())), None)


def _model(row: dict) -> str:
    return str(row.get("name", "")).split("/", 1)[0]


def compute_figures(rows: list[dict], variant: str) -> list[dict]:
    """Every figure the rows allow, in a fixed order; ``variant`` names the row the one-model figures are about."""
    out: list[dict] = []

    def add(key: str, value: float | None, subject: str, v: str = variant, m: str = "", f: str = "", d: str = ""):
        if value is not None:
            name = FIGURES[key][0].format(v=v, m=m, f=f, d=d)
            out.append({"key": key, "subject": subject, "name": name, "value": float(value), "unit": FIGURES[key][1]})

    host = next((r.get("device") for r in rows if r.get("role") == "teacher"), None)
    here = [r for r in rows if r.get("device") in (host, None)]  # comparisons never mix two devices
    teacher = _ok(here, role="teacher", format="pytorch")
    chosen = _ok(here, name=variant)
    if chosen:
        add("accuracy", _pct(chosen.get("accuracy")), variant)
        if teacher and teacher.get("accuracy") is not None and chosen.get("accuracy") is not None:
            add("teacher_acc_drop", 100 * (teacher["accuracy"] - chosen["accuracy"]), variant)
    for model, fmt_ in dict.fromkeys((_model(r), r.get("format")) for r in here):
        fp32 = _ok(here, format=fmt_, precision="fp32", name=f"{model}/{fmt_}-fp32")
        int8 = _ok(here, format=fmt_, precision="int8", name=f"{model}/{fmt_}-int8")
        if fp32 and int8 and fp32.get("accuracy") is not None and int8.get("accuracy") is not None:
            add("int8_acc_drop", 100 * (fp32["accuracy"] - int8["accuracy"]), f"{model}/{fmt_}", m=model, f=fmt_)
    for r in here:
        if r.get("status") == "ok" and r.get("precision") == "int8" and r.get("agreement_vs_fp32") is not None:
            add("int8_agreement", 100 * r["agreement_vs_fp32"], r["name"], v=r["name"])
    for r in here:
        if r.get("status") == "ok" and r.get("precision") == "fp32" and r.get("max_abs_diff_vs_torch") is not None:
            add("fp32_logit_diff", r["max_abs_diff_vs_torch"], r["name"], v=r["name"])
    devices = list(dict.fromkeys(r.get("device") for r in rows if r.get("name") == variant))
    for dev in devices:  # the one figure measured on every device: what a phone or a Pi takes per image
        row = _ok(rows, name=variant, device=dev)
        p50 = ((row or {}).get("latency_ms") or {}).get("p50")
        add("latency_ms", p50, f"{variant}@{dev}", d=f" on {dev}" if len(devices) > 1 else "")
    if chosen and teacher:
        t50, v50 = (teacher.get("latency_ms") or {}).get("p50"), (chosen.get("latency_ms") or {}).get("p50")
        add("speedup", t50 / v50 if t50 and v50 else None, variant)
    if chosen and chosen.get("size_bytes"):
        add("size_kb", chosen["size_bytes"] / 1024, variant)
    for model, fmt_ in dict.fromkeys((_model(r), r.get("format")) for r in here):
        fp32 = _ok(here, name=f"{model}/{fmt_}-fp32")
        int8 = _ok(here, name=f"{model}/{fmt_}-int8")
        if fp32 and int8 and fp32.get("size_bytes") and int8.get("size_bytes"):
            add("int8_size_ratio", int8["size_bytes"] / fp32["size_bytes"], f"{model}/{fmt_}", m=model, f=fmt_)
    model = variant.split("/", 1)[0]  # parameters belong to the model: its PyTorch row, or the variant's
    counted = _ok(here, name=f"{model}/pytorch") or chosen
    if counted and teacher and counted.get("params") and teacher.get("params"):
        add("params_ratio", teacher["params"] / counted["params"], variant, m=model)
    student, baseline = _ok(here, role="student", format="pytorch"), _ok(here, role="baseline", format="pytorch")
    if student and baseline and student.get("accuracy") is not None and baseline.get("accuracy") is not None:
        add("student_vs_baseline", 100 * (student["accuracy"] - baseline["accuracy"]), "student")
    for fig in out:
        fig["text"] = figure_text(fig["value"], fig["unit"])
    return out


def _pct(x: float | None) -> float | None:
    return None if x is None else 100 * x


def figure_text(value: float, unit: str) -> str:
    if unit == "points":
        return f"{value:+.2f} points"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "×":
        return f"{value:.3g}×" if value < 1 else f"{value:.1f}×"
    if unit == "ms":
        return f"{value:.3g} ms"
    if unit == "KB":
        return f"{value:,.1f} KB"
    return f"{value:.2e}"


def check_goals(figures: list[dict], goals: Goals) -> list[dict]:
    """One entry per (goal, figure it covers), marking each figure it covers; a goal with no figure is missed."""
    results = []
    for goal, limit in goals.limits().items():
        key, bound = goal.rsplit("_", 1)
        sign = "≥" if bound == "min" else "≤"
        covered = [f for f in figures if f["key"] == key]
        for fig in covered:
            met = fig["value"] >= limit if bound == "min" else fig["value"] <= limit
            fig.update(goal=goal, target=f"{sign} {limit:g}", met=bool(met))
            results.append({"goal": goal, "target": fig["target"], "figure": fig["name"], "value": fig["value"],
                            "text": fig["text"], "met": bool(met)})  # fmt: skip
        if not covered:
            about = FIGURES[key][0].format(v=goals.variant, m="each model", f="", d="").replace("  ", " ")
            results.append({"goal": goal, "target": f"{sign} {limit:g}", "figure": about, "value": None,
                            "text": "not measured (no row for it, or the variant failed)", "met": False})  # fmt: skip
    return results


def goal_line(g: dict) -> str:
    """``goal int8_acc_drop_max (≤ 1): student tflite fp32 accuracy − int8 accuracy = +1.40 points``."""
    return f"goal {g['goal']} ({g['target']}) {'met' if g['met'] else 'missed'}: {g['figure']} = {g['text']}"
