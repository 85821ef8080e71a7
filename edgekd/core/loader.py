"""Reading a pipeline: YAML -> overrides -> each stage's typed config, found through the stage registry (so adding
a stage never touches this file) -> each stage's own checks. Every error is reported together, at its YAML line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgekd.core.config import DATA_CONFIGS, IMAGE, TASKS, PipelineConfig
from edgekd.core.errors import ConfigError, EdgekdError
from edgekd.core.validation import (
    Override,
    _errors_from,
    _line_of,
    apply_overrides,
    load_yaml,
)

# The text pipeline's own stages before it ran on the common ones (docs/release-notes.md)
TEXT_STAGES_BEFORE = {
    "text_data": "the pipeline's data: block",
    "text_teacher": "stage 'teacher'",
    "text_distill": "stage 'distill'",
    "text_export": "stages 'export_onnx' and 'convert_tflite'",
    "text_benchmark": "stage 'benchmark'",
}


def validate_document(
    doc: Any, root: yaml.Node | None = None, where: str = "<pipeline>", overrides: list[Override] | None = None
) -> PipelineConfig:
    """Validate a parsed pipeline document; every error found is reported together in one ConfigError (``problems``:
    one line each). ``overrides`` (from :func:`apply_overrides`) make errors they caused name the ``--set``."""
    from edgekd.stages import STAGES

    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: a pipeline must be a YAML mapping with a 'stages' list")
    errors: list[str] = []
    task = doc.get("task", IMAGE) if doc.get("task", IMAGE) in TASKS else IMAGE  # a bad task is reported below
    body = {**doc, "stages": doc.get("stages") or []}
    try:
        if isinstance(doc.get("data"), dict):  # the data block's keys follow the task: its errors at their line
            try:
                body["data"] = DATA_CONFIGS[task].model_validate(doc["data"])
            except ValidationError as exc:
                errors += _errors_from(exc, ("data",), root, where, DATA_CONFIGS[task], overrides, doc)
                body["data"] = DATA_CONFIGS[task].model_construct()  # reported above: the rest is still checked
        cfg = PipelineConfig.model_validate(body)
    except ValidationError as exc:
        errors += _errors_from(exc, (), root, where, PipelineConfig, overrides, doc)
        cfg = None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None
    if errors:
        cfg = None
    stages = []
    raw_stages = doc.get("stages") if isinstance(doc.get("stages"), list) else []
    for i, raw in enumerate(raw_stages):
        if not isinstance(raw, dict) or "stage" not in raw:
            errors.append(
                f"{where}:{_line_of(root, ('stages', i))}: stages[{i}]: each stage needs a 'stage' key "
                f"(one of: {', '.join(STAGES.names())})"
            )
            continue
        if not isinstance(raw["stage"], str) or raw["stage"] not in STAGES:
            old = TEXT_STAGES_BEFORE.get(str(raw["stage"]))
            errors.append(
                f"{where}:{_line_of(root, ('stages', i, 'stage'))}: stages[{i}].stage: "
                + (f"'{raw['stage']}' is now {old} (with task: text-embedding)" if old else "")
                + ("" if old else STAGES.unknown_message(str(raw["stage"])))
            )
            continue
        try:
            cls = STAGES.get(raw["stage"]).form(task).config_cls
        except ConfigError as exc:
            errors.append(f"{where}:{_line_of(root, ('stages', i, 'stage'))}: stages[{i}].stage: {exc}")
            continue
        try:
            stages.append(cls.model_validate(raw))
        except ValidationError as exc:
            errors += _errors_from(exc, ("stages", i), root, where, cls, overrides, doc)
        except RecursionError:
            raise ConfigError(f"{where}: YAML nested too deeply") from None
    ids = [s.id for s in stages]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        errors.append(f"{where}: stages: names must be unique (give 'name:' to repeated stages): {', '.join(dupes)}")
    if not errors and cfg is not None:
        cfg.stages = stages
        errors += _stage_checks(cfg, root, where)
        if not errors:
            errors += _pretrained_normalization(cfg, where)
    if errors:
        raise ConfigError(errors[0]) if len(errors) == 1 else ConfigError(f"{len(errors)} errors in {where}:", errors)
    assert cfg is not None
    return cfg


def _pretrained_normalization(cfg: PipelineConfig, where: str) -> list[str]:
    """``data.normalization``: auto/pretrained take the mean and std of the first timm/torchvision model that loads
    pretrained weights (models trained on ImageNet expect its statistics), set here so they are part of the data
    stage's cache key; given data.mean/std always win."""
    from edgekd.core.stage import model_specs
    from edgekd.models.libraries import pretrained_normalization

    data = cfg.data
    if cfg.task != IMAGE or data.normalization == "train_split" or data.mean is not None or data.std is not None:
        return []
    found = None
    try:
        for st in cfg.stages:
            for spec in model_specs(st) if st.enabled else []:
                found = found or pretrained_normalization(spec.as_dict())
    except EdgekdError as exc:
        return [f"{where}: {exc}"]
    if found is None:
        if data.normalization == "pretrained":
            return [f"{where}: data.normalization: pretrained needs a timm or torchvision model with 'pretrained' "
                    "weights (or give data.mean and data.std)"]  # fmt: skip
        return []
    mean, std = found
    channels = data.channels or 1
    if channels != len(mean):
        return []  # a grey pipeline: ImageNet's RGB statistics do not apply; the train split's are used
    cfg.data = data.model_copy(update={"mean": mean, "std": std, "normalization": "pretrained"})
    return []


def _stage_checks(cfg: PipelineConfig, root, where: str) -> list[str]:
    """Each enabled stage's ``check`` (models built, traced, dry-run), one thread: batch-1 forwards of tiny models
    gain nothing from more, and on a busy machine spare threads only wait for cores (3x slower validate)."""
    import torch

    from edgekd.core.console import step
    from edgekd.stages import STAGES

    errors: list[str] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, st in enumerate(cfg.stages):
            check = STAGES.get(st.stage).form(cfg.task).check
            if check is None or not st.enabled:
                continue
            with step(f"checking stage '{st.id}'"):
                try:
                    found = check(st, cfg)
                except EdgekdError as exc:
                    found = [str(exc)]
            errors += [f"{where}:{_line_of(root, ('stages', i))}: stages[{i}] ({st.id}): {m}" for m in found]
    finally:
        torch.set_num_threads(threads)
    return errors


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read, override and validate a pipeline YAML file."""
    path = Path(path)
    doc, root = load_yaml(path)
    if overrides:
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: a pipeline must be a YAML mapping")
        landed: list[Override] = []
        doc = apply_overrides(doc, overrides, landed)
        return validate_document(doc, root, str(path), landed)
    return validate_document(doc, root, str(path))
