"""Validate-time checks of who teaches whom, so a misconfigured chain fails in ``edgekd validate``, not mid-run.

Progressive distillation (teacher -> assistant -> student) is two distill stages, the second naming the first's
``output`` in ``teachers``; a typo there, or the stages in the wrong order, would otherwise only surface after the
first stage has trained for minutes.
"""

from __future__ import annotations

import difflib

# stage kinds known to produce no torch model; any other kind (a user's or a newer stage) might, so the check steps
# aside rather than report a false error
NO_TORCH_OUTPUT = {"export_onnx", "convert_tflite", "benchmark", "report"}


def torch_outputs(stage) -> list[str] | None:
    """The torch model names a teacher or distill stage produces; None when the stage kind is not known here."""
    if stage.stage == "teacher":
        return [getattr(stage, "output", "teacher")]
    if stage.stage == "distill":
        names = [stage.output, *stage.strategy.extra_outputs(stage.output)]
        return names + ([stage.baseline_name] if stage.baseline else [])
    return [] if stage.stage in NO_TORCH_OUTPUT else None


def teacher_chain_errors(cfg, pipeline) -> list[str]:
    """One message per teacher of ``cfg`` that no earlier enabled stage produces (with the close names and order)."""
    if not cfg.uses_teachers:
        return []
    before: list[str] = []
    later: dict[str, str] = {}
    complete, seen = True, False
    for st in pipeline.stages:
        if st is cfg:
            seen = True
            continue
        if not st.enabled:
            continue
        names = torch_outputs(st)
        if names is None:
            complete = complete and seen  # an unknown stage before this one might produce the teacher
            continue
        if seen:
            later.update({n: st.id for n in names if n not in later})
        else:
            before += names
    if not complete:
        return []
    errors = []
    for name in cfg.teachers:
        if name in before:
            continue
        if name in later:
            errors.append(
                f"teacher '{name}' is produced by stage '{later[name]}', which runs after this one: "
                "move that stage before this one"
            )
            continue
        close = difflib.get_close_matches(name, before, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        available = ", ".join(dict.fromkeys(before)) or "none"
        errors.append(
            f"teacher '{name}' is not produced by any earlier stage{hint}; torch models available here: {available}"
        )
    return errors
