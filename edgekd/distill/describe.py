"""How a distilled model was made, in one line for the report, from the metadata the distill stage saved with it."""

from __future__ import annotations

from typing import Any

from edgekd.distill.signal import describe_purification


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, int | float) else str(x)


def method_summary(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The report's record of one distilled model: method, teachers, terms, purification counts."""
    method = meta.get("method") or {}
    out: dict[str, Any] = {
        "model": name,
        "strategy": (method.get("strategy") or {}).get("kind", "standard"),
        "teachers": list(meta.get("teachers") or []),
        "temperature": meta.get("temperature"),
        "alpha": meta.get("alpha"),
        "losses": [{"kind": t.get("kind"), "weight": t.get("weight")} for t in method.get("losses") or []],
    }
    for key in ("teacher_weighting", "purification"):
        if meta.get(key):
            out[key] = meta[key]
    return out


def method_line(s: dict[str, Any]) -> str:
    """e.g. 'student: standard from teacher (T=2, alpha=0.5) + feature x1; purification: dropped 3 of 1078 ...'."""
    teachers = ", ".join(s["teachers"]) or "no teacher"
    text = f"{s['model']}: {s['strategy']} distillation from {teachers}"
    if s.get("temperature") is not None:
        text += f" (T={_num(s['temperature'])}, alpha={_num(s['alpha'])})"
    if s["losses"]:
        text += " + " + ", ".join(f"{t['kind']} ×{_num(t['weight'])}" for t in s["losses"])
    tw = s.get("teacher_weighting")
    if tw:
        weights = "/".join(f"{w:.2f}" for w in tw.get("mean_weight_per_teacher") or [])
        text += f"; teachers weighted {tw.get('mode')} (mean weights {weights})"
    if s.get("purification"):
        text += "; purification: " + describe_purification(s["purification"])
    return text
